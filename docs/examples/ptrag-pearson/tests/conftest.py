import pytest

# ptrag's own test run collects this folder too; without the package installed there is nothing
# to test (ptrag's CI installs it and checks that `ptrag plugins` lists it before running pytest).
pytest.importorskip("ptrag_pearson", reason="install docs/examples/ptrag-pearson to run the example plugin's tests")

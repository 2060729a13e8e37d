"""The bad-input cases of tests/test_bad_inputs.py, one module per family (``cases_*.py``)."""

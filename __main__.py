"""`python -m ptrag ...` is the `ptrag` command (so `torchrun -m ptrag run ...` works)."""

from ptrag.cli.app import main

main()

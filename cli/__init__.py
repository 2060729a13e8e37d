"""The `ptrag` command line: thin typer commands that parse, call ptrag.core and render with rich."""

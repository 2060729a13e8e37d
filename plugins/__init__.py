"""Built-in plugins. Each module implements ptrag hooks exactly like a third-party package."""

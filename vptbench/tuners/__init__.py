"""Built-in strategies, each a module with its Config beside it; found via entry points."""

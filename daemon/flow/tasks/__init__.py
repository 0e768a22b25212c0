"""Task types: one module per family, each registering its models with the registry."""

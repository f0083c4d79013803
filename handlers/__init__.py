"""tashooks handlers: the worker side. Loads rules.yaml, matches events, runs steps."""

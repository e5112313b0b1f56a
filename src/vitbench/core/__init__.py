"""Core: errors, the registries, specs, models and the demo architecture (imports nothing above it)."""

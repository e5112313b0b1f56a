"""Shared machinery of token methods: class-swap handles, stages, squeeze, RNG, policies."""

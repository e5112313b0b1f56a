"""The vitbench release, recorded in every result and cache key (equal to pyproject's version)."""

VERSION = "0.1.0"

"""Results store (SQLite), record schema, per-sample outcomes and artifact files."""

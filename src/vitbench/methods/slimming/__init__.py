"""Shared machinery of channel methods: slim plans, structured pruning, latency tables, low-pass filters."""

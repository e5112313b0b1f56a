"""Benchmark commands that print figures (speed, cache, channel latency, contention)."""

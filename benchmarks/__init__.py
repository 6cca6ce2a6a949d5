"""Benchmarks: scripts that measure returns and speed; results live in benchmarks/results."""

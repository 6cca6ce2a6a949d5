"""Benchmarks: scripts that measure returns and speed; results live in benchmarks/results."""

import os

# Idle OpenMP threads sleep instead of spinning, so that runs sharing the cores do not starve each other
# (benchmarks/results/contention.md). Set before torch loads OpenMP; an explicit setting wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

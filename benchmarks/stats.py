"""Statistics for reporting runs: interquartile mean and a bootstrap interval over seeds."""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["bootstrap_ci", "iqm"]


def iqm(values: np.ndarray) -> float:
    """Interquartile mean: the mean of the middle 50% (linear interpolation at the edges)."""
    x = np.sort(np.asarray(values, dtype=float))
    n = len(x)
    lo, hi = 0.25 * n, 0.75 * n
    weights = np.clip(np.minimum(np.arange(1, n + 1), hi) - np.maximum(np.arange(n), lo), 0, None)
    return float((weights * x).sum() / weights.sum())


def bootstrap_ci(values: np.ndarray, stat: Any = iqm, reps: int = 2000, seed: int = 0) -> tuple[float, float]:
    """95% percentile bootstrap interval of ``stat`` over resampled runs."""
    rng = np.random.default_rng(seed)
    values = np.asarray(values, dtype=float)
    stats = [stat(values[rng.integers(0, len(values), len(values))]) for _ in range(reps)]
    return float(np.percentile(stats, 2.5)), float(np.percentile(stats, 97.5))

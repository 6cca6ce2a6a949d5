"""Statistics for reporting runs: interquartile mean, a bootstrap interval over seeds, and the Wilson
interval of an accuracy."""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["bootstrap_ci", "iqm", "wilson_interval"]


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


def wilson_interval(correct: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """Wilson score interval (95% by default) of an accuracy of ``correct`` out of ``n`` trials."""
    if n < 1 or not 0 <= correct <= n:
        raise ValueError(f"wilson_interval needs n >= 1 and 0 <= correct <= n, got correct={correct}, n={n}")
    p = correct / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * float(np.sqrt(p * (1 - p) / n + z * z / (4 * n * n))) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)

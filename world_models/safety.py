"""How good the safety (cost) head is: calibration and detection on held-out transitions.

The head predicts the probability that a step is costly. :func:`safety_metrics` compares such
probabilities with what the environment reported: the Brier score, a reliability curve (mean
prediction against observed frequency per probability bin) and its expected calibration error, and
the recall and precision of flagging a step as costly when its probability is over a threshold
(the planner's per-step share of the cost budget, see ``planners.constraint``).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

__all__ = ["ReliabilityCurve", "SafetyMetrics", "safety_metrics"]


class ReliabilityCurve(NamedTuple):
    """Per probability bin ``[k / K, (k + 1) / K)`` (the last one closed): ``(K,)`` arrays."""

    mean_predicted: np.ndarray
    """Mean predicted probability of the steps in the bin (NaN for an empty bin)."""
    frequency: np.ndarray
    """Fraction of the bin's steps that were costly (NaN for an empty bin)."""
    counts: np.ndarray
    """Steps in the bin (int64)."""


class SafetyMetrics(NamedTuple):
    """The safety head's quality on ``n`` transitions (see :func:`safety_metrics`)."""

    brier: float
    """Mean squared error of the probability against the 0/1 outcome (0 is perfect)."""
    calibration_error: float
    """Expected calibration error: the count-weighted mean of ``|mean_predicted - frequency|`` over bins."""
    recall: float
    """Fraction of the costly steps whose probability is over the threshold (NaN when none was costly)."""
    precision: float
    """Fraction of the flagged steps that were costly (NaN when none was flagged)."""
    positive_rate: float
    """Fraction of the steps that were costly."""
    threshold: float
    """The probability above which a step is flagged as costly."""
    transitions: int
    """Transitions evaluated."""
    reliability: ReliabilityCurve

    def scalars(self, prefix: str = "safety/") -> dict[str, float]:
        """The scalar metrics keyed ``<prefix><name>`` (for progress.csv / TensorBoard)."""
        names = ("brier", "calibration_error", "recall", "precision", "positive_rate", "threshold", "transitions")
        return {f"{prefix}{name}": float(getattr(self, name)) for name in names}


def safety_metrics(probability: np.ndarray, cost: np.ndarray, threshold: float = 0.5, bins: int = 10) -> SafetyMetrics:
    """Brier score, reliability curve, recall and precision of predicted cost probabilities.

    ``probability (n,)`` in ``[0, 1]``: the predicted probability that each step is costly;
    ``cost (n,)``: the cost the environment reported (a step is costly when its cost is ``> 0``);
    ``threshold``: a step is flagged when its probability is ``> threshold``; ``bins``: reliability bins.

    Raises:
        ValueError: mismatched or empty arrays, probabilities outside ``[0, 1]`` or not finite,
            costs negative or not finite, ``bins < 1``.
    """
    p = np.asarray(probability, dtype=np.float64).reshape(-1)
    c = np.asarray(cost, dtype=np.float64).reshape(-1)
    if p.shape != c.shape or p.size == 0:
        raise ValueError(f"safety_metrics: probability and cost must be equal non-empty (n,) arrays, got "
                         f"{np.shape(probability)} and {np.shape(cost)}")
    if not (np.all(np.isfinite(p)) and np.all((p >= 0) & (p <= 1))):
        raise ValueError("safety_metrics: probabilities must be finite and in [0, 1]")
    if not (np.all(np.isfinite(c)) and np.all(c >= 0)):
        raise ValueError("safety_metrics: costs must be finite and >= 0 (the environment's info['cost'])")
    if bins < 1:
        raise ValueError(f"safety_metrics: bins must be >= 1, got {bins}")
    costly = c > 0
    flagged = p > threshold
    curve = _reliability(p, costly, bins)
    occupied = curve.counts > 0
    gaps = np.abs(curve.mean_predicted[occupied] - curve.frequency[occupied])
    return SafetyMetrics(
        brier=float(np.mean((p - costly) ** 2)),
        calibration_error=float(np.sum(gaps * curve.counts[occupied]) / p.size),
        recall=_fraction(flagged & costly, costly),
        precision=_fraction(flagged & costly, flagged),
        positive_rate=float(costly.mean()),
        threshold=float(threshold),
        transitions=int(p.size),
        reliability=curve,
    )


def _fraction(hits: np.ndarray, of: np.ndarray) -> float:
    """``hits.sum() / of.sum()``, NaN when ``of`` has no true entry."""
    total = int(of.sum())
    return float(hits.sum() / total) if total else float("nan")


def _reliability(p: np.ndarray, costly: np.ndarray, bins: int) -> ReliabilityCurve:
    """Mean prediction, observed frequency and count per equal-width probability bin."""
    index = np.minimum((p * bins).astype(np.int64), bins - 1)  # p = 1 goes in the last bin
    count = np.bincount(index, minlength=bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_predicted = np.bincount(index, weights=p, minlength=bins) / count
        frequency = np.bincount(index, weights=costly.astype(np.float64), minlength=bins) / count
    return ReliabilityCurve(mean_predicted, frequency, count.astype(np.int64))

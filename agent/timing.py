"""Where a run's wall-clock goes: exclusive per-phase seconds, logged as ``time/<phase>_s``.

Each second of a session belongs to at most one phase: when a phase starts inside another, the outer one
stops counting until the inner one ends. ``other`` is the rest of the session (the loop's own
bookkeeping), so the phases and ``other`` add up to the session's wall-clock.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

PHASES = ("setup", "env", "plan", "train", "eval", "log", "checkpoint")
"""The loop's phases: opening the run (run directory, logs, evaluation environments); environment
reset/step and storing the transition; the training loop's plans (proposals included); world-model,
value and policy training; evaluations; progress.csv/TensorBoard writes; checkpoint writes."""


class PhaseClock:
    """Cumulative exclusive seconds per phase, over this clock's sessions (a resumed run restores them)."""

    def __init__(self, totals: dict[str, float] | None = None) -> None:
        self.totals: dict[str, float] = {name: 0.0 for name in (*PHASES, "other")}
        self.totals.update(totals or {})
        self._stack: list[str] = []
        self._since = time.perf_counter()  # when the innermost running phase (or "other") last started counting
        self._running = False  # inside a session: time between sessions (an idle agent) is nobody's

    def _charge(self, now: float) -> None:
        if self._running:
            self.totals[self._stack[-1] if self._stack else "other"] += now - self._since
        self._since = now

    def start_session(self) -> None:
        """Count from now: what came before (building the agent, opening the run) is not charged."""
        self._stack.clear()
        self._since = time.perf_counter()
        self._running = True

    def stop_session(self) -> None:
        """Charge the time since the last switch; call at the end of a session."""
        self._charge(time.perf_counter())
        self._running = False

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        """Charge the time inside the block to ``name`` (one of :data:`PHASES`)."""
        if name not in PHASES:
            raise ValueError(f"unknown phase {name!r}; phases are {', '.join(PHASES)}")
        self._charge(time.perf_counter())
        self._stack.append(name)
        try:
            yield
        finally:
            self._charge(time.perf_counter())
            self._stack.pop()

    def snapshot(self) -> dict[str, float]:
        """The totals so far, the running phase's time included."""
        self._charge(time.perf_counter())
        return dict(self.totals)


def profile_summary(totals: dict[str, float]) -> str:
    """One line per phase, largest first: seconds and share of the summed time."""
    whole = sum(totals.values()) or 1.0
    rows = sorted(totals.items(), key=lambda item: -item[1])
    return "\n".join(f"  {name:<10} {seconds:9.1f} s  {100 * seconds / whole:5.1f}%" for name, seconds in rows)

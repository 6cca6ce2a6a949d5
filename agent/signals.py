"""Stopping a training run cleanly on Ctrl-C (SIGINT) or SIGTERM (a cluster's preemption, ``kill``).

While :meth:`agent.MBRLAgent.learn` runs in a process's main thread, the first of these signals only
asks it to stop: the environment step under way finishes (with its training), an evaluation under way
is abandoned between two of its steps (:class:`EvaluationAbandoned`; the resumed run plays it again),
a checkpoint is written and ``learn`` returns, so re-running the same command continues the run. A
second signal stops at once (``KeyboardInterrupt``, which ``train_agent.py`` reports in one line); only
progress up to the last checkpoint is then kept.
"""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class EvaluationAbandoned(Exception):
    """A stop was requested during an evaluation, which is given up (a resumed run plays it again)."""


class StopRequest:
    """Which signal asked the run to stop (``None``: none has)."""

    def check(self) -> None:
        """Raise :class:`EvaluationAbandoned` once a signal has asked to stop."""
        if self.signal is not None:
            raise EvaluationAbandoned(f"{self.signal.name} during an evaluation")

    def __init__(self) -> None:
        self.signal: signal.Signals | None = None

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        del frame
        if self.signal is not None:
            raise KeyboardInterrupt(f"second {signal.Signals(signum).name}: stopped at once")
        self.signal = signal.Signals(signum)
        print(f"\n{self.signal.name}: stopping after this step with a checkpoint (an evaluation under way is "
              "abandoned, and played again on resume; send it again to stop at once)", file=sys.stderr, flush=True)


@contextmanager
def stop_on_signals() -> Iterator[StopRequest]:
    """Catch :data:`STOP_SIGNALS` as a :class:`StopRequest` inside the block; the old handlers come back after it.

    Outside the main thread (where Python cannot install handlers) the request never fires and
    signals keep their usual effect.
    """
    request = StopRequest()
    if threading.current_thread() is not threading.main_thread():
        yield request
        return
    previous = {s: signal.getsignal(s) for s in STOP_SIGNALS}
    try:
        for s in STOP_SIGNALS:
            signal.signal(s, request._handle)
        yield request
    finally:
        for s, handler in previous.items():
            signal.signal(s, signal.SIG_DFL if handler is None else handler)  # None: set outside Python

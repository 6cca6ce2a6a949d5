"""Run ``train_agent.py`` and SIGKILL it at a chosen moment: the fault-injection tests' real kills.

    python -m tests.fault_runner KIND N [train_agent.py arguments ...]

``KIND`` (the process kills itself with SIGKILL, as ``kill -9`` or an out-of-memory killer would):

- ``step``: just before environment step ``N`` (1-based, counted from the run's start: mid-episode or not);
- ``eval``: at the ``N``-th action planned by training's evaluations (counted in this process);
- ``checkpoint``: halfway through writing the ``N``-th checkpoint file of this process;
- ``none``: no kill (the run ends as ``train_agent.py`` would).
"""

from __future__ import annotations

import io
import os
import signal
import sys
from typing import Any

import numpy as np

import agent.checkpoint
import agent.evaluation
import train_agent
from agent.agent import MBRLAgent

KINDS = ("step", "eval", "checkpoint", "none")


def kill_now() -> None:
    """SIGKILL this process (no handler, no cleanup, no flush)."""
    os.kill(os.getpid(), signal.SIGKILL)


def install(kind: str, n: int) -> None:
    """Patch the moment ``kind``/``n`` (see the module docstring) to end the process."""
    if kind == "step":
        step = MBRLAgent._step

        def killing_step(self: MBRLAgent) -> None:
            if self.num_timesteps + 1 >= n:
                kill_now()
            step(self)

        MBRLAgent._step = killing_step  # type: ignore[method-assign]
    elif kind == "eval":
        run = agent.evaluation.Evaluator.run
        calls = [0]

        def killing_run(self: agent.evaluation.Evaluator, plan: Any, *args: Any) -> Any:
            def counted(obs: np.ndarray, warm: Any, spent: np.ndarray) -> np.ndarray:
                calls[0] += 1
                if calls[0] >= n:
                    kill_now()
                return plan(obs, warm, spent)

            return run(self, counted, *args)

        agent.evaluation.Evaluator.run = killing_run  # type: ignore[method-assign,assignment]
    elif kind == "checkpoint":
        save = agent.checkpoint.torch.save
        written = [0]

        def killing_save(obj: Any, handle: Any, *args: Any, **kwargs: Any) -> None:
            written[0] += 1
            if written[0] < n:
                save(obj, handle, *args, **kwargs)
                return
            data = io.BytesIO()
            save(obj, data, *args, **kwargs)
            handle.write(data.getvalue()[: len(data.getvalue()) // 2])
            handle.flush()
            kill_now()

        agent.checkpoint.torch.save = killing_save  # type: ignore[assignment]
    elif kind != "none":
        raise SystemExit(f"unknown kind {kind!r}; one of {KINDS}")


if __name__ == "__main__":
    install(sys.argv[1], int(sys.argv[2]))
    sys.exit(train_agent.main(sys.argv[3:]))

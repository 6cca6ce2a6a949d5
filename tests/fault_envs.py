"""Environments that fail on purpose, for the fault-injection tests (``tests.fault_envs:X``)."""

from __future__ import annotations

from typing import Any, SupportsFloat

from tests.dummy_envs import Array, EchoEnv


class StepRaisesEnv(EchoEnv):
    """``EchoEnv`` whose ``step`` raises ``RuntimeError`` once it has taken ``raise_after`` steps in total."""

    def __init__(self, raise_after: int = 60) -> None:
        """Create the env; ``raise_after`` counts steps across episodes."""
        super().__init__()
        self.steps_left = raise_after

    def step(self, action: Array) -> tuple[Array, SupportsFloat, bool, bool, dict[str, Any]]:
        """Step as ``EchoEnv`` until ``raise_after`` steps, then raise (a simulator crash)."""
        if self.steps_left == 0:
            raise RuntimeError("the simulator diverged")
        self.steps_left -= 1
        return super().step(action)


class ConstructorRaisesEnv(EchoEnv):
    """An environment whose constructor raises ``ValueError`` for a bad ``level``."""

    def __init__(self, level: int = 0) -> None:
        """Refuse a negative ``level``."""
        if level < 0:
            raise ValueError(f"level must be >= 0, got {level}")
        super().__init__()

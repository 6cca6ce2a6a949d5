"""The agent loop, replay buffer, evaluation, logging, checkpoints and configuration."""

import os

# Idle OpenMP threads sleep instead of spinning, so that runs sharing the cores do not starve each other
# (benchmarks/results/contention.md). Set before torch loads OpenMP; an explicit setting wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from agent.agent import MBRLAgent
from agent.atomic import RunDirInUse
from agent.checkpoint import CheckpointError
from agent.config import Config, ConfigError, resolve_config

__all__ = ["CheckpointError", "Config", "ConfigError", "MBRLAgent", "RunDirInUse",
           "resolve_config"]

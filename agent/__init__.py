"""The agent loop, replay buffer, evaluation, logging, checkpoints and configuration."""

from agent.agent import MBRLAgent
from agent.atomic import RunDirInUse
from agent.checkpoint import CheckpointError
from agent.config import Config, ConfigError, resolve_config
from agent.logger import RunDirHasOutputs

__all__ = ["CheckpointError", "Config", "ConfigError", "MBRLAgent", "RunDirHasOutputs", "RunDirInUse",
           "resolve_config"]

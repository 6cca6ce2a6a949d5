"""The agent loop, replay buffer, evaluation, logging, checkpoints and configuration."""

from agent.agent import MBRLAgent
from agent.checkpoint import CheckpointError
from agent.config import Config, ConfigError, resolve_config

__all__ = ["CheckpointError", "Config", "ConfigError", "MBRLAgent", "resolve_config"]

"""World models: predict the next state or latent, reward, continuation and cost."""

import os

# Idle OpenMP threads sleep instead of spinning, so that runs sharing the cores do not starve each other
# (benchmarks/results/contention.md). Set before torch loads OpenMP; an explicit setting wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from world_models.base import Rollout, WorldModel
from world_models.config import LatentConfig, RoboticsConfig, ValueConfig, VideoConfig
from world_models.latent import LatentWorldModel, SequenceBatch
from world_models.robotics import ModelBatch, RoboticsWorldModel
from world_models.video import VideoWorldModel

__all__ = ["LatentConfig", "LatentWorldModel", "ModelBatch", "RoboticsConfig", "RoboticsWorldModel", "Rollout",
           "SequenceBatch", "ValueConfig", "VideoConfig", "VideoWorldModel", "WorldModel"]

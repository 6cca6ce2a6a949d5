"""World models: predict the next state or latent, reward, continuation and cost."""

from world_models.base import Rollout, WorldModel
from world_models.config import LatentConfig, RoboticsConfig, ValueConfig
from world_models.latent import LatentWorldModel, SequenceBatch
from world_models.robotics import ModelBatch, RoboticsWorldModel

__all__ = ["LatentConfig", "LatentWorldModel", "ModelBatch", "RoboticsConfig", "RoboticsWorldModel", "Rollout",
           "SequenceBatch", "ValueConfig", "WorldModel"]

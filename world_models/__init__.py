"""World models: predict the next state or latent, reward, continuation and cost."""

from world_models.base import Rollout, WorldModel
from world_models.latent import LatentWorldModel, SequenceBatch
from world_models.robotics import ModelBatch, RoboticsWorldModel

__all__ = ["LatentWorldModel", "ModelBatch", "RoboticsWorldModel", "Rollout", "SequenceBatch", "WorldModel"]

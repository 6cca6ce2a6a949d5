"""The safety head's training: rare costly steps weighted, and the linear head that extrapolates."""

from __future__ import annotations

import argparse

import pytest
import torch

from agent import resolve_config
from agent.config import ConfigError, validate
from benchmarks.cost_head_swap import parse_head
from envs import POINT_MASS_ID
from world_models.config import RoboticsConfig
from world_models.robotics import ModelBatch, RoboticsWorldModel
from world_models.training import rare_event_bce


def test_rare_event_bce_weights_event_rows() -> None:
    logit = torch.tensor([0.0, 2.0, -1.0])
    event = torch.tensor([True, False, False])
    target = event.float()
    plain = torch.nn.functional.binary_cross_entropy_with_logits(logit, target)
    assert torch.isclose(rare_event_bce(logit, event, 0.0), plain)
    per_row = torch.nn.functional.binary_cross_entropy_with_logits(logit, target, reduction="none")
    weighted = (per_row * torch.tensor([5.0, 1.0, 1.0])).mean() / (7.0 / 3)
    assert torch.isclose(rare_event_bce(logit, event, 4.0), weighted)


def _speed_system(n: int, top: float, generator: torch.Generator, low: float = -2.0) -> ModelBatch:
    """``x' = x + 0.1 a`` (2-D); a step is costly when the next ``x_1 > 1`` (a speed limit). ``x_0`` drawn in
    ``[-2, 2]``, ``x_1`` in ``[low, top]``: with ``top`` just over the limit, few of the stored steps are costly."""
    obs = torch.rand(n, 2, generator=generator) * torch.tensor([4.0, top - low]) + torch.tensor([-2.0, low])
    actions = torch.rand(n, 2, generator=generator) * 2 - 1
    next_obs = obs + 0.1 * actions
    return ModelBatch(obs, actions, torch.zeros(n), (next_obs[:, 1] > 1).float(), torch.zeros(n, dtype=torch.bool),
                      next_obs)


def _trained(cost_head: str, costly_weight: float, data: ModelBatch, generator: torch.Generator) -> RoboticsWorldModel:
    torch.manual_seed(0)
    config = RoboticsConfig(ensemble_size=2, hidden_dim=64, num_layers=2, learning_rate=3e-3, cost_head=cost_head,
                            costly_weight=costly_weight)
    model = RoboticsWorldModel(2, 2, config)
    model.fit_normalizers(data.obs, data.actions, data.rewards, data.next_obs)
    for _ in range(800):
        idx = torch.randint(0, len(data.obs), (2, 256), generator=generator)
        model.update(ModelBatch(*(x[idx] for x in data)))
    return model


def test_linear_head_learns_a_speed_limit_from_few_costly_steps_and_extrapolates() -> None:
    """Trained where ~3% of the steps are costly (``x_1`` up to 1.1), the linear head flags every step far past
    the limit, which the data never reached, and few steps well inside it."""
    gen = torch.Generator().manual_seed(0)
    data = _speed_system(3000, top=1.1, generator=gen)
    assert 0.005 < data.costs.mean().item() < 0.05
    model = _trained("linear", 2.0, data, gen)
    far = _speed_system(400, top=3.0, low=1.6, generator=gen)  # past the limit, where no stored step was
    inside = _speed_system(400, top=0.4, generator=gen)  # well inside it
    with torch.no_grad():
        p_far = model.imagine(far.obs, far.actions[None]).costs[0]
        p_inside = model.imagine(inside.obs, inside.actions[None]).costs[0]
    assert (p_far > 0.5).float().mean().item() > 0.95, p_far.min()
    assert (p_inside > 0.5).float().mean().item() < 0.05, p_inside.max()


def test_cost_head_settings_are_validated() -> None:
    with pytest.raises(ValueError, match="cost_head must be network or linear"):
        RoboticsWorldModel(2, 1, RoboticsConfig(cost_head="tree"))
    with pytest.raises(ValueError, match="costly_weight"):
        RoboticsWorldModel(2, 1, RoboticsConfig(costly_weight=-1.0))
    with pytest.raises(ConfigError, match="cost_head must be one of network, linear"):
        validate(resolve_config(POINT_MASS_ID, {"device": "cpu", "robotics.cost_head": "tree"}, preset="debug"))
    with pytest.raises(ConfigError, match="costly_weight"):
        validate(resolve_config(POINT_MASS_ID, {"device": "cpu", "robotics.costly_weight": float("nan")},
                                preset="debug"))


def test_cost_head_swap_reads_head_specs() -> None:
    assert parse_head("network") == ("network", 0.0)
    assert parse_head("linear:2") == ("linear", 2.0)
    assert parse_head("linear") == ("linear", 0.0)
    for bad in ("tree", "network:1", "linear:x", "linear:-1"):
        with pytest.raises(argparse.ArgumentTypeError):
            parse_head(bad)

"""World-model contracts: routing, normalisation, bounded variance, fitting a known system."""

from __future__ import annotations

from typing import Any

import pytest
import torch

import world_models.robotics as robotics
from world_models.config import RoboticsConfig, ValueConfig
from world_models.ensemble import EnsembleLinear, from_members, to_members
from world_models.normalizer import Normalizer
from world_models.robotics import ModelBatch, RoboticsWorldModel
from world_models.training import sparse_reward_error, termination_bce

STATE_VALUE = ValueConfig(function=True, tau=0.005)  # a state value, as the models here had before configs


def _member_tagged_model(ensemble_size: int) -> RoboticsWorldModel:
    """A model whose member e predicts reward e and zero state change."""
    config = RoboticsConfig(ensemble_size=ensemble_size, hidden_dim=8, num_layers=1)
    model = RoboticsWorldModel(2, 1, config, STATE_VALUE)
    head = model.net.net[-1]
    assert isinstance(head, EnsembleLinear)
    with torch.no_grad():
        head.weight.zero_()
        head.bias.zero_()
        head.bias[:, 0, model.target_dim - 1] = torch.arange(ensemble_size, dtype=torch.float32)
    return model.eval()


def test_rows_are_routed_to_member_b_mod_e() -> None:
    model = _member_tagged_model(3)
    z0 = torch.randn(6, 2)
    rollout = model.imagine(z0, torch.zeros(4, 6, 1))
    expected = (torch.arange(6) % 3).float().expand(4, 6)
    torch.testing.assert_close(rollout.rewards, expected)
    torch.testing.assert_close(rollout.latents, z0.expand(5, 6, 2))


def test_to_members_round_trip_and_bad_batch() -> None:
    x = torch.arange(12.0).reshape(6, 2)
    members = to_members(x, 3)
    assert members.shape == (3, 2, 2)
    torch.testing.assert_close(members[1, 0], x[1])  # row 1 -> member 1
    torch.testing.assert_close(members[1, 1], x[4])  # row 4 -> member 1
    torch.testing.assert_close(from_members(members), x)
    try:
        to_members(torch.zeros(5, 2), 3)
    except ValueError as exc:
        assert "multiple of the ensemble size" in str(exc)
    else:
        raise AssertionError("a batch not divisible by E must be refused")


def test_imagine_shapes_and_inputs_unchanged() -> None:
    model = RoboticsWorldModel(5, 2, RoboticsConfig(ensemble_size=5, hidden_dim=16, num_layers=2), STATE_VALUE).eval()
    z0, actions = torch.randn(10, 5), torch.rand(7, 10, 2) * 2 - 1
    z0_copy, actions_copy = z0.clone(), actions.clone()
    rollout = model.imagine(z0, actions)
    assert rollout.rewards.shape == rollout.costs.shape == rollout.continuation.shape == (7, 10)
    assert rollout.latents.shape == (8, 10, 5)
    assert rollout.disagreement.shape == (7, 10)
    assert ((rollout.continuation >= 0) & (rollout.continuation <= 1)).all()
    assert ((rollout.costs >= 0) & (rollout.costs <= 1)).all()
    torch.testing.assert_close(z0, z0_copy)
    torch.testing.assert_close(actions, actions_copy)


def test_imagine_rejects_wrong_shapes() -> None:
    model = RoboticsWorldModel(5, 2, RoboticsConfig(ensemble_size=5, hidden_dim=16, num_layers=1), STATE_VALUE)
    try:
        model.imagine(torch.zeros(10, 4), torch.zeros(3, 10, 2))
    except ValueError as exc:
        assert "(B, 5)" in str(exc)
    else:
        raise AssertionError("wrong state width must be refused")


def test_normalizer_survives_constant_features() -> None:
    norm = Normalizer(3, min_std=1e-2)
    data = torch.stack([torch.randn(100), torch.full((100,), 7.0), torch.randn(100) * 5], dim=1)
    norm.fit(data)
    out = norm.normalize(data)
    assert torch.isfinite(out).all()
    assert norm.std[1] == 1e-2
    torch.testing.assert_close(norm.denormalize(out), data)


def test_logvar_is_bounded() -> None:
    model = RoboticsWorldModel(3, 1, RoboticsConfig(ensemble_size=2, hidden_dim=8, num_layers=1), STATE_VALUE)
    pred = model.predict(torch.randn(2, 4, 3) * 1e4, torch.zeros(2, 4, 1))
    assert pred.logvar is not None
    assert (pred.logvar <= model.max_logvar + 1e-3).all()
    assert (pred.logvar >= model.min_logvar - 1e-3).all()


def _linear_system(n: int, generator: torch.Generator) -> ModelBatch:
    """x' = x + 0.1 a (2-D), reward -|x'|^2, terminated when |x'_0| > 1.5, cost when x'_1 > 1."""
    obs = torch.rand(n, 2, generator=generator) * 4 - 2
    actions = torch.rand(n, 2, generator=generator) * 2 - 1
    next_obs = obs + 0.1 * actions
    rewards = -(next_obs**2).sum(-1)
    return ModelBatch(obs, actions, rewards, (next_obs[:, 1] > 1).float(), next_obs[:, 0].abs() > 1.5, next_obs)


@pytest.mark.parametrize("continuation_from", robotics.CONTINUATION_SOURCES)
def test_model_fits_a_known_linear_system(continuation_from: str) -> None:
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    data = _linear_system(4000, gen)
    config = RoboticsConfig(ensemble_size=2, hidden_dim=64, num_layers=2, learning_rate=3e-3,
                            continuation_from=continuation_from)
    model = RoboticsWorldModel(2, 2, config, STATE_VALUE)
    model.fit_normalizers(data.obs, data.actions, data.rewards, data.next_obs)
    first = None
    for _ in range(600):
        idx = torch.randint(0, 4000, (2, 256), generator=gen)
        batch = ModelBatch(*(x[idx] for x in data))
        metrics = model.update(batch)
        first = first if first is not None else metrics
    assert first is not None and metrics["world_model/loss"] < first["world_model/loss"]
    test = _linear_system(200, gen)
    rollout = model.imagine(test.obs, test.actions[None])
    state_err = (rollout.latents[1] - test.next_obs).abs().max().item()
    reward_err = (rollout.rewards[0] - test.rewards).abs().mean().item()
    assert state_err < 0.05, state_err
    assert reward_err < 0.1, reward_err
    cont_acc = ((rollout.continuation[0] > 0.5) == ~test.terminated).float().mean().item()
    cost_acc = ((rollout.costs[0] > 0.5) == (test.costs > 0)).float().mean().item()
    assert cont_acc > 0.95 and cost_acc > 0.95, (cont_acc, cost_acc)


def test_update_refuses_non_finite_loss() -> None:
    model = RoboticsWorldModel(2, 1, RoboticsConfig(ensemble_size=1, hidden_dim=8, num_layers=1), STATE_VALUE)
    nan = torch.full((1, 4, 2), float("nan"))
    batch = ModelBatch(nan, torch.zeros(1, 4, 1), torch.zeros(1, 4), torch.zeros(1, 4),
                       torch.zeros(1, 4, dtype=torch.bool), nan)
    try:
        model.update(batch)
    except FloatingPointError as exc:
        assert "non-finite" in str(exc)
    else:
        raise AssertionError("a NaN loss must stop training with a clear error")


@pytest.mark.parametrize(("continuation_from", "cost_head"),
                         [(source, "network") for source in robotics.CONTINUATION_SOURCES] + [("transition", "linear")])
def test_imagine_matches_step_by_step_prediction(continuation_from: str, cost_head: str) -> None:
    """The fused imagination path equals predict() applied step by step to member-routed rows."""
    torch.manual_seed(0)
    model = RoboticsWorldModel(
        3,
        2,
        RoboticsConfig(ensemble_size=2, hidden_dim=16, num_layers=2, continuation_from=continuation_from,
                       cost_head=cost_head), STATE_VALUE,
    )
    if model.cost_net is not None:  # members that differ, so a row read by the wrong member shows
        with torch.no_grad():
            model.cost_net.last.weight.normal_()
    data = torch.randn(50, 3) * 3 + 1
    model.fit_normalizers(data, torch.rand(50, 2), torch.randn(50), data + torch.randn(50, 3))
    z0, actions = torch.randn(4, 3), torch.rand(5, 4, 2) * 2 - 1
    rollout = model.imagine(z0, actions)
    z = to_members(z0, 2)
    for t in range(5):
        pred = model.predict(z, to_members(actions[t], 2), with_variance=False)
        torch.testing.assert_close(rollout.rewards[t], from_members(model.reward(pred)))
        torch.testing.assert_close(rollout.continuation[t], from_members(model.continuation(pred)))
        torch.testing.assert_close(rollout.costs[t], from_members(model.safety(pred)))
        z = model.next(z, pred)
        torch.testing.assert_close(rollout.latents[t + 1], from_members(z))
    with torch.inference_mode():  # the planner's path, activations computed in place
        planned = model.imagine(z0, actions)
    for name in ("rewards", "continuation", "costs", "latents"):
        torch.testing.assert_close(getattr(planned, name), getattr(rollout, name))


def test_bfloat16_imagination_is_close_to_float32_and_only_in_planning() -> None:
    """With imagination_dtype bfloat16 the planner's path runs the hidden-to-hidden layers in bf16: its
    rollouts stay within bf16's precision of float32's over the horizon, come out float32, and the
    path with gradients (training) is exactly the float32 model's."""
    torch.manual_seed(0)
    kwargs: dict[str, Any] = {"ensemble_size": 2, "hidden_dim": 64, "num_layers": 3}
    model = RoboticsWorldModel(3, 2, RoboticsConfig(**kwargs), STATE_VALUE)
    fast = RoboticsWorldModel(3, 2, RoboticsConfig(imagination_dtype="bfloat16", **kwargs), STATE_VALUE)
    data = torch.randn(50, 3) * 3 + 100  # far from zero: the raw input layer must stay float32
    model.fit_normalizers(data, torch.rand(50, 2), torch.randn(50), data + torch.randn(50, 3))
    fast.load_state_dict(model.state_dict())
    z0, actions = data[:8], torch.rand(6, 8, 2) * 2 - 1
    with torch.inference_mode():
        exact, approx = model.imagine(z0, actions), fast.imagine(z0, actions)
    for name in ("rewards", "continuation", "costs", "latents"):
        got, want = getattr(approx, name), getattr(exact, name)
        assert got.dtype == torch.float32
        scale = want.abs().amax().clamp_min(1.0) if name != "latents" else (want - z0).abs().amax()
        assert (got - want).abs().amax() <= 0.02 * scale, name
    assert not torch.equal(approx.rewards, exact.rewards)  # the bf16 products did run
    traced_fast, traced = fast.imagine(z0, actions), model.imagine(z0, actions)
    torch.testing.assert_close(traced_fast.latents, traced.latents, rtol=0, atol=0)
    with pytest.raises(ValueError, match="imagination_dtype"):
        RoboticsWorldModel(3, 2, RoboticsConfig(imagination_dtype="float16"), STATE_VALUE)


def _bandit(n: int, gen: torch.Generator) -> ModelBatch:
    """One-step episodes: reward ``1 - 4 (a - 0.5)^2`` whatever the state, ``a`` uniform in [-1, 1]; values are returns.

    The stored actions' expected return is ``1 - 4 (1/3 + 1/4) = -4/3``.
    """
    obs = torch.randn(1, n, 2, generator=gen)
    actions = torch.rand(1, n, 1, generator=gen) * 2 - 1
    rewards = 1 - 4 * (actions[..., 0] - 0.5) ** 2
    return ModelBatch(obs, actions, rewards, torch.zeros(1, n), torch.ones(1, n, dtype=torch.bool), obs.clone())


def test_value_function_learns_the_return_of_the_stored_actions() -> None:
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    model = RoboticsWorldModel(
        2,
        1,
        RoboticsConfig(ensemble_size=1, hidden_dim=32, num_layers=1, learning_rate=1e-2),
        ValueConfig(function=True, tau=0.1),
        discount=0.0,
    )
    data = _bandit(4000, gen)
    model.fit_normalizers(data.obs[0], data.actions[0], data.rewards[0], data.next_obs[0])
    for _ in range(300):
        idx = torch.randint(0, 4000, (1, 128), generator=gen)
        model.update(ModelBatch(*(x[:, idx[0]] for x in data)))
    with torch.no_grad():
        value = model.value(torch.randn(200, 2, generator=gen)).mean().item()
    assert abs(value - (-4 / 3)) < 0.15, value


def test_sparse_reward_error_weights_rewarding_rows() -> None:
    pred, target = torch.tensor([0.0, 0.0, 0.0, 0.0]), torch.tensor([1.0, 0.0, 0.0, 2.0])
    rewards = torch.tensor([1.0, 0.0, 0.0, 0.0])  # only row 0 is rewarding
    assert torch.isclose(sparse_reward_error(pred, target, rewards, 0.0), torch.tensor(5.0 / 4))
    # weights (4, 1, 1, 1): (4 * 1 + 4) / 4 / mean weight 7/4
    assert torch.isclose(sparse_reward_error(pred, target, rewards, 3.0), torch.tensor(8.0 / 7))
    with pytest.raises(ValueError, match="sparse_reward_weight"):
        RoboticsWorldModel(2, 1, RoboticsConfig(sparse_reward_weight=-1.0), STATE_VALUE)


def _rare_reward(n: int, gen: torch.Generator) -> ModelBatch:
    """Reward 1 only where ``x'_0 > 0.9`` (about 5% of rows), else 0; ``x' = x + 0.1 a``."""
    obs = torch.rand(n, 2, generator=gen) * 2 - 1
    actions = torch.rand(n, 1, generator=gen) * 2 - 1
    next_obs = obs + 0.1 * torch.cat([actions, torch.zeros_like(actions)], dim=-1)
    rewards = (next_obs[:, 0] > 0.9).float()
    return ModelBatch(obs, actions, rewards, torch.zeros(n), torch.zeros(n, dtype=torch.bool), next_obs)


def test_sparse_reward_weight_makes_a_rare_reward_visible() -> None:
    """The plain NLL predicts about 0 where the rare reward is paid; the weighted loss predicts it."""
    predicted = {}
    for weight in (0.0, 30.0):
        torch.manual_seed(0)
        gen = torch.Generator().manual_seed(0)
        data = _rare_reward(2000, gen)
        config = RoboticsConfig(ensemble_size=1, hidden_dim=64, num_layers=2, learning_rate=3e-3,
                                sparse_reward_weight=weight)
        model = RoboticsWorldModel(2, 1, config, ValueConfig(function=False))
        model.fit_normalizers(data.obs, data.actions, data.rewards, data.next_obs)
        for _ in range(150):
            idx = torch.randint(0, 2000, (1, 128), generator=gen)
            model.update(ModelBatch(*(x[idx] for x in data)))
        test = _rare_reward(2000, gen)
        rewards = model.imagine(test.obs, test.actions[None]).rewards[0]
        predicted[weight] = (rewards[test.rewards > 0].mean().item(), rewards[test.obs[:, 0] < 0].abs().mean().item())
    paid, far = predicted[30.0]
    assert paid > 0.5 and far < 0.1, predicted
    assert paid > predicted[0.0][0] + 0.2, predicted


def test_termination_bce_weights_terminal_rows() -> None:
    logit = torch.tensor([0.0, 2.0, -1.0])
    terminated = torch.tensor([True, False, False])
    plain = torch.nn.functional.binary_cross_entropy_with_logits(logit, torch.tensor([0.0, 1.0, 1.0]))
    assert torch.isclose(termination_bce(logit, terminated, 0.0), plain)
    per_row = torch.nn.functional.binary_cross_entropy_with_logits(
        logit, torch.tensor([0.0, 1.0, 1.0]), reduction="none")
    weighted = (per_row * torch.tensor([5.0, 1.0, 1.0])).mean() / (7.0 / 3)
    assert torch.isclose(termination_bce(logit, terminated, 4.0), weighted)
    with pytest.raises(ValueError, match="termination_weight"):
        RoboticsWorldModel(2, 1, RoboticsConfig(termination_weight=float("nan")), STATE_VALUE)


def _policy_model(discount: float = 0.0) -> RoboticsWorldModel:
    return RoboticsWorldModel(
        2,
        1,
        RoboticsConfig(ensemble_size=1, hidden_dim=32, num_layers=1, learning_rate=3e-3),
        ValueConfig(function=True, kind="policy", tau=0.1),
        discount=discount,
    )


def test_policy_value_learns_the_best_action_not_the_stored_ones() -> None:
    # The same bandit as above: the stored (uniform) actions return -4/3 on average, the best action
    # a = 0.5 returns 1. The learned policy finds it, and the terminal value is its return.
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    model = _policy_model()
    data = _bandit(4000, gen)
    model.fit_normalizers(data.obs[0], data.actions[0], data.rewards[0], data.next_obs[0])
    for _ in range(600):  # the policy first runs to the edge (a = 1), then comes back as the critic learns
        idx = torch.randint(0, 4000, (1, 128), generator=gen)
        model.update(ModelBatch(*(x[:, idx[0]] for x in data)))
    with torch.no_grad():
        z = torch.randn(200, 2, generator=gen)
        actions, value = model.policy(z), model.terminal_value(z)
    assert actions.shape == (200, 1) and value is not None and value.shape == (200,)
    assert abs(actions.mean().item() - 0.5) < 0.1, actions.mean().item()
    assert 0.6 < value.mean().item() < 1.1, value.mean().item()  # the min of two critics: a little low


def test_actor_term_trains_the_actor_only() -> None:
    model = _policy_model(discount=0.9)
    data = _bandit(64, torch.Generator().manual_seed(0))
    model.actor_loss(data).backward()
    assert model.critic is not None and model.actor is not None
    assert all(p.grad is None for p in model.critic.parameters())
    assert all(p.requires_grad for p in model.critic.parameters())  # unfrozen again
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.actor.parameters())


def test_policy_proposals_roll_the_policy_through_the_model() -> None:
    torch.manual_seed(0)
    model = RoboticsWorldModel(
        3,
        2,
        RoboticsConfig(ensemble_size=2, hidden_dim=16, num_layers=1),
        ValueConfig(function=True, kind="policy"),
    ).eval()
    z0 = torch.randn(4, 3)
    props = model.propose(z0, 5, 3, 0.3, torch.Generator().manual_seed(1))
    assert props.shape == (4, 3, 5, 2) and props.abs().max() <= 1.0
    again = model.propose(z0, 5, 3, 0.3, torch.Generator().manual_seed(1))
    torch.testing.assert_close(props, again, rtol=0, atol=0)  # seeded
    # sequence 0 is the policy's own: its first action is pi(z0), and noise-free proposals all equal it
    torch.testing.assert_close(props[:, 0, 0], model.policy(z0))
    clean = model.propose(z0, 5, 3, 0.0, torch.Generator().manual_seed(1))
    torch.testing.assert_close(clean, clean[:, :1].expand_as(clean))
    torch.testing.assert_close(clean[:, 0], props[:, 0])
    assert not torch.allclose(props[:, 1], props[:, 0])
    # its second action is pi of the ensemble's mean next state
    with torch.no_grad():
        a0 = model.policy(z0)
        members = z0.expand(2, 4, 3), a0.expand(2, 4, 2)
        z1 = model.next(members[0], model.predict(*members, with_variance=False)).mean(0)
        torch.testing.assert_close(props[:, 0, 1], model.policy(z1))


def test_next_state_continuation_reads_the_next_state_only() -> None:
    """With continuation_from next_state, the continuation of a step depends on where it lands, not on
    the state and action that led there; it is learned from the stored next states."""
    torch.manual_seed(0)
    model = RoboticsWorldModel(
        2,
        1,
        RoboticsConfig(ensemble_size=2, hidden_dim=16, num_layers=1, continuation_from="next_state"), STATE_VALUE,
    )
    assert model.continuation_net is not None
    z_next = torch.randn(2, 3, 2)
    logit = model.next_state_continuation_logit(z_next)
    assert logit.shape == (2, 3)
    torch.testing.assert_close(logit[1, 2], model.next_state_continuation_logit(z_next[1, 2]))
    with pytest.raises(ValueError, match="continuation_from must be transition or next_state"):
        RoboticsWorldModel(2, 1, RoboticsConfig(continuation_from="state"), STATE_VALUE)
    assert RoboticsWorldModel(2, 1, None, STATE_VALUE).continuation_net is None


def test_policy_imitation_pulls_the_policy_to_the_stored_actions() -> None:
    """With a strong pull the policy reproduces the stored actions (here 0.8 * tanh(z_0), the 'planner'),
    instead of the bandit's best action 0.5; without it, the loss is the plain -(1 - discount) Q1."""
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    model = RoboticsWorldModel(
        2,
        1,
        RoboticsConfig(ensemble_size=1, hidden_dim=32, num_layers=1, learning_rate=3e-3),
        ValueConfig(function=True, kind="policy", tau=0.1, policy_imitation=50.0),
        discount=0.0,
    )
    data = _bandit(4000, gen)
    planned = 0.8 * torch.tanh(data.obs[..., :1])
    data = data._replace(actions=planned, rewards=1 - 4 * (planned[..., 0] - 0.5) ** 2)
    model.fit_normalizers(data.obs[0], data.actions[0], data.rewards[0], data.next_obs[0])
    for _ in range(600):
        idx = torch.randint(0, 4000, (1, 128), generator=gen)
        model.update(ModelBatch(*(x[:, idx[0]] for x in data)))
    with torch.no_grad():
        z = torch.randn(200, 2, generator=gen)
        error = (model.policy(z) - 0.8 * torch.tanh(z[:, :1])).abs().mean().item()
    assert error < 0.05, error

    plain = _policy_model(discount=0.9)
    batch = _bandit(64, torch.Generator().manual_seed(1))
    with torch.no_grad():
        obs = batch.obs.flatten(0, 1)
        expected = -(0.1 * plain.q_values(obs, plain.policy(obs))[0]).mean()
    assert torch.isclose(plain.actor_loss(batch).detach(), expected)
    with pytest.raises(ValueError, match="policy_imitation must be a finite number >= 0"):
        RoboticsWorldModel(2, 1, RoboticsConfig(), ValueConfig(policy_imitation=-1.0))

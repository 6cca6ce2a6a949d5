"""LatentWorldModel contracts: shapes, imagination = stepwise dynamics, EMA target, learning, round trip, errors."""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F

from world_models import LatentWorldModel, SequenceBatch
from world_models.config import LatentConfig, ValueConfig
from world_models.latent import Objective

SIZE = 64  # Hp = Wp
LATENT_FIELDS = {f.name for f in dataclasses.fields(LatentConfig)}


def _model(objective: Objective = "reconstruction", **kwargs: int | float) -> LatentWorldModel:
    """A narrow model (depth 4, Z 16) that is fast enough for contract tests."""
    args: dict = {"latent_dim": 16, "depth": 4, "hidden_dim": 32, "learning_rate": 3e-4, **kwargs}
    config = LatentConfig(objective=objective, **{k: args.pop(k) for k in list(args) if k in LATENT_FIELDS})
    value = ValueConfig(function=bool(args.pop("value_function", False)), tau=args.pop("value_tau", 0.02))
    return LatentWorldModel(2, config, value, **args)


def _frames(*lead: int, channels: int = 3, seed: int = 0) -> torch.Tensor:
    """Random uint8 frames ``(*lead, Hp, Wp, C)``."""
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (*lead, SIZE, SIZE, channels), dtype=torch.uint8, generator=gen)


def moving_square(horizon: int, batch: int, generator: torch.Generator, side: int = 12) -> SequenceBatch:
    """A white square on black, moved by up to 6 px per axis by actions in [-1, 1].

    Returns a :class:`SequenceBatch`: obs ``(T+1, B, 64, 64, 3)`` uint8, actions ``(T, B, 2)``,
    reward = minus the square's L1 distance to the centre (in frame widths), never terminated.
    """
    pos = torch.rand(batch, 2, generator=generator) * (SIZE - side)  # (B, 2) top-left corner, (row, col)
    actions = torch.rand(horizon, batch, 2, generator=generator) * 2 - 1
    grid = torch.arange(SIZE)
    frames, rewards = [], []
    for t in range(horizon + 1):
        corner = pos.round().long()
        rows = (grid >= corner[:, :1]) & (grid < corner[:, :1] + side)  # (B, Hp)
        cols = (grid >= corner[:, 1:]) & (grid < corner[:, 1:] + side)  # (B, Wp)
        frames.append((rows[:, :, None] & cols[:, None, :]).to(torch.uint8)[..., None].expand(-1, -1, -1, 3) * 255)
        if t < horizon:
            pos = (pos + 6.0 * actions[t]).clamp(0, SIZE - side)
            rewards.append(-(pos + side / 2 - SIZE / 2).abs().sum(-1) / SIZE)
    never = torch.zeros(horizon, batch, dtype=torch.bool)
    return SequenceBatch(torch.stack(frames), actions, torch.stack(rewards), never)


def _random_batch(horizon: int = 3, batch: int = 4, seed: int = 0) -> SequenceBatch:
    gen = torch.Generator().manual_seed(seed)
    return SequenceBatch(
        obs=_frames(horizon + 1, batch, seed=seed),
        actions=torch.rand(horizon, batch, 2, generator=gen) * 2 - 1,
        rewards=torch.randn(horizon, batch, generator=gen),
        terminated=torch.zeros(horizon, batch, dtype=torch.bool),
        costs=(torch.rand(horizon, batch, generator=gen) > 0.7).float(),
    )


# ----------------------------------------------------------------- shapes and dtypes
def test_encode_and_decode_shapes_and_dtypes() -> None:
    torch.manual_seed(0)
    model = _model()
    z = model.encode(_frames(5))
    assert z.shape == (5, 16) and z.dtype == torch.float32
    frames = model.decode(z)
    assert frames.shape == (5, SIZE, SIZE, 3) and frames.dtype == torch.uint8


def test_stacked_frames_and_proprio_state() -> None:
    torch.manual_seed(0)
    model = _model(channels=6, state_dim=4)  # two stacked RGB frames + a 4-d proprio vector
    obs = {"pixels": _frames(3, channels=6), "state": torch.randn(3, 4) * 100}
    z = model.encode(obs)
    assert z.shape == (3, 16)
    changed = model.encode({"pixels": obs["pixels"], "state": obs["state"] + 1.0})
    assert not torch.allclose(z, changed), "the state must reach the latent"
    batch = _random_batch()._replace(obs={"pixels": _frames(4, 4, channels=6), "state": torch.randn(4, 4, 4)})
    metrics = model.update(batch)
    assert all(torch.isfinite(torch.tensor(v)) for v in metrics.values())


def test_imagine_shapes_bounds_and_inputs_unchanged() -> None:
    torch.manual_seed(0)
    model = _model()
    z0, actions = torch.randn(64, 16), torch.rand(15, 64, 2) * 2 - 1
    z0_copy, actions_copy = z0.clone(), actions.clone()
    with torch.inference_mode():
        rollout = model.imagine(z0, actions)
    assert rollout.rewards.shape == rollout.costs.shape == rollout.continuation.shape == (15, 64)
    assert rollout.latents.shape == (16, 64, 16)
    assert rollout.disagreement.shape == (15, 64) and not rollout.disagreement.any()
    assert rollout.terminal_value is None
    for prob in (rollout.costs, rollout.continuation):
        assert ((prob >= 0) & (prob <= 1)).all()
    torch.testing.assert_close(rollout.latents[0], z0)
    torch.testing.assert_close(z0, z0_copy)
    torch.testing.assert_close(actions, actions_copy)


def test_encoded_and_imagined_latents_share_one_scale() -> None:
    """Every latent, encoded or imagined, has zero mean and unit RMS over its entries."""
    torch.manual_seed(0)
    model = _model()
    with torch.inference_mode():
        z = model.encode(_frames(5))
        imagined = model.rollout(z, torch.rand(7, 5, 2) * 2 - 1)[1:]  # (7, 5, Z)
    for latents in (z, imagined):
        torch.testing.assert_close(latents.mean(-1), torch.zeros(latents.shape[:-1]), atol=1e-5, rtol=0)
        torch.testing.assert_close(latents.pow(2).mean(-1), torch.ones(latents.shape[:-1]), atol=0.05, rtol=0)  # eps


def test_imagine_equals_stepwise_dynamics() -> None:
    torch.manual_seed(0)
    model = _model()
    z0, actions = torch.randn(6, 16), torch.rand(5, 6, 2) * 2 - 1
    rollout = model.imagine(z0, actions)
    z = z0
    for t in range(5):
        out = model.head_outputs(z, actions[t])
        torch.testing.assert_close(rollout.rewards[t], model.reward(out))
        torch.testing.assert_close(rollout.continuation[t], model.continuation(out))
        torch.testing.assert_close(rollout.costs[t], model.safety(out))
        z = model.next(z, actions[t])
        torch.testing.assert_close(rollout.latents[t + 1], z)


def test_no_safety_head_predicts_zero_cost() -> None:
    model = _model(safety_head=False)
    rollout = model.imagine(torch.randn(3, 16), torch.zeros(4, 3, 2))
    assert not rollout.costs.any()
    assert "safety/cost_bce" not in model.update(_random_batch())


# ----------------------------------------------------------------- EMA target
def test_ema_target_moves_by_tau_and_has_no_grad() -> None:
    torch.manual_seed(0)
    model = _model("jepa", ema_tau=0.05)
    assert model.target_encoder is not None
    target_ids = {id(p) for p in model.target_encoder.parameters()}
    optimised = {id(p) for group in model.optimizer.param_groups for p in group["params"]}
    assert not target_ids & optimised, "the optimizer must not own target weights"
    assert all(not p.requires_grad for p in model.target_encoder.parameters())
    before = [p.clone() for p in model.target_encoder.parameters()]
    model.update(_random_batch())  # one Adam step, then one EMA step
    for old, online, target in zip(before, model.encoder.parameters(), model.target_encoder.parameters(), strict=True):
        assert target.grad is None
        torch.testing.assert_close(target, old + 0.05 * (online - old))
    assert any(not torch.equal(old, new) for old, new in zip(before, model.target_encoder.parameters(), strict=True))


def test_reconstruction_model_has_no_target() -> None:
    model = _model()
    assert model.target_encoder is None
    with pytest.raises(RuntimeError, match="jepa"):
        model.update_target()


# ----------------------------------------------------------------- learning on a toy video
def _train(
    objective: Objective, steps: int, key: str, size: tuple[int, int, int] = (4, 16, 64), horizon: int = 3
) -> tuple[list[dict[str, float]], LatentWorldModel]:
    """``steps`` updates on fresh ``(T, B=8)`` toy batches; ``size`` = (depth, Z, hidden)."""
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    depth, latent, hidden = size
    model = LatentWorldModel(
        2, LatentConfig(objective=objective, latent_dim=latent, depth=depth, hidden_dim=hidden, learning_rate=1e-3)
    )
    history = [model.update(moving_square(horizon, 8, gen)) for _ in range(steps)]
    assert all(key in m for m in history)
    return history, model


def _mean(history: list[dict[str, float]], key: str) -> float:
    return sum(m[key] for m in history) / len(history)


def test_jepa_loss_falls_without_collapse() -> None:
    history, _ = _train("jepa", 80, "world_model/jepa_loss")
    first, last = history[:5], history[-10:]
    assert _mean(last, "world_model/loss") < 0.4 * _mean(first, "world_model/loss")
    assert _mean(last, "world_model/variance_loss") < 0.5 * _mean(first, "world_model/variance_loss")
    assert _mean(last, "world_model/embedding_std") > 0.5, "embeddings collapsed"
    assert _mean(last, "world_model/embedding_rank") > 2.0, "embeddings collapsed (the square moves in 2-D)"


def test_reconstruction_loss_falls() -> None:
    history, model = _train("reconstruction", 60, "world_model/reconstruction_loss")
    first, last = history[:5], history[-10:]
    assert _mean(last, "world_model/loss") < 0.3 * _mean(first, "world_model/loss")
    assert _mean(last, "world_model/reconstruction_loss") < 0.6 * _mean(first, "world_model/reconstruction_loss")
    assert _mean(last, "world_model/consistency_loss") < 0.1


@pytest.mark.slow
def test_jepa_learns_action_conditioned_motion() -> None:
    """After 1000 steps the open-loop prediction beats copying z_0 and identifies the right frame."""
    _, model = _train("jepa", 1000, "world_model/jepa_loss", size=(8, 32, 256), horizon=4)
    assert model.target_encoder is not None
    batch = moving_square(6, 32, torch.Generator().manual_seed(123))
    frames = batch.obs
    assert isinstance(frames, torch.Tensor)
    with torch.no_grad():
        target = model.target_encoder(frames.flatten(0, 1), None).unflatten(0, (7, 32))  # (T+1, B, Z)
        predicted = model.rollout(model.encode(frames[0]), batch.actions)[1:]  # (T, B, Z)
    pred_dist = (1 - F.cosine_similarity(predicted, target[1:], dim=-1)).mean()
    copy_dist = (1 - F.cosine_similarity(target[:1], target[1:], dim=-1)).mean()
    assert pred_dist < 0.7 * copy_dist, (pred_dist, copy_dist)
    similarity = F.normalize(predicted, dim=-1) @ F.normalize(target[1:], dim=-1).transpose(1, 2)  # (T, B, B)
    retrieval = (similarity.argmax(-1) == torch.arange(32)).float().mean()
    assert retrieval > 0.6, retrieval


# ----------------------------------------------------------------- persistence
def test_state_dict_round_trip_gives_identical_outputs() -> None:
    torch.manual_seed(0)
    for objective in ("reconstruction", "jepa"):
        model = _model(objective)
        model.update(_random_batch(seed=1))
        state, opt_state = model.state_dict(), model.optimizer.state_dict()
        if objective == "jepa":
            assert any(k.startswith("target_encoder.") for k in state)
        torch.manual_seed(99)  # different initial weights
        restored = _model(objective)
        restored.load_state_dict(state)
        restored.optimizer.load_state_dict(opt_state)
        obs, actions = _frames(4, seed=2), torch.rand(5, 4, 2)
        torch.testing.assert_close(restored.encode(obs), model.encode(obs), rtol=0, atol=0)
        z = model.encode(obs)
        ours, theirs = restored.imagine(z, actions), model.imagine(z, actions)
        for name in ("rewards", "costs", "continuation", "latents"):
            assert torch.equal(getattr(ours, name), getattr(theirs, name)), name
        batch = _random_batch(seed=3)
        assert restored.update(batch) == model.update(batch), "optimizer state must round-trip too"


# ----------------------------------------------------------------- clear errors
def test_bad_pixels_are_refused_with_a_hint() -> None:
    model = _model()
    with pytest.raises(ValueError, match="uint8"):
        model.encode(_frames(2).float())
    with pytest.raises(ValueError, match="channel-first"):
        model.encode(_frames(2).permute(0, 3, 1, 2))
    with pytest.raises(ValueError, match=r"expected pixels of shape \(N, 64, 64, 3\)"):
        model.encode(torch.zeros(2, 32, 32, 3, dtype=torch.uint8))
    with pytest.raises(ValueError, match="state_dim=0"):
        model.encode({"pixels": _frames(2), "state": torch.zeros(2, 3)})
    with pytest.raises(ValueError, match="state_dim=3"):
        _model(state_dim=3).encode(_frames(2))


def test_bad_batches_and_shapes_are_refused() -> None:
    model = _model()
    good = _random_batch()
    with pytest.raises(ValueError, match="actions"):
        model.update(good._replace(actions=torch.zeros(3, 4, 5)))
    with pytest.raises(ValueError, match="rewards"):
        model.update(good._replace(rewards=torch.zeros(4, 4)))
    with pytest.raises(ValueError, match=r"imagine expects z0 \(N, 16\)"):
        model.imagine(torch.zeros(3, 8), torch.zeros(2, 3, 2))
    with pytest.raises(FloatingPointError, match="non-finite"):
        model.update(good._replace(rewards=torch.full((3, 4), float("nan"))))
    with pytest.raises(RuntimeError, match="objective='reconstruction'"):
        _model("jepa").decode(torch.zeros(1, 16))
    with pytest.raises(ValueError, match="multiple of 16"):
        LatentWorldModel(2, image_size=60)
    with pytest.raises(ValueError, match="objective"):
        LatentWorldModel(2, LatentConfig(objective="pixels"))  # type: ignore[arg-type]


@pytest.mark.parametrize("objective", ["reconstruction", "jepa"])
def test_masked_steps_leave_every_loss_unchanged(objective: Objective) -> None:
    torch.manual_seed(0)
    model = _model(objective)
    batch = _random_batch(horizon=4, batch=3)
    mask = torch.ones(4, 3)
    mask[2:, 0] = 0.0  # window 0 ends at step 1: steps 2 and 3 belong to the next episode
    masked = batch._replace(mask=mask)
    # what happens after the end (frames, rewards, ends, costs) must not matter
    assert isinstance(batch.obs, torch.Tensor)
    changed_obs = batch.obs.clone()
    changed_obs[3:, 0] = 255 - changed_obs[3:, 0]
    changed = masked._replace(obs=changed_obs, rewards=batch.rewards.clone(), terminated=batch.terminated.clone())
    changed.rewards[2:, 0] = 100.0
    changed.terminated[2:, 0] = True
    with torch.no_grad():
        base, base_metrics = model.loss(masked)
        other, other_metrics = model.loss(changed)
        unmasked, unmasked_metrics = model.loss(batch)
        all_ones, _ = model.loss(batch._replace(mask=torch.ones(4, 3)))
    skip = {"world_model/variance_loss", "world_model/covariance_loss", "world_model/embedding_std",
            "world_model/embedding_rank", "world_model/loss"}  # the collapse guard sees every real frame
    for key, value in base_metrics.items():
        if key not in skip:
            assert other_metrics[key] == pytest.approx(value, rel=1e-5), key
    if objective == "reconstruction":
        assert other.item() == pytest.approx(base.item(), rel=1e-5)
    assert all_ones.item() == pytest.approx(unmasked.item(), rel=1e-5)
    assert unmasked_metrics["world_model/reward_loss"] != pytest.approx(base_metrics["world_model/reward_loss"])
    with pytest.raises(ValueError, match="mask"):
        model.update(batch._replace(mask=torch.ones(3, 3)))


def test_value_function_learns_the_discounted_return_and_reaches_imagine() -> None:
    torch.manual_seed(0)
    model = _model("jepa", value_function=True, discount=0.5, value_tau=0.5, learning_rate=3e-3)
    batch = _random_batch(horizon=3, batch=4)
    ends = torch.zeros(3, 4, dtype=torch.bool)
    ends[-1] = True  # every window ends with its episode: V = 1.75, 1.5, 1 at steps 0, 1, 2
    batch = batch._replace(rewards=torch.ones(3, 4), terminated=ends)
    for _ in range(200):  # the latents move as the model learns, so the value chases them
        model.update(batch)
    assert isinstance(batch.obs, torch.Tensor)
    with torch.no_grad():
        latents = model.rollout(model.encode(batch.obs[0]), batch.actions)
        values = model.value(latents[:-1])  # (T, B)
    torch.testing.assert_close(values, torch.tensor([1.75, 1.5, 1.0])[:, None].expand(3, 4), atol=0.25, rtol=0.0)
    assert (values[:-1] > values[1:]).all()  # further from the end is worth more
    rollout = model.imagine(torch.zeros(5, 16), torch.zeros(2, 5, 2))
    assert rollout.terminal_value is not None and rollout.terminal_value.shape == (5,)
    assert _model("jepa").imagine(torch.zeros(5, 16), torch.zeros(2, 5, 2)).terminal_value is None
    with pytest.raises(ValueError, match="discount"):
        _model(value_function=True, discount=1.0)

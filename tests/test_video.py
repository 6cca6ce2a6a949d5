"""VideoWorldModel: spacetime patches, the diffusion transformer, sampling, the WorldModel contract, input checks,
and a smoke run of the agent with ``model.kind video``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import train_agent
from agent.agent import CHECKPOINT_NAME
from agent.checkpoint import load_checkpoint
from benchmarks import video_physics, video_planning, video_world_model
from benchmarks.video_physics import detect_ball, detect_basket
from benchmarks.video_world_model import psnr, ssim, stacked_window
from envs import BALL_CATCH_ID
from envs.ball_catch import BallCatchEnv
from planners.objective import make_objective
from world_models import Rollout, VideoConfig, VideoWorldModel, WorldModel
from world_models.latent import SequenceBatch
from world_models.video import flow_matching_error, sample_flow
from world_models.video_nets import SpacetimeDiT, patchify, unpatchify

SIDE = 16  # frames of the tiny models: a 2x2 latent grid
TINY = VideoConfig(latent_channels=4, autoencoder_depth=8, patch_size=1, width=32, depth=1, heads=2,
                   context_frames=2, sampling_steps=2, learning_rate=5e-3, foreground_weight=0.0)


def tiny_model(seed: int = 0) -> VideoWorldModel:
    torch.manual_seed(seed)
    return VideoWorldModel(1, TINY, image_size=SIDE, seed=seed)


def square_video(batch: int, steps: int, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """A white 4x4 square on black that moves 2 pixels left or right per step as the action says:
    frames ``(steps+1, B, 16, 16, 3)`` uint8, actions ``(steps, B, 1)`` in {-1, 1}."""
    x = rng.integers(2, SIDE - 6, batch)
    actions = rng.choice([-1.0, 1.0], size=(steps, batch, 1)).astype(np.float32)
    frames = np.zeros((steps + 1, batch, SIDE, SIDE, 3), np.uint8)
    for t in range(steps + 1):
        for b in range(batch):
            frames[t, b, 6:10, x[b]:x[b] + 4] = 255
        if t < steps:
            x = np.clip(x + 2 * actions[t, :, 0].astype(int), 0, SIDE - 4)
    return torch.from_numpy(frames), torch.from_numpy(actions)


def square_batch(batch: int, length: int, rng: np.random.Generator, k: int = 2) -> SequenceBatch:
    """Windows of ``length`` steps whose observations stack ``k`` frames."""
    frames, actions = square_video(batch, length + k - 1, rng)
    obs = torch.stack([torch.cat(list(frames[t:t + k]), dim=-1) for t in range(length + 1)])  # (T+1, B, 16, 16, 3k)
    return SequenceBatch(obs=obs, actions=actions[k - 1:], rewards=torch.zeros(length, batch),
                         terminated=torch.zeros(length, batch, dtype=torch.bool))


# ---------------------------------------------------------------- patches and the transformer


def test_patchify_unpatchify_round_trip_and_token_order() -> None:
    latents = torch.randn(3, 5, 4, 8, 8)  # (M, F, C, h, w)
    tokens = patchify(latents, 2)
    assert tokens.shape == (3, 5 * 16, 4 * 2 * 2)
    assert torch.equal(unpatchify(tokens, 5, 4, (8, 8), 2), latents)
    # token 17 is frame 1's second patch: rows 0-1, columns 2-3
    assert torch.equal(tokens[0, 17].reshape(4, 2, 2), latents[0, 1, :, 0:2, 2:4])
    with pytest.raises(ValueError, match="not divisible"):
        patchify(torch.randn(1, 1, 4, 6, 6), 4)


def test_denoiser_shapes_and_action_conditioning() -> None:
    torch.manual_seed(0)
    dit = SpacetimeDiT(latent_channels=4, grid=(8, 8), patch=2, frames=3, action_dim=2, width=32, depth=2, heads=4)
    window, t = torch.randn(5, 3, 4, 8, 8), torch.rand(5)
    out = dit(window, t, torch.zeros(5, 2))
    assert out.shape == (5, 4, 8, 8)
    assert torch.equal(out, torch.zeros_like(out))  # adaLN-Zero: the output layer starts at zero
    for p in dit.parameters():  # leave the zero start: every input should now matter
        torch.nn.init.normal_(p, std=0.1)
    a, b = dit(window, t, torch.zeros(5, 2)), dit(window, t, torch.ones(5, 2))
    assert not torch.allclose(a, b)
    assert not torch.allclose(a, dit(window, torch.zeros(5), torch.zeros(5, 2)))
    with pytest.raises(ValueError, match="windows of 3 frames"):
        dit(torch.randn(5, 2, 4, 8, 8), t, torch.zeros(5, 2))


def latent_square_windows(batch: int, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """A 2x2 square of ones on a 4x6 latent grid of -1s (one channel) moving one cell left or right per step as
    the action says: windows of 2 context frames + the next, ``(B, 3, 1, 4, 6)``, and the last action ``(B, 1)``."""
    x = rng.integers(1, 3, batch)  # column of the square's left edge in the middle frame (stays in view)
    before = np.clip(x - rng.choice([-1, 1], batch), 0, 4)
    action = rng.choice([-1, 1], batch)
    windows = -np.ones((batch, 3, 1, 4, 6), np.float32)
    for b in range(batch):
        for f, column in enumerate((before[b], x[b], x[b] + action[b])):
            windows[b, f, 0, 1:3, column:column + 2] = 1.0
    return torch.from_numpy(windows), torch.from_numpy(action[:, None].astype(np.float32))


def test_denoiser_learns_a_moving_square_in_a_few_hundred_steps() -> None:
    """The flow loss falls, and frames sampled in 2 Euler steps put the square where the action moved it."""
    torch.manual_seed(0)
    dit = SpacetimeDiT(latent_channels=1, grid=(4, 6), patch=2, frames=3, action_dim=1, width=32, depth=2, heads=2)
    optimizer = torch.optim.Adam(dit.parameters(), lr=2e-3)
    rng, generator, losses = np.random.default_rng(0), torch.Generator().manual_seed(0), []
    for _ in range(300):
        windows, actions = latent_square_windows(32, rng)
        loss = flow_matching_error(dit, windows, actions, generator).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert np.mean(losses[-30:]) < 0.3 * np.mean(losses[:30])
    windows, actions = latent_square_windows(64, np.random.default_rng(1))
    with torch.no_grad():
        sampled = sample_flow(dit, windows[:, :2], actions, 2, torch.Generator().manual_seed(1))
    right = ((sampled > 0) == (windows[:, 2] > 0)).flatten(1).all(dim=1).float().mean()
    assert right > 0.9


def test_autoencoder_loss_falls_on_moving_squares() -> None:
    model, rng = tiny_model(), np.random.default_rng(0)
    recon = [model.update(square_batch(8, 3, rng), {"autoencoder"})["world_model/reconstruction_mse"]
             for _ in range(150)]
    assert np.mean(recon[-20:]) < 0.5 * np.mean(recon[:20])


# ---------------------------------------------------------------- sampling and the contract


def test_sampling_shapes_and_determinism_with_a_seed() -> None:
    model, rng = tiny_model(), np.random.default_rng(1)
    frames, _ = square_video(3, 2, rng)
    context = frames[:2].transpose(0, 1)  # (B, 2, 16, 16, 3)
    actions = torch.ones(4, 3, 1)
    first = model.predict_frames(context, actions, torch.Generator().manual_seed(7))
    again = model.predict_frames(context, actions, torch.Generator().manual_seed(7))
    other = model.predict_frames(context, actions, torch.Generator().manual_seed(8))
    assert first.shape == (4, 3, SIDE, SIDE, 3) and first.dtype == torch.uint8
    assert torch.equal(first, again)
    z = model.encode(torch.cat(list(frames[:2]), dim=-1))
    windows = model.rollout(z, actions, torch.Generator().manual_seed(7))
    assert not torch.equal(windows, model.rollout(z, actions, torch.Generator().manual_seed(8)))
    assert other.shape == first.shape


def test_world_model_contract_and_planner_objective() -> None:
    model, rng = tiny_model(), np.random.default_rng(2)
    assert isinstance(model, WorldModel)
    frames, _ = square_video(4, 1, rng)
    obs = torch.cat(list(frames[:2]), dim=-1)  # (B, 16, 16, 6)
    before = obs.clone()
    z0 = model.encode(obs)
    assert z0.shape == (4, model.latent_dim) and model.latent_dim == 2 * 4 * 2 * 2
    assert torch.equal(obs, before)
    actions = torch.rand(5, 4, 1) * 2 - 1
    with torch.inference_mode():
        rollout = model.imagine(z0, actions)
    assert isinstance(rollout, Rollout)
    assert rollout.latents.shape == (6, 4, model.latent_dim) and torch.equal(rollout.latents[0], z0)
    for name in ("rewards", "costs", "continuation", "disagreement"):
        assert getattr(rollout, name).shape == (5, 4)
    assert ((rollout.continuation >= 0) & (rollout.continuation <= 1)).all()
    objective = make_objective(model.imagine, z0[0], particles=2, discount=0.99, cost_weight=0.0)
    with torch.inference_mode():
        scores = objective(torch.zeros(3, 5, 1))
    assert scores.shape == (3,) and torch.isfinite(scores).all()
    copy = tiny_model(seed=1)
    copy.load_state_dict(model.state_dict())
    assert torch.equal(copy.encode(obs), z0)
    assert model.decode(z0).shape == (4, SIDE, SIDE, 3)


def test_update_trains_only_the_parts_asked_for() -> None:
    model, rng = tiny_model(), np.random.default_rng(3)
    encoder = [p.clone() for p in model.autoencoder.parameters()]
    dit = [p.clone() for p in model.dit.parameters()]
    model.update(square_batch(4, 2, rng), {"dynamics", "heads"})
    assert all(torch.equal(a, b) for a, b in zip(encoder, model.autoencoder.parameters(), strict=True))
    assert not all(torch.equal(a, b) for a, b in zip(dit, model.dit.parameters(), strict=True))
    with pytest.raises(ValueError, match="subset"):
        model.update(square_batch(4, 2, rng), {"decoder"})


# ---------------------------------------------------------------- bad input


def test_bad_input_is_refused_with_the_fix() -> None:
    model = tiny_model()
    with pytest.raises(ValueError, match=r"render frames at 16x16"):
        model.encode(torch.zeros(2, 32, 32, 6, dtype=torch.uint8))
    with pytest.raises(ValueError, match="frame_stack: 2"):
        model.encode(torch.zeros(2, SIDE, SIDE, 3, dtype=torch.uint8))  # one frame where two are needed
    with pytest.raises(ValueError, match="uint8"):
        model.encode(torch.zeros(2, SIDE, SIDE, 6))
    with pytest.raises(ValueError, match="at least k=2 context frames"):
        model.predict_frames(torch.zeros(2, 1, SIDE, SIDE, 3, dtype=torch.uint8), torch.zeros(3, 2, 1))
    with pytest.raises(ValueError, match="actions"):
        model.predict_frames(torch.zeros(2, 2, SIDE, SIDE, 3, dtype=torch.uint8), torch.zeros(3, 2, 2))
    with pytest.raises(ValueError, match="imagine expects z0"):
        model.imagine(torch.zeros(2, 5), torch.zeros(3, 2, 1))
    with pytest.raises(ValueError, match="sampling_steps must be in 1..4"):
        VideoWorldModel(1, VideoConfig(sampling_steps=8))
    with pytest.raises(ValueError, match="multiple of"):
        VideoWorldModel(1, image_size=20)


# ---------------------------------------------------------------- benchmark helpers and the agent


def test_image_metrics_and_stacked_windows() -> None:
    frames = torch.randint(0, 256, (2, 3, SIDE, SIDE, 3), dtype=torch.uint8)
    assert torch.allclose(ssim(frames, frames), torch.ones(2, 3))
    assert (psnr(frames, frames) > 90).all()
    noisy = (frames.to(torch.int16) + 20).clamp(0, 255).to(torch.uint8)
    assert (psnr(noisy, frames) < psnr(frames, frames)).all() and (ssim(noisy, frames) < 1).all()
    episode = np.arange(5)[:, None, None, None] * np.ones((1, 2, 2, 3), np.uint8)  # frame t is all t
    window = stacked_window(episode, start=1, length=2, k=3)  # observations 1..3, stacking 3 frames each
    assert window.shape == (3, 2, 2, 9)
    assert window[0, 0, 0, ::3].tolist() == [0, 0, 1] and window[2, 0, 0, ::3].tolist() == [1, 2, 3]


def test_cli_smoke_with_the_video_model(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = train_agent.main([
        "--env", BALL_CATCH_ID, "--preset", "ballcatch-video", "--total-timesteps", "40",
        "--train-learning-starts", "30", "--train-initial-gradient-steps", "2", "--train-batch-size", "2",
        "--train-eval-freq", "0", "--video-width", "16", "--video-depth", "1", "--video-heads", "2",
        "--video-autoencoder-depth", "4", "--video-sampling-steps", "1", "--planner-horizon", "2",
        "--sampling-num-candidates", "4", "--sampling-num-elites", "2", "--sampling-iterations", "1",
        "--run-dir", str(tmp_path), "--no-progress-bar", "--device", "cpu",
    ])
    out, err = capsys.readouterr()
    assert code == 0, err
    text = (tmp_path / "config.yaml").read_text()
    assert "kind: video" in text and "frame_stack: 4" in text
    assert load_checkpoint(tmp_path / CHECKPOINT_NAME)["counters"]["num_timesteps"] == 40


def test_video_model_needs_the_frames_it_reads(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = train_agent.main([
        "--env", BALL_CATCH_ID, "--preset", "ballcatch-video", "--frame-stack", "2", "--total-timesteps", "10",
        "--run-dir", str(tmp_path), "--no-progress-bar", "--device", "cpu",
    ])
    assert code == 2
    assert "set frame_stack: 4" in capsys.readouterr().err


def test_pixel_detector_finds_the_ball_and_basket_where_the_simulator_has_them() -> None:
    env = BallCatchEnv(obs_mode="pixels")
    frame, info = env.reset(seed=3)
    frames, balls, baskets = [frame], [info["ball_pos"]], [info["basket_x"]]
    for _ in range(8):
        frame, _, _, _, info = env.step(np.array([0.5], np.float32))
        frames.append(frame)
        balls.append(info["ball_pos"])
        baskets.append(info["basket_x"])
    position, found = detect_ball(np.stack(frames))
    assert found.all()
    assert np.abs(position - np.stack(balls)).max() < 0.1  # metres; a pixel is 0.16 m
    assert np.abs(detect_basket(np.stack(frames)) - np.array(baskets)).max() < 0.1
    assert not detect_ball(np.zeros((1, 64, 64, 3), np.uint8))[1].any()


def test_offline_benchmark_physics_and_planning_run_end_to_end(tmp_path: Path) -> None:
    tiny = ["--width", "16", "--depth", "1", "--heads", "2", "--latent-channels", "2", "--sampling-steps", "1"]
    assert video_world_model.main(["--out", str(tmp_path), "--train-episodes", "3", "--test-episodes", "2",
                                   "--autoencoder-steps", "1", "--dynamics-steps", "1", "--batch-size", "2",
                                   "--horizons", "1", "3", "--delta-horizon", "3", "--gif-episodes", "2", *tiny]) == 0
    results = json.loads((tmp_path / "results.json").read_text())
    assert set(results["prediction"]) == {"video_model", "copy_last_frame", "autoencoder_ceiling", "delta_t_psnr"}
    assert results["cost"]["steps"] == {"autoencoder": 1, "dynamics": 1} and results["cost"]["peak_rss_mb"] > 0
    assert (tmp_path / "imagined.gif").stat().st_size < 500_000 and (tmp_path / "report.md").exists()
    assert video_physics.main(["--run", str(tmp_path), "--test-episodes", "2"]) == 0
    physics = json.loads((tmp_path / "physics.json").read_text())
    assert set(physics["table"]) == {"short", "medium", "long"} and physics["landing"]["episodes"] == 2
    assert video_planning.main(["--run", str(tmp_path), "--episodes", "1", "--horizon", "2", "--candidates", "4",
                                "--iterations", "1"]) == 0
    assert json.loads((tmp_path / "planning.json").read_text())["ms_per_action"] > 0

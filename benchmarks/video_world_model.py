"""Train the VideoWorldModel offline on BallCatch episodes and measure its imagined frames.

    python -m benchmarks.video_world_model --env rehearse/BallCatch-v0 --out DIR

1. Collect episodes from pixels with uniformly random basket moves (``benchmarks.ball_probe.collect``):
   ``--train-episodes`` for training, ``--test-episodes`` held out (other reset seeds).
2. Train the frame autoencoder alone (``--autoencoder-steps``), fix the latent statistics, then the
   diffusion transformer and the heads (``--dynamics-steps``, or until ``--max-dynamics-seconds``).
3. On each held-out episode: the first ``k`` frames are the context, the true actions drive an
   autoregressive rollout; PSNR and SSIM of the imagined frames against the real ones at each horizon,
   beside copying the last context frame and the autoencoder's own reconstruction of the real frame
   (the best the latent grid allows). Horizons an episode does not reach are left out for it.
4. Action conditioning: ΔtPSNR at ``--delta-horizon``, the PSNR with the episode's true actions minus the
   PSNR with another held-out episode's actions (same noise), with a 95% bootstrap interval of the mean.
5. ``results.json``, ``report.md`` and ``imagined.gif`` (rows: held-out episodes; columns: real | imagined)
   in ``--out``; the model's weights go to ``--out/model.pt`` (not for committing).
"""

from __future__ import annotations

import argparse
import json
import resource
import shlex
import sys
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from agent.atomic import atomic_write
from agent.logger import write_gif
from benchmarks.ball_probe import Throws, collect
from benchmarks.markdown import write_report
from benchmarks.stats import bootstrap_ci
from world_models.config import VideoConfig
from world_models.latent import SequenceBatch
from world_models.video import VideoWorldModel

__all__ = ["evaluate", "main", "psnr", "ssim", "stacked_window", "train"]

SUPPORTED_ENVS = ("rehearse/BallCatch-v0",)


def stacked_window(frames: np.ndarray, start: int, length: int, k: int) -> np.ndarray:
    """Observations ``start .. start+length`` of one episode's ``frames (T+1, Hp, Wp, 3)``, each stacking its
    ``k`` latest frames oldest first (the first frame repeated before the episode): ``(length+1, Hp, Wp, 3k)``."""
    index = np.arange(start, start + length + 1)[:, None] + np.arange(-k + 1, 1)[None, :]  # (length+1, k)
    picked = frames[np.clip(index, 0, None)]  # (length+1, k, Hp, Wp, 3)
    return np.concatenate(list(picked.transpose(1, 0, 2, 3, 4)), axis=-1)


def _batch(throws: Throws, length: int, size: int, k: int, rng: np.random.Generator,
           device: torch.device) -> SequenceBatch:
    """``size`` random windows of ``length`` steps inside the episodes, time-major."""
    starts = [(i, s) for i, a in enumerate(throws.actions) for s in range(len(a) - length + 1)]
    picks = [starts[j] for j in rng.integers(0, len(starts), size)]
    obs = np.stack([stacked_window(throws.frames[i], s, length, k) for i, s in picks], axis=1)
    actions = np.stack([throws.actions[i][s:s + length] for i, s in picks], axis=1)
    rewards = np.stack([throws.rewards[i][s:s + length] for i, s in picks], axis=1)
    terminated = np.stack([np.arange(s, s + length) == len(throws.actions[i]) - 1 for i, s in picks], axis=1)
    return SequenceBatch(*(torch.from_numpy(x).to(device) for x in (obs, actions, rewards, terminated)))


def train(model: VideoWorldModel, throws: Throws, args: argparse.Namespace, device: torch.device) -> dict[str, Any]:
    """The two phases (autoencoder, then transformer and heads); their metric history and seconds."""
    rng = np.random.default_rng(args.seed)
    k, history = model.context_frames, []
    phases: list[tuple[str, set[str], int, float]] = [
        ("autoencoder", {"autoencoder"}, args.autoencoder_steps, float("inf")),
        ("dynamics", {"dynamics", "heads"}, args.dynamics_steps, args.max_dynamics_seconds),
    ]
    seconds: dict[str, float] = {}
    steps_done: dict[str, int] = {}
    for name, parts, steps, budget in phases:
        start, step = time.perf_counter(), 0
        for group in model.optimizer.param_groups:  # the autoencoder alone takes a larger step
            group["lr"] = args.autoencoder_learning_rate if name == "autoencoder" else model.config.learning_rate
        while step < steps and time.perf_counter() - start < budget:
            metrics = model.update(_batch(throws, args.sequence_length, args.batch_size, k, rng, device), parts)
            step += 1
            if step % args.log_every == 0 or step == steps:
                history.append({"phase": name, "step": step, "seconds": time.perf_counter() - start, **metrics})
                print(f"[{name} {step}] " + ", ".join(f"{key.split('/')[-1]} {v:.4g}" for key, v in metrics.items()),
                      flush=True)
        seconds[name], steps_done[name] = time.perf_counter() - start, step
        if name == "autoencoder":
            sample = np.concatenate(throws.frames)[rng.integers(0, sum(map(len, throws.frames)), 2048)]
            model.fit_latent_statistics(torch.from_numpy(sample).to(device))
    return {"history": history, "seconds": seconds, "steps": steps_done}


# ---------------------------------------------------------------- image metrics


def psnr(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """PSNR in dB of uint8 frames ``(..., Hp, Wp, 3)`` (peak 255), one value per frame ``(...)``."""
    error = (prediction.to(torch.float32) - target.to(torch.float32)).div(255.0).pow(2).mean(dim=(-3, -2, -1))
    return 10.0 * torch.log10(1.0 / error.clamp_min(1e-10))


def ssim(prediction: torch.Tensor, target: torch.Tensor, window: int = 11, sigma: float = 1.5) -> torch.Tensor:
    """Mean SSIM of uint8 frames ``(..., Hp, Wp, 3)`` (Gaussian window, per channel, then averaged), ``(...)``."""
    lead = prediction.shape[:-3]
    x = prediction.reshape(-1, *prediction.shape[-3:]).permute(0, 3, 1, 2).to(torch.float32) / 255.0
    y = target.reshape(-1, *target.shape[-3:]).permute(0, 3, 1, 2).to(torch.float32) / 255.0
    g = torch.exp(-((torch.arange(window, dtype=torch.float32) - window // 2) ** 2) / (2 * sigma**2))
    g = g / g.sum()
    kernel = (g[:, None] * g[None, :]).expand(3, 1, window, window).to(x.device)

    def blur(image: torch.Tensor) -> torch.Tensor:
        return F.conv2d(image, kernel, groups=3)

    mx, my = blur(x), blur(y)
    vx, vy, cxy = blur(x * x) - mx**2, blur(y * y) - my**2, blur(x * y) - mx * my
    c1, c2 = 0.01**2, 0.03**2
    value = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx**2 + my**2 + c1) * (vx + vy + c2))
    return value.mean(dim=(1, 2, 3)).reshape(lead)


# ---------------------------------------------------------------- evaluation


def _rollouts(model: VideoWorldModel, test: Throws, actions: list[np.ndarray], horizon: int, seed: int,
              device: torch.device) -> torch.Tensor:
    """Imagined frames ``(H, n, Hp, Wp, 3)`` from each episode's first ``k`` frames under ``actions[i][k-1:]``
    (padded with zeros past an episode's end; those frames are not scored)."""
    k = model.context_frames
    context = torch.from_numpy(np.stack([f[:k] for f in test.frames])).to(device)  # (n, k, Hp, Wp, 3)
    plans = np.zeros((horizon, len(actions), model.action_dim), np.float32)
    for i, a in enumerate(actions):
        taken = a[k - 1:k - 1 + horizon]
        plans[:len(taken), i] = taken
    with torch.inference_mode():
        return model.predict_frames(context, torch.from_numpy(plans).to(device),
                                    torch.Generator().manual_seed(seed)).cpu()


def _truth(test: Throws, k: int, horizon: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Real frames ``(H, n, Hp, Wp, 3)`` after the context (zeros past an episode's end) and which exist ``(H, n)``."""
    shape = test.frames[0].shape[1:]
    real = np.zeros((horizon, len(test.frames), *shape), np.uint8)
    valid = np.zeros((horizon, len(test.frames)), bool)
    for i, frames in enumerate(test.frames):
        after = frames[k:k + horizon]
        real[:len(after), i], valid[:len(after), i] = after, True
    return torch.from_numpy(real), torch.from_numpy(valid)


def _reconstruct(model: VideoWorldModel, frames: torch.Tensor, device: torch.device) -> torch.Tensor:
    """The autoencoder's reconstructions of ``frames (H, n, Hp, Wp, 3)``."""
    with torch.inference_mode():
        flat = frames.flatten(0, 1).to(device)
        out = torch.cat([model.latents_to_frames(model.frames_to_latents(chunk)) for chunk in flat.split(512)])
    return out.cpu().unflatten(0, frames.shape[:2])


def _at_horizons(scores: torch.Tensor, valid: torch.Tensor, horizons: Sequence[int]) -> dict[str, Any]:
    """Mean of ``scores (H, n)`` over the episodes that reach each horizon (1-based), and how many do."""
    out = {}
    for h in horizons:
        keep = valid[h - 1]
        out[str(h)] = {"mean": float(scores[h - 1][keep].mean()) if keep.any() else None, "episodes": int(keep.sum())}
    return out


def evaluate(model: VideoWorldModel, test: Throws, horizons: Sequence[int], delta_horizon: int, seed: int,
             device: torch.device) -> tuple[dict[str, Any], torch.Tensor, torch.Tensor]:
    """PSNR/SSIM per horizon (video model, copy-last-frame, autoencoder ceiling) and ΔtPSNR; also the real and
    imagined frames ``(H, n, Hp, Wp, 3)``."""
    k, horizon = model.context_frames, max(max(horizons), delta_horizon)
    real, valid = _truth(test, k, horizon)
    imagined = _rollouts(model, test, test.actions, horizon, seed, device)
    copy_last = torch.from_numpy(np.stack([f[k - 1] for f in test.frames]))[None].expand_as(real)
    ceiling = _reconstruct(model, real, device)
    results: dict[str, Any] = {}
    for name, frames in (("video_model", imagined), ("copy_last_frame", copy_last), ("autoencoder_ceiling", ceiling)):
        results[name] = {"psnr": _at_horizons(psnr(frames, real), valid, horizons),
                         "ssim": _at_horizons(ssim(frames, real), valid, horizons)}
    results["delta_t_psnr"] = _delta_psnr(model, test, imagined, real, valid, delta_horizon, seed, device)
    return results, real, imagined


def _delta_psnr(model: VideoWorldModel, test: Throws, imagined: torch.Tensor, real: torch.Tensor,
                valid: torch.Tensor, horizon: int, seed: int, device: torch.device) -> dict[str, Any]:
    """PSNR at ``horizon`` with the true actions minus with the next reaching episode's actions (a cycle over
    the episodes that reach ``horizon``), per episode; mean and 95% bootstrap interval of the mean."""
    reach = np.flatnonzero(valid[horizon - 1].numpy())
    if len(reach) < 2:
        return {"horizon": horizon, "episodes": int(len(reach)), "mean": None, "ci95": None}
    donors = np.roll(reach, 1)
    swapped = [test.actions[int(d)] for d in donors]
    sub = Throws([test.frames[int(i)] for i in reach], swapped, [], [], np.zeros(0), np.zeros(0))
    other = _rollouts(model, sub, swapped, horizon, seed, device)[horizon - 1]
    true_psnr = psnr(imagined[horizon - 1, reach], real[horizon - 1, reach])
    delta = (true_psnr - psnr(other, real[horizon - 1, reach])).numpy()
    low, high = bootstrap_ci(delta, stat=np.mean, seed=seed)
    return {"horizon": horizon, "episodes": int(len(reach)), "mean": float(delta.mean()), "ci95": [low, high],
            "actions_from": "the previous held-out episode (cyclic) among those reaching the horizon; same noise seed"}


def write_grid_gif(path: Path, real: torch.Tensor, imagined: torch.Tensor, rows: int) -> None:
    """GIF of ``rows`` held-out episodes, each row ``real | imagined`` over the imagined horizon."""
    grid = torch.cat([real[:, :rows], imagined[:, :rows]], dim=3)  # (H, rows, Hp, 2 Wp, 3)
    grid = grid.flatten(1, 2)  # (H, rows * Hp, 2 Wp, 3)
    write_gif(path, grid.numpy(), fps=10)


# ---------------------------------------------------------------- report


def _cell(entry: dict[str, Any], digits: int) -> str:
    return "–" if entry["mean"] is None else f"{entry['mean']:.{digits}f}"


def markdown(results: dict[str, Any], command: str) -> list[str]:
    """The report's lines."""
    horizons = list(results["prediction"]["video_model"]["psnr"])
    lines = ["# Video world model on BallCatch (offline)", "", f"Command: `{command}`", "",
             "PSNR (dB) / SSIM of imagined frames against the real ones, held-out episodes, from the first "
             f"{results['config']['context_frames']} frames and the true actions:", "",
             "| model | " + " | ".join(f"h={h}" for h in horizons) + " |",
             "|---|" + "---|" * len(horizons)]
    for name in ("video_model", "copy_last_frame", "autoencoder_ceiling"):
        scores = results["prediction"][name]
        cells = [f"{_cell(scores['psnr'][h], 2)} / {_cell(scores['ssim'][h], 3)}" for h in horizons]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    counts = ", ".join(f"h={h}: {results['prediction']['video_model']['psnr'][h]['episodes']}" for h in horizons)
    delta = results["prediction"]["delta_t_psnr"]
    ci = "–" if delta["ci95"] is None else f"[{delta['ci95'][0]:.3f}, {delta['ci95'][1]:.3f}]"
    mean = "–" if delta["mean"] is None else f"{delta['mean']:.3f}"
    cost = results["cost"]
    lines += ["", f"Episodes reaching each horizon: {counts}.", "",
              f"ΔtPSNR at h={delta['horizon']} (true actions minus another episode's), {delta['episodes']} "
              f"episodes: {mean} dB, 95% bootstrap interval {ci}.", "",
              f"Training: {cost['steps']} steps; {cost['train_seconds']} s; peak memory (ru_maxrss) "
              f"{cost['peak_rss_mb']:.0f} MB; device {cost['device']}, torch threads {cost['threads']}.", "",
              "`imagined.gif`: rows are held-out episodes, each real | imagined."]
    return lines


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--env", default="rehearse/BallCatch-v0", choices=SUPPORTED_ENVS)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--train-episodes", type=int, default=300)
    parser.add_argument("--test-episodes", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--autoencoder-steps", type=int, default=800)
    parser.add_argument("--dynamics-steps", type=int, default=3000)
    parser.add_argument("--autoencoder-learning-rate", type=float, default=1e-3)
    parser.add_argument("--max-dynamics-seconds", type=float, default=float("inf"))
    parser.add_argument("--batch-size", type=int, default=16, help="windows per update")
    parser.add_argument("--sequence-length", type=int, default=4, help="next frames predicted per window")
    parser.add_argument("--horizons", type=int, nargs="+", default=[1, 5, 10, 25])
    parser.add_argument("--delta-horizon", type=int, default=10)
    parser.add_argument("--gif-episodes", type=int, default=4)
    parser.add_argument("--log-every", type=int, default=100)
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    for field in ("latent_channels", "width", "depth", "heads", "context_frames", "sampling_steps"):
        parser.add_argument(f"--{field.replace('_', '-')}", type=int, default=getattr(VideoConfig, field))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if min(args.horizons) < 1 or args.delta_horizon < 1 or args.train_episodes < 1 or args.test_episodes < 2:
        raise SystemExit("error: horizons >= 1, --train-episodes >= 1 and --test-episodes >= 2 are needed")
    command = "python -m benchmarks.video_world_model " + shlex.join(sys.argv[1:] if argv is None else list(argv))
    device = torch.device(args.device)
    torch.manual_seed(args.seed)
    started = time.perf_counter()
    train_throws = collect(args.train_episodes, seed=args.seed)
    test = collect(args.test_episodes, seed=args.seed + 1_000_000)
    collect_seconds = time.perf_counter() - started
    config = VideoConfig(**{f: getattr(args, f) for f in ("latent_channels", "width", "depth", "heads",
                                                          "context_frames", "sampling_steps")},
                         sequence_length=args.sequence_length)
    model = VideoWorldModel(1, config, seed=args.seed).to(device)
    trained = train(model, train_throws, args, device)
    started = time.perf_counter()
    prediction, real, imagined = evaluate(model, test, args.horizons, args.delta_horizon, args.seed, device)
    args.out.mkdir(parents=True, exist_ok=True)
    write_grid_gif(args.out / "imagined.gif", real[:max(args.horizons)], imagined[:max(args.horizons)],
                   args.gif_episodes)
    results = {
        "command": command, "env": args.env, "config": vars(config),
        "episodes": {"train": args.train_episodes, "held_out": args.test_episodes,
                     "policy": "uniformly random basket velocity each step"},
        "prediction": prediction,
        "cost": {"collect_seconds": collect_seconds, "train_seconds": trained["seconds"],
                 "evaluate_seconds": time.perf_counter() - started, "steps": trained["steps"],
                 "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                 "device": str(device), "threads": torch.get_num_threads(),
                 "parameters": sum(p.numel() for p in model.parameters())},
        "history": trained["history"],
    }
    (args.out / "results.json").write_text(json.dumps(results, indent=1))
    atomic_write(args.out / "model.pt", lambda h: torch.save(model.state_dict(), h))
    write_report(markdown(results, command), args.out / "report.md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Physics probe: where will the ball land? Answered by imagining the throw with a pixel world model.

    python -m benchmarks.ball_probe --objectives jepa reconstruction \
        --out benchmarks/results/ball_probe

1. Collect BallCatch episodes from pixels (64x64 RGB, two stacked frames so velocity is
   visible) with random basket moves; the true ball state comes from ``info``.
2. Train a :class:`world_models.LatentWorldModel` per objective on time-major windows.
3. Fit a probe (a small MLP, or ridge regression with ``--probe linear``) from latents
   of *real* frames to the ball's position ``(x, y)``, on the training throws only.
4. On held-out throws: encode the first ``k`` frames (the latest two, stacked), roll the
   model forward in imagination under the basket actions that were taken, read the ball
   position off every imagined latent with the probe, and take the first imagined
   crossing of the floor (interpolated) as the landing point; its bin (4 equal bins)
   against the true bin is the accuracy. Also reported: the probe's ball-position error
   against the imagination horizon, and a baseline that guesses the bin of the ball's
   current x.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import shlex
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from envs.ball_catch import FLOOR_WIDTH, BallCatchEnv, landing_bin
from world_models.latent import LatentWorldModel, SequenceBatch

__all__ = ["Probe", "Throws", "fit_probe", "collect", "imagine_landing", "main", "stack_frames", "train_model"]


@dataclass
class Throws:
    """Episodes of BallCatch. Per episode ``i`` with ``T_i`` steps:

    frames[i] ``(T_i+1, 64, 64, 3)`` uint8; actions[i] ``(T_i, 1)``; rewards[i] ``(T_i,)``;
    ball[i] ``(T_i+1, 2)`` true ball position; landing_bin ``(n,)``; landing_x ``(n,)``.
    """

    frames: list[np.ndarray]
    actions: list[np.ndarray]
    rewards: list[np.ndarray]
    ball: list[np.ndarray]
    landing_bin: np.ndarray
    landing_x: np.ndarray


def collect(episodes: int, seed: int) -> Throws:
    """Throws with uniformly random basket moves; episode ``j`` is reset with ``seed + j``."""
    env = BallCatchEnv(obs_mode="pixels")
    rng = np.random.default_rng(seed)
    out: dict[str, list[Any]] = {k: [] for k in ("frames", "actions", "rewards", "ball", "bin", "x")}
    for j in range(episodes):
        frame, info = env.reset(seed=seed + j)
        frames, actions, rewards, ball = [frame], [], [], [info["ball_pos"]]
        done = False
        while not done:
            action = rng.uniform(-1, 1, size=1).astype(np.float32)
            frame, reward, terminated, truncated, info = env.step(action)
            frames.append(frame)
            actions.append(action)
            rewards.append(float(reward))
            ball.append(info["ball_pos"])
            done = terminated or truncated
        for key, value in (("frames", np.stack(frames)), ("actions", np.stack(actions)),
                           ("rewards", np.array(rewards, np.float32)), ("ball", np.stack(ball)),
                           ("bin", info["landing_bin"]), ("x", info["landing_x"])):
            out[key].append(value)
    return Throws(out["frames"], out["actions"], out["rewards"], out["ball"],
                  np.array(out["bin"]), np.array(out["x"]))


def stack_frames(frames: np.ndarray) -> np.ndarray:
    """``(T+1, Hp, Wp, 3)`` -> ``(T+1, Hp, Wp, 6)``: each frame with the one before (the first repeated)."""
    previous = np.concatenate([frames[:1], frames[:-1]])
    return np.concatenate([previous, frames], axis=-1)


def _windows(throws: Throws, length: int) -> list[tuple[int, int]]:
    """Every ``(episode, start)`` whose ``length`` steps stay inside the episode."""
    return [(i, s) for i, a in enumerate(throws.actions) for s in range(len(a) - length + 1)]


def _batch(throws: Throws, stacked: list[np.ndarray], picks: list[tuple[int, int]], length: int) -> SequenceBatch:
    obs = np.stack([stacked[i][s:s + length + 1] for i, s in picks], axis=1)  # (T+1, B, Hp, Wp, 6)
    actions = np.stack([throws.actions[i][s:s + length] for i, s in picks], axis=1)  # (T, B, 1)
    rewards = np.stack([throws.rewards[i][s:s + length] for i, s in picks], axis=1)  # (T, B)
    terminated = np.stack([np.arange(s, s + length) == len(throws.actions[i]) - 1 for i, s in picks], axis=1)
    return SequenceBatch(torch.from_numpy(obs), torch.from_numpy(actions), torch.from_numpy(rewards),
                         torch.from_numpy(terminated))


def train_model(throws: Throws, objective: str, updates: int, batch_size: int, length: int, seed: int,
                log_every: int = 100) -> tuple[LatentWorldModel, list[dict[str, float]]]:
    """Train a LatentWorldModel on random windows of the throws; returns it and its metric history."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = _new_model(objective)
    stacked = [stack_frames(f) for f in throws.frames]
    windows = _windows(throws, length)
    history = []
    for step in range(1, updates + 1):
        picks = [windows[k] for k in rng.integers(0, len(windows), batch_size)]
        metrics = model.update(_batch(throws, stacked, picks, length))
        if step % log_every == 0 or step == updates:
            history.append({"update": step, **metrics})
            print(f"  [{objective}] update {step}: " + ", ".join(f"{k.split('/')[-1]}={v:.3g}"
                                                               for k, v in metrics.items()), flush=True)
    return model, history


def _encode(model: LatentWorldModel, stacked: np.ndarray) -> torch.Tensor:
    with torch.inference_mode():
        return torch.cat([model.encode(torch.from_numpy(chunk)) for chunk in np.array_split(
            stacked, max(1, len(stacked) // 256))])


@dataclass
class Probe:
    """Read-out of the ball's ``(x, y)`` from standardised latents ``(z - mean) / std``.

    ``linear``: ridge-regression weights ``(Z+1, 2)``; ``mlp``: a small network, used when
    ``net`` is set (the position need not be a linear function of the latent).
    """

    mean: np.ndarray
    std: np.ndarray
    weights: np.ndarray | None = None
    net: torch.nn.Module | None = None

    def __call__(self, z: np.ndarray) -> np.ndarray:
        """``(M, Z)`` latents -> ``(M, 2)`` ball positions."""
        features = (z - self.mean) / self.std
        if self.net is not None:
            with torch.no_grad():
                return self.net(torch.as_tensor(features, dtype=torch.float32)).double().numpy()
        assert self.weights is not None
        return np.concatenate([features, np.ones((len(z), 1))], axis=1) @ self.weights


def fit_probe(model: LatentWorldModel, throws: Throws, kind: str = "mlp", ridge: float = 1e-2,
              steps: int = 3000, seed: int = 0) -> Probe:
    """Fit a probe from latents of real frames (training throws only) to the ball's position."""
    z = _encode(model, np.concatenate([stack_frames(f) for f in throws.frames])).numpy().astype(np.float64)
    target = np.concatenate(throws.ball)
    mean, std = z.mean(axis=0), z.std(axis=0) + 1e-8  # latents' scale differs between objectives
    features = (z - mean) / std
    if kind == "linear":
        design = np.concatenate([features, np.ones((len(z), 1))], axis=1)
        gram = design.T @ design + ridge * np.eye(design.shape[1])
        return Probe(mean, std, weights=np.linalg.solve(gram, design.T @ target))
    torch.manual_seed(seed)
    x, y = torch.as_tensor(features, dtype=torch.float32), torch.as_tensor(target, dtype=torch.float32)
    net = torch.nn.Sequential(torch.nn.Linear(x.shape[1], 256), torch.nn.SiLU(), torch.nn.Linear(256, 256),
                              torch.nn.SiLU(), torch.nn.Linear(256, 2))
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
    generator = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        rows = torch.randint(0, len(x), (256,), generator=generator)
        loss = ((net(x[rows]) - y[rows]) ** 2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return Probe(mean, std, net=net.eval())


def _crossing(positions: np.ndarray) -> float:
    """Landing x from imagined positions ``(H+1, 2)``: the first floor crossing, interpolated."""
    below = np.flatnonzero(positions[1:, 1] <= 0.0)
    if not len(below):
        return float(positions[np.argmin(positions[:, 1]), 0])
    t = int(below[0]) + 1
    (x0, y0), (x1, y1) = positions[t - 1], positions[t]
    w = y0 / (y0 - y1) if y0 > 0 else 0.0
    return float(x0 + w * (x1 - x0))


def imagine_landing(model: LatentWorldModel, probe: Probe, frames: np.ndarray, actions: np.ndarray,
                    k: int, horizon: int) -> tuple[float, np.ndarray]:
    """Landing x seen from the first ``k`` frames, and the imagined positions ``(H+1, 2)``."""
    stacked = stack_frames(frames[:k])[-1:]  # (1, Hp, Wp, 6): frames k-2 and k-1
    future = actions[k - 1:]
    pad = np.zeros((max(0, horizon - len(future)), 1), np.float32)
    plan = torch.from_numpy(np.concatenate([future, pad])[:horizon]).unsqueeze(1)  # (H, 1, 1)
    with torch.inference_mode():
        latents = model.rollout(model.encode(torch.from_numpy(stacked)), plan)[:, 0].numpy()  # (H+1, Z)
    positions = probe(latents.astype(np.float64))
    return _crossing(positions), positions


def evaluate_probe(model: LatentWorldModel, probe: Probe, test: Throws, ks: list[int], horizon: int,
                   error_horizons: list[int]) -> dict[str, Any]:
    """Landing-bin accuracy for each ``k`` and the ball-position error (m) against horizon (k = 2)."""
    accuracy, baseline = {}, {}
    errors: dict[int, list[float]] = {h: [] for h in error_horizons}
    for k in ks:
        hits, guesses = [], []
        for i, frames in enumerate(test.frames):
            if k > len(frames) - 1:  # the ball has landed by then: nothing left to predict
                continue
            x, positions = imagine_landing(model, probe, frames, test.actions[i], k, horizon)
            hits.append(landing_bin(float(np.clip(x, 0.0, FLOOR_WIDTH))) == test.landing_bin[i])
            guesses.append(landing_bin(float(test.ball[i][k - 1, 0])) == test.landing_bin[i])
            if k == 2:
                for h in error_horizons:
                    if k - 1 + h < len(frames):
                        errors[h].append(float(np.linalg.norm(positions[h] - test.ball[i][k - 1 + h])))
        accuracy[k] = float(np.mean(hits))
        baseline[k] = float(np.mean(guesses))
    return {"accuracy": accuracy, "current_x_baseline": baseline,
            "position_error_m": {h: (float(np.mean(v)) if v else None, len(v)) for h, v in errors.items()}}


def _markdown(results: dict[str, Any], command: str, ks: list[int]) -> str:
    lines = ["# Physics probe: where will the ball land? (BallCatch, 64x64 pixels, 4 landing bins)", "",
             f"Command: `{command}`", "",
             "Accuracy of the landing bin read off the imagined rollout, against the number of frames seen "
             "(chance 25%; reference from the published table: text-only GPT-4 29%, GPT-4V 44%, humans 92%).", "",
             "| objective | " + " | ".join(f"k={k}" for k in ks) + " |", "|---|" + "---|" * len(ks)]
    for name, r in results["objectives"].items():
        lines.append(f"| {name} | " + " | ".join(f"{100 * r['probe']['accuracy'][k]:.1f}%" for k in ks) + " |")
    first = next(iter(results["objectives"].values()))
    lines.append("| baseline: bin of the ball's current x | "
                 + " | ".join(f"{100 * first['probe']['current_x_baseline'][k]:.1f}%" for k in ks) + " |")
    lines += ["", f"Ball-position error (metres, {results['probe']} probe on imagined latents, from k=2 frames) "
              "against horizon:", "",
              "| objective | " + " | ".join(f"h={h}" + (" (real frame)" if h == 0 else "")
                                           for h in results["error_horizons"]) + " |",
              "|---|" + "---|" * len(results["error_horizons"])]
    for name, r in results["objectives"].items():
        cells = [f"{e:.3f} (n={n})" if e is not None else "-" for e, n in r["probe"]["position_error_m"].values()]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += ["", "| objective | training s | final metrics |", "|---|---|---|"]
    for name, r in results["objectives"].items():
        last = r["history"][-1] if r["history"] else {}
        final = ", ".join(f"{k.split('/')[-1]}={v:.3g}" for k, v in last.items() if k != "update") or "loaded"
        lines.append(f"| {name} | {r['train_seconds']:.0f} | {final} |")
    return "\n".join(lines) + "\n"


def _model_path(out: Path, objective: str) -> Path:
    return out / "models" / f"{objective}.pt"


def _new_model(objective: str) -> LatentWorldModel:
    return LatentWorldModel(1, channels=6, latent_dim=64, depth=16, hidden_dim=256,
                            objective=objective, safety_head=False)  # type: ignore[arg-type]


def _train_and_save(train: Throws, objective: str, args: argparse.Namespace,
                    threads: int | None = None) -> tuple[list[dict[str, float]], float]:
    """Train one objective's model, save it under ``<out>/models``; returns its history and seconds.

    Run in a worker process (``threads`` set) when several objectives train in parallel.
    """
    if threads is not None:
        torch.set_num_threads(threads)
    started = time.time()
    model, history = train_model(train, objective, args.updates, args.batch_size, args.length, args.seed)
    path = _model_path(args.out, objective)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), path)
    return history, time.time() - started


def _trained(train: Throws, args: argparse.Namespace) -> dict[str, tuple[list[dict[str, float]], float]]:
    """Train (or with ``--reuse-models``, skip) every objective: one process each with ``--workers`` > 1."""
    if args.reuse_models:
        return {}
    if args.workers <= 1 or len(args.objectives) == 1:
        return {objective: _train_and_save(train, objective, args) for objective in args.objectives}
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(min(args.workers, len(args.objectives)), mp_context=context) as pool:
        futures = {o: pool.submit(_train_and_save, train, o, args, 1) for o in args.objectives}
        return {o: future.result() for o, future in futures.items()}


def _load(objective: str, out: Path) -> LatentWorldModel:
    model = _new_model(objective)
    model.load_state_dict(torch.load(_model_path(out, objective), weights_only=True))
    return model.eval()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--objectives", nargs="+", default=["jepa", "reconstruction"])
    p.add_argument("--episodes", type=int, default=600, help="training throws")
    p.add_argument("--test-episodes", type=int, default=200)
    p.add_argument("--updates", type=int, default=1500)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--length", type=int, default=10, help="training window (steps)")
    p.add_argument("--ks", type=int, nargs="+", default=[2, 3, 5, 10])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--probe", choices=["mlp", "linear"], default="mlp", help="read-out of the ball position")
    p.add_argument("--workers", type=int, default=1,
                   help="train the objectives in this many processes at once (one thread each)")
    p.add_argument("--reuse-models", action="store_true",
                   help="load <out>/models/<objective>.pt from an earlier run instead of training")
    args = p.parse_args(argv)
    command = "python -m benchmarks.ball_probe " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:]))
    train = collect(args.episodes, seed=args.seed)
    test = collect(args.test_episodes, seed=args.seed + 1_000_000)
    old = args.out / "results.json"
    earlier = json.loads(old.read_text())["objectives"] if args.reuse_models and old.exists() else {}
    error_horizons = [0, 1, 5, 10, 25]  # 0: the probe on a real frame's latent (no imagination)
    results: dict[str, Any] = {"command": command, "error_horizons": error_horizons, "probe": args.probe,
                               "objectives": {}}
    trained = _trained(train, args)
    for objective in args.objectives:
        model = _load(objective, args.out)
        history, seconds = trained.get(objective, ([], 0.0))
        if args.reuse_models and earlier.get(objective):  # keep the training record of the run that made it
            history, seconds = earlier[objective]["history"], earlier[objective]["train_seconds"]
        probe = fit_probe(model, train, kind=args.probe, seed=args.seed)
        results["objectives"][objective] = {"train_seconds": seconds, "history": history,
                                            "probe": evaluate_probe(model, probe, test, args.ks, 60, error_horizons)}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(results, indent=1))
    report = _markdown(results, command, args.ks)
    (args.out / "report.md").write_text(report)
    print(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())

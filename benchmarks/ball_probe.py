"""Physics probe: where will the ball land? Answered by imagining the throw with a pixel world model.

    python -m benchmarks.ball_probe --objectives jepa reconstruction \
        --out benchmarks/results/ball_probe

1. Collect BallCatch episodes from pixels (64x64 RGB, ``--stack`` frames seen at once so
   velocity is visible) with random basket moves; the true ball state comes from ``info``.
2. Train a :class:`world_models.LatentWorldModel` per objective on time-major windows.
3. Fit a probe (a small MLP, or ridge regression with ``--probe linear``) from latents to
   the ball's position ``(x, y)``, on the training throws only: the encodings of real frames
   and (unless ``--probe-fit real``) the latents imagined from every frame of a training
   throw, each paired with where the ball really was at that time.
4. On held-out throws: encode the first ``k`` frames (the latest ``--stack``), roll the
   model forward in imagination under the basket actions that were taken, read the ball
   position off every imagined latent with the probe, and take as the landing point the
   first imagined floor crossing (interpolated) before the step where the model's own
   continuation head ends the episode (:func:`landing_point`); its bin (4 equal bins)
   against the true bin is the accuracy. Also reported: the probe's ball-position error
   against the imagination horizon, and a baseline that guesses the bin of the ball's
   current x.

Training is the slow part (about 1 update/s on this project's 2-core machine). It can run
elsewhere, on a GPU: ``--device cuda --train-only`` (``--max-train-seconds`` for a wall-clock
budget) saves the models and their training record under ``--out``; the same command with
``--reuse-models`` and without ``--train-only`` then reads them out on any machine.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import shlex
import sys
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from agent.atomic import atomic_write
from agent.checkpoint import CheckpointError, load_module_state, read_weights
from envs.ball_catch import FLOOR_WIDTH, BallCatchEnv, landing_bin
from world_models.config import LatentConfig
from world_models.latent import LatentWorldModel, SequenceBatch

__all__ = ["Probe", "Throws", "collect", "fit_probe", "imagine_landing", "landing_point", "main", "stack_frames",
           "train_model"]


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


def stack_frames(frames: np.ndarray, stack: int = 2) -> np.ndarray:
    """``(T+1, Hp, Wp, 3)`` -> ``(T+1, Hp, Wp, 3 * stack)``: each frame after the ``stack - 1``
    before it, oldest first (the first frame repeated where the episode has none)."""
    padded = np.concatenate([np.repeat(frames[:1], stack - 1, axis=0), frames])
    return np.concatenate([padded[j:j + len(frames)] for j in range(stack)], axis=-1)


def _windows(throws: Throws, length: int) -> list[tuple[int, int]]:
    """Every ``(episode, start)`` whose ``length`` steps stay inside the episode."""
    return [(i, s) for i, a in enumerate(throws.actions) for s in range(len(a) - length + 1)]


def _batch(throws: Throws, stacked: list[np.ndarray], picks: list[tuple[int, int]], length: int,
           device: torch.device | str = "cpu") -> SequenceBatch:
    obs = np.stack([stacked[i][s:s + length + 1] for i, s in picks], axis=1)  # (T+1, B, Hp, Wp, 6)
    actions = np.stack([throws.actions[i][s:s + length] for i, s in picks], axis=1)  # (T, B, 1)
    rewards = np.stack([throws.rewards[i][s:s + length] for i, s in picks], axis=1)  # (T, B)
    terminated = np.stack([np.arange(s, s + length) == len(throws.actions[i]) - 1 for i, s in picks], axis=1)
    return SequenceBatch(*(torch.from_numpy(x).to(device) for x in (obs, actions, rewards, terminated)))


def train_model(throws: Throws, objective: str, updates: int, batch_size: int, length: int, seed: int,
                log_every: int = 100, stack: int = 2, save_to: Path | None = None,
                save_every: int = 250, device: torch.device | str = "cpu",
                max_seconds: float | None = None) -> tuple[LatentWorldModel, list[dict[str, float]]]:
    """Train a LatentWorldModel on random windows of the throws; returns it (on the CPU) and its
    metric history, whose last entry holds the number of updates done.

    The model trains on ``device``. With ``save_to``, the weights are also written there
    (atomically) every ``save_every`` updates, so a run stopped early leaves a usable model.
    With ``max_seconds``, training stops after the first update that passes that wall-clock
    budget, even short of ``updates``.
    """
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = _new_model(objective, stack).to(device)
    stacked = [stack_frames(f, stack) for f in throws.frames]
    windows = _windows(throws, length)
    history = []
    started = time.monotonic()
    for step in range(1, updates + 1):
        picks = [windows[k] for k in rng.integers(0, len(windows), batch_size)]
        metrics = model.update(_batch(throws, stacked, picks, length, device))
        out_of_time = max_seconds is not None and time.monotonic() - started > max_seconds
        if out_of_time:
            print(f"  [{objective}] stopping after update {step} of {updates}: the {max_seconds:.0f} s "
                  "training budget is spent", flush=True)
        last = step == updates or out_of_time
        if step % log_every == 0 or last:
            history.append({"update": step, **metrics})
            print(f"  [{objective}] update {step}: " + ", ".join(f"{k.split('/')[-1]}={v:.3g}"
                                                               for k, v in metrics.items()), flush=True)
        if save_to is not None and (step % save_every == 0 or last):
            _save(model, save_to)
        if out_of_time:
            break
    return model.cpu(), history


def _save(model: LatentWorldModel, path: Path) -> None:
    atomic_write(path, lambda f: torch.save(model.state_dict(), f))


def _stack(model: LatentWorldModel) -> int:
    """How many RGB frames the model's encoder sees at once."""
    return model.image_shape[2] // 3


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


def _plans(actions: np.ndarray, starts: list[int], horizon: int) -> torch.Tensor:
    """``(H, N, A)``: the actions taken from each start on, zeros past the episode's end."""
    plans = []
    for s in starts:
        future = actions[s:s + horizon]
        plans.append(np.concatenate([future, np.zeros((horizon - len(future), actions.shape[1]), np.float32)]))
    return torch.from_numpy(np.stack(plans, axis=1))


def _rollouts(model: LatentWorldModel, stacked: np.ndarray, actions: np.ndarray, starts: list[int],
              horizon: int) -> np.ndarray:
    """Imagined latents ``(H+1, N, Z)`` from the encodings of ``stacked[starts]`` (``N`` starts),
    each under the actions taken from its start on (see :func:`_plans`)."""
    with torch.inference_mode():
        z0 = model.encode(torch.from_numpy(stacked[starts]))
        return model.rollout(z0, _plans(actions, starts, horizon)).numpy()


def _probe_data(model: LatentWorldModel, throws: Throws, imagined: bool) -> tuple[np.ndarray, np.ndarray]:
    """Latents ``(M, Z)`` and the ball positions ``(M, 2)`` they should read as.

    ``imagined=False``: the encodings of real frames. ``imagined=True``: also every latent
    imagined from every frame of the throw under the actions taken, up to the landing, paired
    with where the ball really was at that time; a probe fitted on these reads imagined latents
    the way the planner meets them, not only latents on the encoder's manifold.
    """
    latents, targets = [], []
    for frames, actions, ball in zip(throws.frames, throws.actions, throws.ball, strict=True):
        stacked = stack_frames(frames, _stack(model))
        steps = len(actions)
        if not imagined:
            latents.append(_encode(model, stacked).numpy())
            targets.append(ball)
            continue
        rolled = _rollouts(model, stacked, actions, list(range(steps + 1)), steps)  # (T+1, T+1, Z)
        for s in range(steps + 1):
            latents.append(rolled[:steps + 1 - s, s])
            targets.append(ball[s:])
    return np.concatenate(latents).astype(np.float64), np.concatenate(targets)


def fit_probe(model: LatentWorldModel, throws: Throws, kind: str = "mlp", ridge: float = 1e-2,
              steps: int = 6000, seed: int = 0, imagined: bool = True) -> Probe:
    """Fit a probe to the ball's position on the training throws' latents (see :func:`_probe_data`)."""
    z, target = _probe_data(model, throws, imagined)
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


def landing_point(positions: np.ndarray, continuation: np.ndarray) -> float:
    """Landing x from an imagined flight: positions ``(H+1, 2)`` and the model's continuation
    probabilities ``(H,)`` (step ``t`` leads from position ``t`` to ``t+1``).

    The episode ends when the ball lands, so the model's own continuation head says when:
    the flight is cut after the first step it predicts to end the episode (probability
    below 1/2), and the landing is the first floor crossing before that cut, or the last
    imagined position when the probe puts the ball still above the floor there.
    """
    ends = np.flatnonzero(continuation < 0.5)
    end = int(ends[0]) + 1 if len(ends) else len(continuation)
    flight = positions[:end + 1]
    if not np.any(flight[1:, 1] <= 0.0) and len(ends):
        return float(flight[-1, 0])
    return _crossing(flight)


def imagine_landing(model: LatentWorldModel, probe: Probe, frames: np.ndarray, actions: np.ndarray,
                    k: int, horizon: int) -> tuple[float, np.ndarray]:
    """Landing x seen from the first ``k`` frames (:func:`landing_point`), and the imagined
    positions ``(H+1, 2)``."""
    stacked = stack_frames(frames[:k], _stack(model))  # frames after k-1 are never seen
    with torch.inference_mode():
        rollout = model.imagine(model.encode(torch.from_numpy(stacked[-1:])), _plans(actions, [k - 1], horizon))
    positions = probe(rollout.latents[:, 0].numpy().astype(np.float64))
    return landing_point(positions, rollout.continuation[:, 0].numpy()), positions


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
    fitted = "real and imagined" if results.get("probe_fit", "real") == "imagined" else "real-frame"
    lines += ["", f"Ball-position error (metres, {results['probe']} probe fitted on {fitted} latents of the "
              f"training throws, read on imagined latents of the test throws from k=2 frames) "
              "against horizon:", "",
              "| objective | " + " | ".join(f"h={h}" + (" (real frame)" if h == 0 else "")
                                           for h in results["error_horizons"]) + " |",
              "|---|" + "---|" * len(results["error_horizons"])]
    for name, r in results["objectives"].items():
        cells = [f"{e:.3f} (n={n})" if e is not None else "-" for e, n in r["probe"]["position_error_m"].values()]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += ["", f"Models trained on {results.get('device', 'cpu')} by "
              f"`{results.get('train_command', results['command'])}`.", "",
              "| objective | updates | training s | final metrics |", "|---|---|---|---|"]
    for name, r in results["objectives"].items():
        last = r["history"][-1] if r["history"] else {}
        final = ", ".join(f"{k.split('/')[-1]}={v:.3g}" for k, v in last.items() if k != "update") or "loaded"
        lines.append(f"| {name} | {last.get('update', '-')} | {r['train_seconds']:.0f} | {final} |")
    return "\n".join(lines) + "\n"


def _model_path(out: Path, objective: str) -> Path:
    return out / "models" / f"{objective}.pt"


def _new_model(objective: str, stack: int = 2) -> LatentWorldModel:
    config = LatentConfig(latent_dim=64, depth=16, hidden_dim=256, objective=objective, learning_rate=3e-4)
    return LatentWorldModel(1, config, channels=3 * stack, safety_head=False)


def _train_and_save(train: Throws, objective: str, args: argparse.Namespace,
                    threads: int | None = None) -> tuple[list[dict[str, float]], float]:
    """Train one objective's model, save it under ``<out>/models``; returns its history and seconds.

    Run in a worker process (``threads`` set) when several objectives train in parallel.
    """
    if threads is not None:
        torch.set_num_threads(threads)
    started = time.time()
    _, history = train_model(train, objective, args.updates, args.batch_size, args.length, args.seed,
                             stack=args.stack, save_to=_model_path(args.out, objective),
                             device=args.device, max_seconds=args.max_train_seconds)
    return history, time.time() - started


def _exit_with_parent(parent: int, poll_seconds: float = 2.0) -> None:
    """Worker initializer: end this worker once ``parent`` is gone (a killed run leaves no orphans)."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(poll_seconds)
        os._exit(1)

    threading.Thread(target=watch, daemon=True).start()


def _trained(train: Throws, args: argparse.Namespace) -> dict[str, tuple[list[dict[str, float]], float]]:
    """Train (or with ``--reuse-models``, skip) every objective: one process each with ``--workers`` > 1."""
    if args.reuse_models:
        return {}
    if args.workers <= 1 or len(args.objectives) == 1:
        return {objective: _train_and_save(train, objective, args) for objective in args.objectives}
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(min(args.workers, len(args.objectives)), mp_context=context,
                             initializer=_exit_with_parent, initargs=(os.getpid(),)) as pool:
        futures = {o: pool.submit(_train_and_save, train, o, args, 1) for o in args.objectives}
        return {o: future.result() for o, future in futures.items()}


def _load(objective: str, out: Path, stack: int) -> LatentWorldModel:
    model, path = _new_model(objective, stack), _model_path(out, objective)
    if not path.is_file():
        raise SystemExit(f"ball_probe: --reuse-models found no {objective} model at {path}; train it first "
                         "(without --reuse-models) or point --out at the run that has it")
    try:
        state = read_weights(path, "model", "Train it again without --reuse-models.")
        load_module_state(model, state, path,
                          f"for a {objective} model seeing {stack} stacked frames, pass the --stack it was "
                          "trained with, or train it again without --reuse-models")
    except CheckpointError as error:
        raise SystemExit(f"ball_probe: {error}") from error
    return model.eval()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--objectives", nargs="+", default=["jepa", "reconstruction"])
    p.add_argument("--episodes", type=int, default=400, help="training throws")
    p.add_argument("--test-episodes", type=int, default=200)
    p.add_argument("--updates", type=int, default=2500)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--length", type=int, default=10, help="training window (steps)")
    p.add_argument("--stack", type=int, default=2, help="RGB frames the encoder sees at once (>= 2: velocity)")
    p.add_argument("--ks", type=int, nargs="+", default=[2, 3, 5, 10])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--test-seed", type=int, default=None,
                   help="first reset seed of the held-out throws (default: --seed + 1,000,000)")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--probe", choices=["mlp", "linear"], default="mlp", help="read-out of the ball position")
    p.add_argument("--probe-fit", choices=["imagined", "real"], default="imagined",
                   help="fit the read-out on real and imagined latents of the training throws, or on real only")
    p.add_argument("--probe-steps", type=int, default=6000, help="Adam steps fitting the mlp read-out")
    p.add_argument("--workers", type=int, default=1,
                   help="train the objectives in this many processes at once (one thread each)")
    p.add_argument("--device", default="cpu",
                   help="where the world models train (cpu, cuda, cuda:N); the read-out and the test run on the CPU")
    p.add_argument("--max-train-seconds", type=float, default=None,
                   help="stop training a model once this wall-clock budget is spent, even short of --updates "
                        "(the updates done are recorded)")
    p.add_argument("--train-only", action="store_true",
                   help="train and save the models and their training record, and stop; read them later "
                        "with --reuse-models (for example on another machine)")
    p.add_argument("--reuse-models", action="store_true",
                   help="load <out>/models/<objective>.pt from an earlier run instead of training")
    args = p.parse_args(argv)
    if args.train_only and args.reuse_models:
        p.error("--train-only and --reuse-models exclude each other: the first trains, the second skips training")
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        p.error(f"--device {args.device} was asked for but torch sees no CUDA device; use --device cpu")
    if args.stack < 1:
        p.error(f"--stack must be at least 1 (frames the encoder sees at once), got {args.stack}")
    test_seed = args.seed + 1_000_000 if args.test_seed is None else args.test_seed
    if test_seed < args.seed + args.episodes and args.seed < test_seed + args.test_episodes:
        p.error(f"the held-out throws (seeds {test_seed}..) overlap the training throws (seeds {args.seed}.."
                f"{args.seed + args.episodes - 1}); pick another --test-seed")
    command = "python -m benchmarks.ball_probe " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:]))
    # with --reuse-models, a missing, damaged or mismatched model is refused before any throw is collected
    reused = {o: _load(o, args.out, args.stack) for o in args.objectives} if args.reuse_models else {}
    train = collect(args.episodes, seed=args.seed)
    old = args.out / "results.json"
    earlier_run = json.loads(old.read_text()) if args.reuse_models and old.exists() else {}
    earlier = earlier_run.get("objectives", {})
    error_horizons = [0, 1, 5, 10, 25]  # 0: the probe on a real frame's latent (no imagination)
    results: dict[str, Any] = {"command": command, "error_horizons": error_horizons, "probe": args.probe,
                               "probe_fit": args.probe_fit, "stack": args.stack,
                               # the run that trained the models (an earlier one with --reuse-models)
                               "train_command": earlier_run.get("train_command", earlier_run.get("command", command)),
                               "device": earlier_run.get("device", "cpu") if args.reuse_models else args.device,
                               "objectives": {}}
    trained = _trained(train, args)
    args.out.mkdir(parents=True, exist_ok=True)
    if args.train_only:
        results["objectives"] = {o: {"train_seconds": seconds, "history": history}
                                 for o, (history, seconds) in trained.items()}
        (args.out / "results.json").write_text(json.dumps(results, indent=1))
        print(f"models and their training record are in {args.out}; read them with --reuse-models")
        return 0
    results["test_seed"] = test_seed
    test = collect(args.test_episodes, seed=test_seed)
    for objective in args.objectives:
        model = reused[objective] if objective in reused else _load(objective, args.out, args.stack)
        history, seconds = trained.get(objective, ([], 0.0))
        if args.reuse_models and earlier.get(objective):  # keep the training record of the run that made it
            history, seconds = earlier[objective]["history"], earlier[objective]["train_seconds"]
        probe = fit_probe(model, train, kind=args.probe, steps=args.probe_steps, seed=args.seed,
                          imagined=args.probe_fit == "imagined")
        results["objectives"][objective] = {"train_seconds": seconds, "history": history,
                                            "probe": evaluate_probe(model, probe, test, args.ks, 60, error_horizons)}
    (args.out / "results.json").write_text(json.dumps(results, indent=1))
    report = _markdown(results, command, args.ks)
    (args.out / "report.md").write_text(report)
    print(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())

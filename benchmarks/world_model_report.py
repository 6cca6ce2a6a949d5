"""World-model report of a run: open-loop prediction error against horizon, real vs imagined frames.

    python -m benchmarks.world_model_report RUN_DIR [--horizons 1 5 10 25 50] [--sequences 32] [--seed 0]

1. Load the run's checkpoint (``RUN_DIR/checkpoints/latest.pt``: config, model, replay buffer).
2. From the replay buffer take up to ``--sequences`` distinct windows of ``L`` consecutive real
   steps of one episode, ``L`` = the largest requested horizon that some stored episode is long
   enough for (longer horizons are reported as "n/a (episodes shorter)"). Every horizon ``h <= L``
   is measured on these same windows.
3. From each window's first observation roll the model forward open loop under the real actions
   and compare step ``h`` of the imagination with the real observation ``h`` steps later:

   - LatentWorldModel: MSE between imagined latents and the encodings of the real frames (JEPA:
     the EMA target encoder, else the online encoder), divided by the mean per-dimension variance
     of those encodings over the windows (1.0 = no better than always predicting their mean); with
     the reconstruction objective also the pixel MSE (pixels scaled to [0, 1]) of the decoded
     imagined frames against the real ones.
   - RoboticsWorldModel: every ensemble member rolls each window out (``imagine``, mean
     predictions); the members' mean state is compared with the real state, each dimension
     divided by that dimension's std over the windows (normalised MSE; constant dimensions left out).

4. Write ``RUN_DIR/world_model_report.md`` and ``.json``, for pixel models a grid of real vs
   imagined frames ``RUN_DIR/world_model_frames.png`` (decoded frames for the reconstruction
   objective; for JEPA, which predicts no pixels, the sampled real frame whose target encoding is
   nearest in cosine similarity to each imagined latent), and the same numbers and grid to
   TensorBoard (``RUN_DIR/tb``, tags ``world_model_report/...``, at the run's step count).

Shape letters: ``T`` window length (``L``), ``N`` windows, ``Z`` latent dim, ``S`` state dim,
``A`` action dim, ``K`` sequences shown in the grid, ``Hp, Wp, C`` frame height, width, channels.
"""

from __future__ import annotations

import argparse
import json
import math
import shlex
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from agent.agent import CHECKPOINT_NAME, MBRLAgent
from agent.buffer import ReplayBuffer, Sequences
from agent.checkpoint import CheckpointError
from agent.config import ConfigError
from envs import EnvironmentSpecError
from world_models.latent import LatentWorldModel
from world_models.latent_nets import ConvEncoder
from world_models.robotics import RoboticsWorldModel

__all__ = [
    "DEFAULT_HORIZONS", "Prediction", "ReportError", "evaluate_latent", "evaluate_robotics", "main",
    "make_report", "normalised_mse", "sample_windows",
]

DEFAULT_HORIZONS = (1, 5, 10, 25, 50)
NOT_AVAILABLE = "n/a (episodes shorter)"
REPORT_MD, REPORT_JSON, FRAMES_PNG = "world_model_report.md", "world_model_report.json", "world_model_frames.png"
TAG = "world_model_report"
GRID_SEQUENCES = 3
EXTRA_METRICS = {
    "cosine_distance": "1 - cosine similarity of imagined and real latents",
    "pixel_mse": "MSE of decoded imagined frames against the real ones, pixels scaled to [0, 1]",
}
_CHUNK = 256  # frames per encoder / decoder call
_MIN_STD = 1e-8  # state dimensions with a smaller std over the windows are left out of the normalised MSE


class ReportError(RuntimeError):
    """The report cannot be made (no run directory, no checkpoint, empty replay buffer, bad arguments)."""


@dataclass
class Prediction:
    """Open-loop prediction of ``N`` windows of ``T`` steps.

    errors ``(T+1,)``: normalised MSE at each step (step 0 = the starting encoding).
    extra: more ``(T+1,)`` errors by name (see :data:`EXTRA_METRICS`): ``cosine_distance`` for latent
    models, ``pixel_mse`` (decoded frames against real ones) for the reconstruction objective.
    real, imagined ``(T+1, K, Hp, Wp, 3)`` uint8 or None: frames for the grid (pixel models only).
    imagined_label: the grid's name for the imagined rows.
    """

    errors: np.ndarray
    extra: dict[str, np.ndarray]
    real: np.ndarray | None
    imagined: np.ndarray | None
    model: str
    metric: str
    caption: str
    imagined_label: str = "imagined"


# ---------------------------------------------------------------- data


def load_agent(run_dir: Path) -> MBRLAgent:
    """The run's agent restored from ``RUN_DIR/checkpoints/latest.pt`` (outputs in ``run_dir`` untouched)."""
    if not run_dir.is_dir():
        raise ReportError(
            f"{run_dir} is not a directory; pass a run directory written by train_agent.py "
            "(e.g. python train_agent.py --env Pendulum-v1 --run-dir runs/pendulum)"
        )
    checkpoint = run_dir / CHECKPOINT_NAME
    if not checkpoint.is_file():
        raise ReportError(
            f"{run_dir} has no checkpoint ({checkpoint} is missing); a run writes it every "
            "train.checkpoint_freq steps and when training ends: train with "
            f"python train_agent.py --env ENV --run-dir {run_dir} (or --resume to continue it)"
        )
    try:
        return MBRLAgent.load(checkpoint)  # no run_dir: loading must not truncate the run's logs
    except (CheckpointError, ConfigError, EnvironmentSpecError) as exc:
        raise ReportError(f"cannot load {checkpoint}: {exc}") from exc


def print_or_refuse(table: Callable[[], str]) -> int:
    """A run check's exit status: print ``table()`` and return 0, or say why it cannot be made (a
    :class:`ReportError`) on stderr and return 2."""
    try:
        print(table())
    except ReportError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


def longest_window(buffer: ReplayBuffer, horizons: Sequence[int], seed: int) -> int | None:
    """The largest ``h`` in ``horizons`` with a window of ``h`` steps within one stored episode, or None."""
    probe = np.random.default_rng(seed)
    for h in sorted(set(horizons), reverse=True):
        try:
            buffer.sample_sequences(1, h, probe)
        except ValueError:
            continue
        return h
    return None


def sample_windows(buffer: ReplayBuffer, length: int, count: int, seed: int) -> Sequences:
    """Up to ``count`` distinct windows of ``T = length`` steps (fewer when the buffer holds fewer).

    Returns time-major :class:`Sequences`: obs ``(T+1, N, *obs_shape)``, actions ``(T, N, A)``.
    """
    rng = np.random.default_rng(seed)
    drawn = buffer.sample_sequences(2 * count, length, rng)
    keys = [drawn.obs[0, i].tobytes() + drawn.actions[:, i].tobytes() for i in range(2 * count)]
    first = {key: i for i, key in reversed(list(enumerate(keys)))}  # key -> its first index
    keep = np.array(sorted(first.values())[:count])
    return drawn._replace(**{name: field[:, keep] for name, field in drawn._asdict().items() if field is not None})


# ---------------------------------------------------------------- errors


def normalised_mse(prediction: np.ndarray, target: np.ndarray, per_dim: bool) -> np.ndarray:
    """``(T+1, N, D)`` prediction and target -> ``(T+1,)`` normalised MSE at each step.

    The scale is the per-dimension variance of ``target[1:]`` over steps and windows. ``per_dim``:
    each dimension's squared error is divided by its own variance (dimensions without variance
    left out); else the mean squared error is divided by the mean variance (pooled).
    """
    reference = target[1:] if len(target) > 1 else target
    variance = reference.reshape(-1, reference.shape[-1]).astype(np.float64).var(axis=0)  # (D,)
    squared = (prediction.astype(np.float64) - target) ** 2  # (T+1, N, D)
    if per_dim:
        keep = variance > _MIN_STD**2
        if not keep.any():
            return np.full(len(target), np.nan)
        return np.asarray((squared[..., keep] / variance[keep]).mean(axis=(1, 2)))
    scale = variance.mean()
    return np.asarray(squared.mean(axis=(1, 2)) / scale) if scale > 0 else np.full(len(target), np.nan)


def _encode(encoder: ConvEncoder, frames: np.ndarray, device: torch.device) -> torch.Tensor:
    """``(M, Hp, Wp, C)`` uint8 frames -> ``(M, Z)`` (in chunks, pixels only)."""
    parts = [encoder(torch.as_tensor(frames[i : i + _CHUNK], device=device), None)
             for i in range(0, len(frames), _CHUNK)]
    return torch.cat(parts)


def _rgb(frames: np.ndarray) -> np.ndarray:
    """``(..., Hp, Wp, C)`` uint8 -> the newest RGB frame ``(..., Hp, Wp, 3)`` (last 3 channels; grey if C < 3)."""
    if frames.shape[-1] >= 3:
        return frames[..., -3:]
    return np.repeat(frames[..., -1:], 3, axis=-1)


@torch.inference_mode()
def evaluate_latent(model: LatentWorldModel, windows: Sequences, device: torch.device) -> Prediction:
    """Open-loop error of a LatentWorldModel on ``windows`` (obs ``(T+1, N, Hp, Wp, C)`` uint8)."""
    obs = windows.obs
    steps, count = obs.shape[:2]
    frames = obs.reshape(steps * count, *obs.shape[2:])  # (M, Hp, Wp, C), M = (T+1) N
    encoder = model.target_encoder if model.target_encoder is not None else model.encoder
    targets = _encode(encoder, frames, device).reshape(steps, count, -1)  # (T+1, N, Z)
    z0 = _encode(model.encoder, obs[0], device)  # (N, Z)
    latents = model.rollout(z0, torch.as_tensor(windows.actions, dtype=torch.float32, device=device))
    errors = normalised_mse(latents.cpu().numpy(), targets.cpu().numpy(), per_dim=False)
    cosine = 1.0 - torch.nn.functional.cosine_similarity(latents, targets, dim=-1).mean(dim=1)  # (T+1,)
    extra = {"cosine_distance": cosine.cpu().numpy().astype(np.float64)}
    shown = min(GRID_SEQUENCES, count)
    which = "EMA target" if model.target_encoder is not None else "online"
    metric = f"MSE of imagined latents against the {which} encoder's latents of the real frames / their variance"
    if model.decoder is None:
        imagined = _nearest_frames(latents[:, :shown], targets.flatten(0, 1), frames)
        caption = ("JEPA predicts no pixels: 'imagined' shows, for each imagined latent, the sampled real frame "
                   "whose target encoding is nearest (cosine similarity)")
        return Prediction(errors, extra, _rgb(obs[:, :shown]), _rgb(imagined), "LatentWorldModel (jepa)", metric,
                          caption, imagined_label="nearest")
    pixel_mse = np.empty(steps)
    decoded = []
    for t in range(steps):
        images = model.decode(latents[t]).cpu().numpy()  # (N, Hp, Wp, C) uint8
        pixel_mse[t] = float(np.mean(((images.astype(np.float32) - obs[t]) / 255.0) ** 2))
        decoded.append(images[:shown])
    caption = "'imagined' = decoded open-loop latents"
    extra["pixel_mse"] = pixel_mse
    return Prediction(errors, extra, _rgb(obs[:, :shown]), _rgb(np.stack(decoded)),
                      "LatentWorldModel (reconstruction)", metric, caption, imagined_label="decoded")


def _nearest_frames(latents: torch.Tensor, pool: torch.Tensor, frames: np.ndarray) -> np.ndarray:
    """``latents (T+1, K, Z)``, ``pool (M, Z)`` encodings of ``frames (M, Hp, Wp, C)`` -> ``(T+1, K, Hp, Wp, C)``."""
    query = torch.nn.functional.normalize(latents.flatten(0, 1), dim=-1)  # ((T+1) K, Z)
    keys = torch.nn.functional.normalize(pool, dim=-1)
    nearest = (query @ keys.T).argmax(dim=1).cpu().numpy()
    return frames[nearest].reshape(*latents.shape[:2], *frames.shape[1:])


@torch.inference_mode()
def evaluate_robotics(model: RoboticsWorldModel, windows: Sequences, device: torch.device) -> Prediction:
    """Open-loop error of the ensemble mean on ``windows`` (obs ``(T+1, N, S)``, actions ``(T, N, A)``)."""
    members = model.ensemble_size
    states = torch.as_tensor(windows.obs, dtype=torch.float32, device=device)  # (T+1, N, S)
    actions = torch.as_tensor(windows.actions, dtype=torch.float32, device=device)  # (T, N, A)
    z0 = model.encode(states[0]).repeat_interleave(members, dim=0)  # (N E, S): row n E + e -> member e
    latents = model.imagine(z0, actions.repeat_interleave(members, dim=1)).latents  # (T+1, N E, S)
    mean = latents.reshape(len(latents), states.shape[1], members, -1).mean(dim=2)  # (T+1, N, S)
    errors = normalised_mse(mean.cpu().numpy(), states.cpu().numpy(), per_dim=True)
    metric = ("MSE of the ensemble's mean imagined state against the real state, each dimension divided "
              "by its variance over the windows")
    return Prediction(errors, {}, None, None, f"RoboticsWorldModel (ensemble of {members}, mean)", metric, "")


# ---------------------------------------------------------------- outputs


def frames_figure(prediction: Prediction, columns: Sequence[int]) -> Any:
    """A matplotlib Figure: per shown sequence a row of real frames and a row of imagined ones at ``columns``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    assert prediction.real is not None and prediction.imagined is not None
    shown = prediction.real.shape[1]
    fig, axes = plt.subplots(2 * shown, len(columns), figsize=(1.3 * len(columns) + 0.6, 1.35 * 2 * shown + 0.8),
                             squeeze=False)
    pairs = (("real", prediction.real), (prediction.imagined_label, prediction.imagined))
    for k in range(shown):
        for row, (label, frames) in enumerate(pairs):
            for j, t in enumerate(columns):
                ax = axes[2 * k + row, j]
                ax.imshow(frames[t, k])
                ax.set_xticks([])
                ax.set_yticks([])
                if j == 0:
                    ax.set_ylabel(f"#{k} {label}", fontsize=8)
                if k == 0 and row == 0:
                    ax.set_title(f"t={t}", fontsize=8)
    fig.suptitle(f"{prediction.model}: real vs imagined (open loop from t=0)\n{prediction.caption}", fontsize=8,
                 wrap=True)
    fig.tight_layout()
    return fig


def _finite(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


def _rows(prediction: Prediction | None, horizons: Sequence[int], windows: int) -> list[dict[str, Any]]:
    """One dict per horizon: ``error``, the extra metrics (None where not finite), ``windows``;
    ``fits`` is False (and the values None) beyond the windows' length."""
    length = -1 if prediction is None else len(prediction.errors) - 1
    names = [] if prediction is None else list(prediction.extra)
    rows = []
    for h in horizons:
        row: dict[str, Any] = {"horizon": h, "fits": prediction is not None and h <= length, "windows": 0,
                               "error": None, **dict.fromkeys(names)}
        if prediction is not None and row["fits"]:
            row.update(windows=windows, error=_finite(prediction.errors[h]))
            row.update({name: _finite(values[h]) for name, values in prediction.extra.items()})
        rows.append(row)
    return rows


def _cell(value: float | None) -> str:
    return "nan" if value is None else f"{value:.4g}"


def markdown(report: dict[str, Any]) -> str:
    """The report as markdown: what was measured, the table horizon -> error, the command."""
    extra = report["extra_metrics"]
    lines = [
        f"# World-model report: {report['env_id']}", "",
        f"- run: `{report['run_dir']}` at {report['num_timesteps']} environment steps",
        f"- model: {report['model']} (objective: {report['objective']})",
        f"- normalised error: {report['metric']}; 1.0 = no better than predicting the mean",
        *(f"- {name}: {EXTRA_METRICS[name]}" for name in extra),
        f"- windows: {report['windows']} distinct windows of {report['window_length']} real steps from the "
        "replay buffer, rolled out open loop under the real actions from their first observation",
        "", "| " + " | ".join(["horizon", "normalised error", *extra, "windows"]) + " |",
        "|" + "---:|" * (3 + len(extra)),
    ]
    for row in report["horizons"]:
        if row["fits"]:
            cells = [_cell(row["error"]), *(_cell(row[name]) for name in extra)]
        else:
            cells = [NOT_AVAILABLE, *([""] * len(extra))]
        lines.append("| " + " | ".join([str(row["horizon"]), *cells, str(row["windows"])]) + " |")
    if report["frames"]:
        lines += ["", f"![real vs imagined frames]({report['frames']})", "", f"Frames: {report['caption']}."]
    lines += ["", "Regenerate with:", "", "```", report["command"], "```", ""]
    return "\n".join(lines)


def log_tensorboard(run_dir: Path, report: dict[str, Any], figure: Any | None) -> None:
    """Errors as ``world_model_report/error_h{h}`` (extra metrics as ``{name}_h{h}``), the frames grid and
    the markdown table, all at the run's step count, into ``RUN_DIR/tb``."""
    from torch.utils.tensorboard import SummaryWriter

    step = int(report["num_timesteps"])
    writer = SummaryWriter(str(run_dir / "tb"))
    try:
        for row in report["horizons"]:
            for name in ["error", *report["extra_metrics"]]:
                if row[name] is not None:
                    writer.add_scalar(f"{TAG}/{name}_h{row['horizon']}", row[name], step)
        if figure is not None:
            writer.add_figure(f"{TAG}/frames", figure, step, close=False)
        writer.add_text(f"{TAG}/table", markdown(report), step)
    finally:
        writer.close()


# ---------------------------------------------------------------- the report


def _objective(agent: MBRLAgent) -> str:
    return agent.config.latent.objective if agent.model_kind == "latent" else "ensemble Gaussian NLL"


def evaluate(agent: MBRLAgent, windows: Sequences) -> Prediction:
    """The model-specific open-loop evaluation of ``windows``."""
    if isinstance(agent.model, LatentWorldModel):
        return evaluate_latent(agent.model, windows, agent.device)
    if isinstance(agent.model, RoboticsWorldModel):
        return evaluate_robotics(agent.model, windows, agent.device)
    raise ReportError(f"no world-model report for {type(agent.model).__name__}")


def make_report(run_dir: str | Path, horizons: Sequence[int] = DEFAULT_HORIZONS, sequences: int = 32,
                seed: int = 0) -> dict[str, Any]:
    """Measure, write ``RUN_DIR/world_model_report.{md,json}`` (+ frames PNG for pixel models), log to TensorBoard.

    Returns the JSON report (a dict).
    """
    run_dir = Path(run_dir)
    if not horizons or min(horizons) < 1 or sequences < 1:
        raise ReportError(f"horizons and --sequences must be >= 1, got horizons={list(horizons)}, "
                          f"sequences={sequences}")
    horizons = sorted(set(horizons))
    agent = load_agent(run_dir)
    if len(agent.buffer) == 0:
        raise ReportError(f"the replay buffer in {run_dir / CHECKPOINT_NAME} is empty; train the run for longer")
    length = longest_window(agent.buffer, horizons, seed)
    prediction, windows = None, 0
    if length is not None:
        sample = sample_windows(agent.buffer, length, sequences, seed)
        windows = sample.actions.shape[1]
        prediction = evaluate(agent, sample)
    command = shlex.join(["python", "-m", "benchmarks.world_model_report", str(run_dir), "--horizons",
                          *map(str, horizons), "--sequences", str(sequences), "--seed", str(seed)])
    figure = None
    if prediction is not None and prediction.real is not None:
        figure = frames_figure(prediction, [0, *(h for h in horizons if h <= (length or 0))])
        figure.savefig(run_dir / FRAMES_PNG, dpi=100)
    report: dict[str, Any] = {
        "run_dir": str(run_dir), "env_id": agent.config.env_id, "num_timesteps": agent.num_timesteps,
        "model": prediction.model if prediction else type(agent.model).__name__, "objective": _objective(agent),
        "metric": prediction.metric if prediction else "", "window_length": length, "windows": windows,
        "seed": seed, "extra_metrics": list(prediction.extra) if prediction else [],
        "frames": FRAMES_PNG if figure is not None else None, "caption": prediction.caption if prediction else "",
        "horizons": _rows(prediction, horizons, windows), "command": command,
    }
    (run_dir / REPORT_JSON).write_text(json.dumps(report, indent=2) + "\n")
    (run_dir / REPORT_MD).write_text(markdown(report))
    log_tensorboard(run_dir, report, figure)
    if figure is not None:
        import matplotlib.pyplot as plt

        plt.close(figure)
    return report


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.world_model_report",
        description="Open-loop prediction error against horizon and real vs imagined frames of a run's world model.",
    )
    parser.add_argument("run_dir", type=Path, help="a run directory (holds checkpoints/latest.pt)")
    parser.add_argument("--horizons", type=int, nargs="+", default=list(DEFAULT_HORIZONS),
                        help="open-loop steps to report (default: 1 5 10 25 50)")
    parser.add_argument("--sequences", type=int, default=32, help="windows from the replay buffer (default: 32)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the window sampling (default: 0)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        report = make_report(args.run_dir, args.horizons, args.sequences, args.seed)
    except ReportError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(markdown(report))
    print(f"Written: {args.run_dir / REPORT_MD}, {args.run_dir / REPORT_JSON}"
          + (f", {args.run_dir / FRAMES_PNG}" if report["frames"] else "") + f"; TensorBoard: {args.run_dir / 'tb'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

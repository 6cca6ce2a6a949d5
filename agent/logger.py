"""Run outputs in the formats SB3 and rl-zoo tools read: TensorBoard, progress.csv,
monitor.csv and evaluations.npz. The x-axis is always environment steps."""

from __future__ import annotations

import csv
import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from torch.utils.tensorboard import SummaryWriter

from agent.atomic import atomic_write
from agent.evaluation import EvalResult


class RunLogger:
    """Writes every output of a run under ``run_dir``; appends when resuming.

    ``resumed_at``: the step of the checkpoint a resumed run continues from. TensorBoard then hides the
    earlier attempt's events logged after it (``purge_step``), as :func:`truncate_outputs` drops its rows
    from the other logs, so every step is shown once. ``elapsed_before``: the run's wall-clock seconds
    before this session; monitor.csv's ``t`` continues from it. ``episodes``: the monitor.csv rows so far.
    """

    def __init__(self, run_dir: str | Path, env_id: str, resumed_at: int | None = None,
                 elapsed_before: float = 0.0) -> None:
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.start = time.time() - elapsed_before
        purge_step = None if resumed_at is None else resumed_at + 1
        _wait_for_a_later_second(self.run_dir / "tb")
        self._writer = SummaryWriter(str(self.run_dir / "tb"), purge_step=purge_step)
        self._values: dict[str, float] = {}
        self._progress = self.run_dir / "progress.csv"
        self._monitor = self.run_dir / "monitor.csv"
        if not self._monitor.exists():
            header = json.dumps({"t_start": self.start, "env_id": env_id})
            self._monitor.write_text(f"#{header}\nr,l,t\n")
        self.episodes = len(_monitor_rows(self._monitor.read_text())[1])
        self._evaluations = self.run_dir / "evaluations.npz"

    def record(self, key: str, value: float) -> None:
        """Remember ``value`` under ``key`` until the next :meth:`dump`."""
        self._values[key] = float(value)

    def dump(self, step: int) -> dict[str, float]:
        """Write all recorded values at ``step`` to TensorBoard and progress.csv."""
        values = {"time/total_timesteps": float(step), **self._values}
        for key, value in values.items():
            self._writer.add_scalar(key, value, step)
        self._writer.flush()
        self._append_progress(values)
        self._values = {}
        return values

    def _append_progress(self, values: dict[str, float]) -> None:
        rows: list[dict[str, str]] = []
        keys: list[str] = []
        text = ""
        if self._progress.exists():
            text = self._progress.read_text()
            keys, rows = _progress_rows(text)
        new_keys = [k for k in values if k not in keys]
        row = {k: repr(v) for k, v in values.items()}
        if new_keys or not keys or not text.endswith("\n"):  # new columns, or a torn last line to drop
            keys += new_keys
            with self._progress.open("w", newline="") as handle:
                writer = csv.DictWriter(handle, fieldnames=keys)
                writer.writeheader()
                writer.writerows(rows + [row])
        else:
            with self._progress.open("a", newline="") as handle:
                csv.DictWriter(handle, fieldnames=keys).writerow(row)

    def episode(self, episode_return: float, length: int, cost: float) -> None:
        """One finished training episode into monitor.csv (SB3 columns r, l, t)."""
        del cost  # monitor.csv keeps SB3's columns; costs go to progress.csv
        with self._monitor.open("a") as handle:
            handle.write(f"{episode_return:.6g},{length},{time.time() - self.start:.6g}\n")
        self.episodes += 1

    def evaluation(self, step: int, result: EvalResult, wall_seconds: float, eval_seconds: float,
                   plan_ms: float) -> None:
        """Append one evaluation (K episodes) to evaluations.npz (see :func:`append_evaluation`) and record its
        ``eval/...`` values for the next :meth:`dump` (``plan_ms``: milliseconds per planned action)."""
        append_evaluation(self._evaluations, step, result, wall_seconds, eval_seconds)
        self.record("eval/mean_reward", float(result.returns.mean()))
        self.record("eval/std_reward", float(result.returns.std()))
        self.record("eval/mean_ep_length", float(result.lengths.mean()))
        self.record("eval/mean_cost", float(result.costs.mean()))
        self.record("eval/plan_ms", plan_ms)  # per action; training's: planner/plan_ms

    def video(self, step: int, frames: np.ndarray, fps: float) -> Path | None:
        """Write ``frames (T, Hr, Wr, 3)`` uint8 to ``videos/eval-<step>.gif`` (see :func:`write_gif`).

        Returns the path, or ``None`` (nothing written) when there are no frames."""
        if len(frames) == 0:
            return None
        path = self.run_dir / "videos" / f"eval-{step:08d}.gif"
        write_gif(path, frames, fps)
        return path

    def close(self) -> None:
        self._writer.close()


VIDEO_SIDE = 240
"""Videos are scaled down so that their longer side is at most this many pixels."""


def write_gif(path: str | Path, frames: np.ndarray, fps: float) -> None:
    """An animated GIF of ``frames (T, Hr, Wr, 3)`` uint8 at ``fps``, looping, written atomically.

    Frames larger than :data:`VIDEO_SIDE` on their longer side are scaled down (aspect kept).
    GIF rather than MP4: Pillow (already installed with Gymnasium's imageio) writes it, where
    MP4 needs an ffmpeg binary of about 170 MB.
    """
    from PIL import Image

    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8 or len(frames) == 0:
        raise ValueError(f"write_gif needs frames (T >= 1, H, W, 3) uint8, got {frames.dtype} {frames.shape}")
    height, width = frames.shape[1:3]
    scale = min(1.0, VIDEO_SIDE / max(height, width))
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    images = [Image.fromarray(f) if scale == 1.0 else Image.fromarray(f).resize(size, Image.Resampling.BILINEAR)
              for f in frames]
    duration = max(10, round(1000 / fps))  # ms per frame; GIF counts in hundredths of a second
    atomic_write(path, lambda handle: images[0].save(handle, format="GIF", save_all=True,
                                                      append_images=images[1:], duration=duration, loop=0))


def append_evaluation(
    path: str | Path, step: int, result: EvalResult, wall_seconds: float, eval_seconds: float
) -> None:
    """Append one evaluation to ``path`` in SB3's evaluations.npz layout, atomically.

    SB3's keys ``timesteps (n,)``, ``results (n, K)``, ``ep_lengths (n, K)`` plus ours:
    ``costs (n, K)``, ``wall_seconds (n,)`` (run's wall-clock at the evaluation, evaluation
    time included) and ``eval_seconds (n,)`` (wall-clock spent evaluating up to it).
    """
    path = Path(path)
    new = {"timesteps": np.asarray(step), "results": result.returns, "ep_lengths": result.lengths,
           "costs": result.costs, "wall_seconds": np.asarray(wall_seconds, dtype=float),
           "eval_seconds": np.asarray(eval_seconds, dtype=float)}
    data: dict[str, list[np.ndarray]] = {k: [] for k in new}
    if path.exists():
        with np.load(path, allow_pickle=False) as old:
            n = len(old["timesteps"])
            data = {k: list(old[k]) if k in old.files else [np.full_like(v, np.nan, dtype=float)] * n
                    for k, v in new.items()}
    for key, value in new.items():
        data[key].append(value)
    arrays: dict[str, Any] = {k: np.stack(v) for k, v in data.items()}
    atomic_write(path, lambda handle: np.savez(handle, **arrays))


def _wait_for_a_later_second(tb: Path) -> None:
    """Wait (under a second) until the clock's second is past that of every event file in ``tb``.

    TensorBoard reads a run's event files in name order, which starts with the second the file was opened
    (then host and process id): a resumed session's file, whose purge of the steps after its checkpoint must
    come after the earlier sessions' events, then sorts last even when the earlier session started within
    the same second (a process killed at once) and had a larger process id."""
    stamps = [int(part) for p in tb.glob("events.out.tfevents.*") if (part := p.name.split(".")[3]).isdigit()]
    while stamps and time.time() < max(stamps) + 1:
        time.sleep(0.02)


def _complete_lines(text: str) -> list[str]:
    """The lines of ``text`` that end in a newline: a last line without one (a write cut short by a kill
    or a full disk) is dropped."""
    lines = text.split("\n")
    return lines[:-1]  # the piece after the last newline: "" when the file ends cleanly, else a torn line


def _monitor_rows(text: str) -> tuple[list[str], list[str]]:
    """monitor.csv's header lines (the JSON comment and ``r,l,t``) and its complete episode rows."""
    lines = _complete_lines(text)
    return lines[:2], [line for line in lines[2:] if line.count(",") == 2]


def _progress_rows(text: str) -> tuple[list[str], list[dict[str, str]]]:
    """progress.csv's (``text``) columns and its complete rows (a torn last line dropped)."""
    lines = _complete_lines(text)
    reader = csv.DictReader(lines)
    keys = list(reader.fieldnames or [])
    return keys, [row for row in reader if None not in row and None not in row.values()]


def earlier_outputs(run_dir: str | Path) -> list[str]:
    """The logs in ``run_dir`` that hold rows of a run: progress.csv, evaluations.npz, monitor.csv episodes,
    TensorBoard events. A header-only monitor.csv (written when a run opens, before its first episode) does not count.
    """
    run_dir = Path(run_dir)
    found = [name for name in ("progress.csv", "evaluations.npz") if (run_dir / name).exists()]
    monitor = run_dir / "monitor.csv"
    if monitor.exists() and _monitor_rows(monitor.read_text())[1]:
        found.append("monitor.csv")
    if (run_dir / "tb").is_dir() and any((run_dir / "tb").iterdir()):
        found.append("tb/")
    return found


def _log_paths(run_dir: Path) -> list[Path]:
    """A run's logs in ``run_dir``: top-level ``*.csv``, ``*.npz``, ``*.yaml`` and TensorBoard ``events.*`` files
    (the layout SB3 writes as well as ours), and the ``tb/`` and ``videos/`` folders."""
    return [path for path in sorted(run_dir.iterdir())
            if (path.is_file() and (path.suffix in {".csv", ".npz", ".yaml"} or path.name.startswith("events.")))
            or (path.is_dir() and path.name in {"tb", "videos"})]


def clear_outputs(run_dir: str | Path) -> None:
    """Remove a run's logs (:func:`_log_paths`) from ``run_dir`` so that a run restarts there from step 0.
    Checkpoints and anything else stay."""
    for path in _log_paths(Path(run_dir)):
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink()


def set_aside_outputs(run_dir: str | Path) -> Path | None:
    """Move the logs of a run that ended before its first checkpoint into ``run_dir/aborted-<time>/``, saying
    so on stderr, so that a run can start there from step 0; ``None`` (nothing moved) when there are none."""
    run_dir = Path(run_dir)
    found = earlier_outputs(run_dir)
    if not found:
        return None
    target = run_dir / f"aborted-{time.strftime('%Y%m%d-%H%M%S')}"
    suffix = 0
    while target.exists():
        suffix += 1
        target = target.with_name(f"{target.name.split('.')[0]}.{suffix}")
    target.mkdir()
    for path in _log_paths(run_dir):
        path.rename(target / path.name)
    print(f"note: {run_dir} holds logs ({', '.join(found)}) of a run that ended before its first checkpoint; "
          f"they were moved to {target} and the run starts again from step 0", file=sys.stderr, flush=True)
    return target


def truncate_outputs(run_dir: str | Path, step: int, monitor_rows: int | None = None) -> None:
    """Drop rows logged after ``step`` (written after the checkpoint a resume starts from) and torn last lines.

    monitor.csv keeps its first ``monitor_rows`` episodes (the checkpoint's count); checkpoints that do not
    record it fall back to the episodes whose summed lengths stay within ``step``.
    """
    run_dir = Path(run_dir)
    evaluations = run_dir / "evaluations.npz"
    if evaluations.exists():
        with np.load(evaluations, allow_pickle=False) as old:
            keep = old["timesteps"] <= step
            data: dict[str, Any] = {k: old[k][keep] for k in old.files}
        atomic_write(evaluations, lambda handle: np.savez(handle, **data))
    progress = run_dir / "progress.csv"
    if progress.exists():
        keys, rows = _progress_rows(progress.read_text())
        rows = [r for r in rows if float(r["time/total_timesteps"]) <= step]
        with progress.open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=keys)
            writer.writeheader()
            writer.writerows(rows)
    monitor = run_dir / "monitor.csv"
    if monitor.exists():
        header, episodes = _monitor_rows(monitor.read_text())
        if monitor_rows is None:
            lengths = np.cumsum([int(line.split(",")[1]) for line in episodes])
            monitor_rows = int(np.searchsorted(lengths, step, side="right"))
        monitor.write_text("\n".join(header + episodes[:monitor_rows]) + "\n")

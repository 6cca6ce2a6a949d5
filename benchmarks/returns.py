"""Returns against environment steps: train several seeds with train_agent.py and summarise.

    python -m benchmarks.returns --env InvertedPendulum-v5 --seeds 0 1 2 --threshold 1000 \
        --out benchmarks/results/InvertedPendulum-v5

Runs (one after another, each resumable) go to ``<out>/runs/rehearse/seed<k>``; the summary
(``summary.md``, ``summary.json``) holds the command, per-seed curves, mean and IQM with
a 95% bootstrap interval at every evaluation step, steps and wall-clock to reach the
threshold, and peak memory. Extra flags after ``--`` go to train_agent.py unchanged.

The summary covers the seeds asked for and every other seed already under ``<out>/runs/rehearse``
(with an evaluation), so seeds trained as separate processes, one ``--seeds k`` each, leave one
summary of all of them; the report names the seeds that came from other commands.
"""

from __future__ import annotations

import argparse
import csv
import json
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.stats import bootstrap_ci, iqm


def progress_times(run_dir: Path) -> tuple[dict[int, tuple[float, float]], float]:
    """From progress.csv: ``step -> (time_elapsed, eval_seconds)`` (NaN when not logged) and peak memory (MiB)."""
    times: dict[int, tuple[float, float]] = {}
    peak = 0.0
    path = run_dir / "progress.csv"
    if path.exists():
        with path.open(newline="") as handle:
            for row in csv.DictReader(handle):
                if row.get("time/time_elapsed"):
                    step = int(float(row["time/total_timesteps"]))
                    times[step] = (float(row["time/time_elapsed"]), float(row.get("time/eval_seconds") or "nan"))
                if row.get("time/peak_rss_mb"):
                    peak = max(peak, float(row["time/peak_rss_mb"]))
    return times, peak


def read_run(run_dir: Path) -> dict[str, Any]:
    """Evaluation curve, wall-clock per eval step and peak memory of one run directory."""
    with np.load(run_dir / "evaluations.npz", allow_pickle=False) as evaluations:
        steps = evaluations["timesteps"].astype(int)
        returns = evaluations["results"].mean(axis=1)
    times, peak = progress_times(run_dir)
    return {"steps": steps.tolist(), "returns": returns.tolist(),
            "wall": [times[int(s)][0] if int(s) in times else None for s in steps],
            "eval_wall": [times[int(s)][1] if int(s) in times else None for s in steps], "peak_rss_mb": peak}


def first_reach(run: dict[str, Any], threshold: float) -> tuple[int | None, float | None]:
    """First evaluation step (and its wall-clock) whose mean return reaches ``threshold``."""
    for step, ret, wall in zip(run["steps"], run["returns"], run["wall"], strict=True):
        if ret >= threshold:
            return step, wall
    return None, None


def _seconds(value: float | None) -> str:
    """Whole seconds, or ``-`` where not logged (``None`` or NaN)."""
    return "-" if value is None or value != value else f"{value:.0f}"


def summarise(env_id: str, runs: dict[int, dict[str, Any]], threshold: float | None, command: str) -> str:
    """Markdown report of all seeds."""
    steps = sorted(set.intersection(*(set(r["steps"]) for r in runs.values())))
    lines = [f"# {env_id}", "", f"Command: `{command}`", "",
             "| step | " + " | ".join(f"seed {s}" for s in runs) + " | mean | IQM [95% CI] |",
             "|---|" + "---|" * (len(runs) + 2)]
    for step in steps:
        values = np.array([r["returns"][r["steps"].index(step)] for r in runs.values()])
        lo, hi = bootstrap_ci(values)
        cells = " | ".join(f"{v:.1f}" for v in values)
        lines.append(f"| {step} | {cells} | {values.mean():.1f} | {iqm(values):.1f} [{lo:.1f}, {hi:.1f}] |")
    lines += ["", "| seed | final return | wall-clock s | of which evaluation s | peak memory MiB |"
              + (f" steps to {threshold:g} | s to {threshold:g} |" if threshold is not None else ""),
              "|---|---|---|---|---|" + ("---|---|" if threshold is not None else "")]
    for seed, r in runs.items():
        row = (f"| {seed} | {r['returns'][-1]:.1f} | {_seconds(r['wall'][-1])} | "
               f"{_seconds((r.get('eval_wall') or [None])[-1])} | {r['peak_rss_mb']:.0f} |")
        if threshold is not None:
            step, wall = first_reach(r, threshold)
            row += f" {step if step is not None else 'not reached'} | {f'{wall:.0f}' if wall else '-'} |"
        lines.append(row)
    return "\n".join(lines) + "\n"


def algo_runs_dir(out: Path, algo: str = "rehearse") -> Path:
    """Where an algorithm's runs live under a results directory: ``<out>/runs/<algo>`` (also benchmarks.compare's)."""
    return out / "runs" / algo


def run_dir_of(out: Path, seed: int, algo: str = "rehearse") -> Path:
    """Where one run lives: ``<out>/runs/<algo>/seed<seed>``."""
    return algo_runs_dir(out, algo) / f"seed{seed}"


def seeds_to_summarise(out: Path, requested: list[int]) -> tuple[list[int], list[int]]:
    """``(all seeds, the others)``: ``requested`` plus every other ``seed<k>`` under ``out`` with an evaluation."""
    others = []
    parent = algo_runs_dir(out)
    if parent.is_dir():
        for path in parent.iterdir():
            name = path.name.removeprefix("seed")
            if path.name.startswith("seed") and name.isdigit() and (path / "evaluations.npz").exists():
                others.append(int(name))
    others = sorted(set(others) - set(requested))
    return sorted([*requested, *others]), others


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", required=True)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--total-timesteps", type=int, default=None)
    parser.add_argument("--threshold", type=float, default=None, help="report steps/wall-clock to reach it")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--summary-only", action="store_true", help="do not train, summarise existing runs")
    parser.add_argument("--how", default="", help="how the runs were produced, when not by this very command")
    parser.add_argument("train_args", nargs=argparse.REMAINDER, help="after --: extra train_agent.py flags")
    args = parser.parse_args()
    extra = [a for a in args.train_args if a != "--"]
    command = "python -m benchmarks.returns " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    if not args.summary_only:
        for seed in args.seeds:
            cmd = [sys.executable, "train_agent.py", "--env", args.env, "--seed", str(seed), "--run-dir",
                   str(run_dir_of(args.out, seed)), "--no-progress-bar", *extra]
            if args.total_timesteps is not None:
                cmd += ["--total-timesteps", str(args.total_timesteps)]
            print("$", " ".join(shlex.quote(c) for c in cmd), flush=True)
            subprocess.run(cmd, check=True)
    seeds, others = seeds_to_summarise(args.out, args.seeds)
    runs = {seed: read_run(run_dir_of(args.out, seed)) for seed in seeds}
    report = summarise(args.env, runs, args.threshold, command)
    if others:
        found = ", ".join(map(str, others))
        report = report.replace("\n\n", f"\n\nAlso summarised: seed(s) {found}, found in the run directory "
                                f"(produced by other commands, possibly still running)\n\n", 1)
    if args.how:
        report = report.replace("\n\n", f"\n\nRuns produced by: {args.how}\n\n", 1)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "summary.md").write_text(report)
    (args.out / "summary.json").write_text(json.dumps({"env": args.env, "command": command, "runs": runs}, indent=1))
    print(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())

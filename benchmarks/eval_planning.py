"""Cheaper evaluation planning, measured on trained runs: the same checkpoints evaluated with each variant.

    python -m benchmarks.eval_planning --runs RUN_DIR [RUN_DIR ...] \\
        --variant preset --variant it2:sampling.iterations=2 --variant it1:sampling.iterations=1 \\
        --out benchmarks/results/time_to_result/eval_planning.md

Each run directory's checkpoint is loaded once per variant; the variant's settings (``section.field=value``,
evaluation planning only: the ``sampling`` section, ``planner.eval_num_candidates``, ``planner.particles``)
replace the checkpoint's, and the protocol's evaluation is played: ``--episodes`` deterministic episodes, reset
seeds ``--seed`` onwards, the same for every variant. The report gives each run's mean return and the
wall-clock of the evaluation per variant, and a CSV beside it holds one row per run and variant.
"""

from __future__ import annotations

import argparse
import csv
import platform
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from agent.agent import MBRLAgent
from agent.checkpoint import load_run_checkpoint
from agent.config import apply_overrides, config_from_dict
from benchmarks.markdown import write_report

EVAL_ONLY = ("sampling.", "planner.eval_num_candidates", "planner.particles")
"""Settings a variant may change: they act on evaluation planning only, not on what was trained."""


@dataclass(frozen=True)
class Variant:
    name: str
    overrides: dict[str, str]


@dataclass(frozen=True)
class Row:
    run: str
    variant: str
    mean_return: float
    seconds: float
    steps: float  # the episodes' steps, all together


def parse_variant(text: str) -> Variant:
    """``name`` or ``name:section.field=value,section.field=value`` -> :class:`Variant`; ValueError when malformed."""
    name, _, settings = text.partition(":")
    if not name:
        raise ValueError(f"--variant needs a name before ':', got {text!r}")
    overrides = {}
    for pair in filter(None, settings.split(",")):
        key, sep, value = pair.partition("=")
        if not sep or not key.startswith(EVAL_ONLY):
            raise ValueError(f"--variant {name}: {pair!r} is not one of {', '.join(EVAL_ONLY)}... = value")
        overrides[key] = value
    return Variant(name, overrides)


def evaluate_variant(run_dir: Path, variant: Variant, episodes: int, seed: int) -> Row:
    """Load ``run_dir``'s checkpoint, apply ``variant`` and play the evaluation episodes."""
    found = load_run_checkpoint(run_dir)
    if found is None:
        raise FileNotFoundError(f"{run_dir} holds no checkpoint: give the run directory of a trained run")
    payload, path = found
    agent = MBRLAgent.from_checkpoint(payload, path)
    agent.config = apply_overrides(config_from_dict(payload["config"]), variant.overrides)
    start = time.perf_counter()
    result = agent.evaluate(episodes, seed=seed)
    seconds = time.perf_counter() - start
    return Row(str(run_dir), variant.name, float(result.returns.mean()), seconds, float(result.lengths.sum()))


def report(rows: list[Row], variants: list[Variant], command: str) -> list[str]:
    lines = [
        f"Machine: {platform.machine()}, torch {torch.__version__}, {torch.get_num_threads()} threads. "
        f"Command: `{command}`", "",
        "| variant | settings | mean return per run | mean | evaluation s (mean) | ms per episode step |",
        "|---|---|---|---|---|---|",
    ]
    for v in variants:
        mine = [r for r in rows if r.variant == v.name]
        settings = ", ".join(f"{k}={x}" for k, x in v.overrides.items()) or "the checkpoint's"
        returns = ", ".join(f"{r.mean_return:.1f}" for r in mine)
        lines.append(f"| {v.name} | {settings} | {returns} | {statistics.mean(r.mean_return for r in mine):.1f} | "
                     f"{statistics.mean(r.seconds for r in mine):.1f} | "
                     f"{1000 * sum(r.seconds for r in mine) / max(sum(r.steps for r in mine), 1):.1f} |")
    return [*lines, ""]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.eval_planning", description=__doc__.splitlines()[0])
    parser.add_argument("--runs", nargs="+", type=Path, required=True, help="trained run directories")
    parser.add_argument("--variant", action="append", default=[], metavar="NAME[:SECTION.FIELD=VALUE,...]")
    parser.add_argument("--episodes", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0, help="reset seed of the first episode")
    parser.add_argument("--out", type=Path, help="write the table to this markdown file (its rows beside it, .csv)")
    args = parser.parse_args(argv)
    try:
        variants = [parse_variant(v) for v in args.variant or ["preset"]]
    except ValueError as error:
        parser.error(str(error))
    if args.episodes < 1:
        parser.error(f"--episodes must be >= 1, got {args.episodes}")
    rows = []
    for run in args.runs:
        for variant in variants:
            rows.append(evaluate_variant(run, variant, args.episodes, args.seed))
            print(rows[-1], flush=True)
    command = "python -m benchmarks.eval_planning " + " ".join(argv if argv is not None else sys.argv[1:])
    write_report(report(rows, variants, command), args.out)
    if args.out is not None:
        with args.out.with_suffix(".csv").open("w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["run", "variant", "mean_return", "seconds", "steps"])
            writer.writerows([r.run, r.variant, r.mean_return, r.seconds, r.steps] for r in rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""How well the bundled language model judges states against a goal: the rank correlation (Spearman) between its
0..10 ratings and a true measure of each state's progress towards the goal.

    python -m benchmarks.llm_judge --states 40 --out benchmarks/results/llm/judge.md

States are drawn at random (fixed seed) over each task's region of interest and rated ``--batch`` at a time,
as the judge role rates imagined final states in training (docs/llm.md). True measures: Pendulum-v1, the
reward for the state (``-(angle^2 + 0.1 * angular velocity^2)``, goal "swing the pendulum up and hold it
upright"); MountainCarContinuous-v0, the car's position (goal "reach the flag on the right hilltop").
A correlation near 0 means the ratings carry no information about the states; 1, a perfect ordering.
"""

from __future__ import annotations

import argparse
import platform
from pathlib import Path

import numpy as np

from benchmarks.markdown import write_report
from language_models.bundled import BundledServer, check_bundled
from language_models.config import LLMConfig
from language_models.prompts import TaskSpec
from language_models.proposer import LLMProposer


def pendulum(rng: np.random.Generator, n: int) -> tuple[TaskSpec, np.ndarray, np.ndarray]:
    angle, velocity = rng.uniform(-np.pi, np.pi, n), rng.uniform(-8.0, 8.0, n)
    states = np.stack([np.cos(angle), np.sin(angle), velocity], axis=1)
    spec = TaskSpec("Pendulum-v1", np.array([-1.0, -1.0, -8.0]), np.array([1.0, 1.0, 8.0]), np.array([-2.0]),
                    np.array([2.0]), "swing the pendulum up and hold it upright")
    return spec, states, -(angle**2 + 0.1 * velocity**2)


def mountain_car(rng: np.random.Generator, n: int) -> tuple[TaskSpec, np.ndarray, np.ndarray]:
    states = np.stack([rng.uniform(-1.2, 0.6, n), rng.uniform(-0.07, 0.07, n)], axis=1)
    spec = TaskSpec("MountainCarContinuous-v0", np.array([-1.2, -0.07]), np.array([0.6, 0.07]), np.array([-1.0]),
                    np.array([1.0]), "reach the flag on the right hilltop")
    return spec, states, states[:, 0]


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's rank correlation (average ranks for ties); NaN when either side is constant."""
    def ranks(x: np.ndarray) -> np.ndarray:
        order = np.argsort(x, kind="stable")
        r = np.empty(len(x))
        r[order] = np.arange(len(x), dtype=float)
        for value in np.unique(x):  # ties share their mean rank
            r[x == value] = r[x == value].mean()
        return r

    ra, rb = ranks(a), ranks(b)
    if ra.std() == 0 or rb.std() == 0:
        return float("nan")
    return float(np.corrcoef(ra, rb)[0, 1])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--states", type=int, default=40)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    server = BundledServer(check_bundled(), 300.0)
    lines = ["# Bundled language model as a judge", "",
             f"`python -m benchmarks.llm_judge --states {args.states} --batch {args.batch}`", "",
             f"{platform.node()}, CPU only, SmolLM2-135M-Instruct (Q4_1). Random states, fixed seed 0.", "",
             "| task | states rated | failed calls | Spearman (ratings vs true measure) | distinct ratings |",
             "| --- | --- | --- | --- | --- |"]
    server.start()
    try:
        for make in (pendulum, mountain_car):
            spec, states, truth = make(np.random.default_rng(0), args.states)
            config = LLMConfig(base_url=server.base_url, timeout_s=300.0, response_format="json_object")
            proposer = LLMProposer(config, spec)
            rated, true = [], []
            for start in range(0, len(states), args.batch):
                ratings = proposer.rate(states[start:start + args.batch])
                if ratings is not None:
                    rated += ratings.tolist()
                    true += truth[start:start + args.batch].tolist()
            failed = proposer.metrics()["calls_failed"] + proposer.metrics()["replies_rejected"]
            rho = spearman(np.array(rated), np.array(true)) if rated else float("nan")
            lines.append(f"| {spec.env_id} | {len(rated)} | {failed:.0f} | {rho:.2f} | {sorted(set(rated))} |")
            print(lines[-1], flush=True)
    finally:
        server.stop()
    write_report(lines, args.out)


if __name__ == "__main__":
    main()

"""MountainCarContinuous-v0 with and without a language model's proposals: steps until the first episode that
reaches the flag, and the evaluation success rate at a fixed budget.

    python -m benchmarks.llm_mountain_car --proposer none scripted --seeds 0 --total-timesteps 3000 \\
        --out benchmarks/results/llm/mountain_car_smoke
    python -m benchmarks.llm_mountain_car --proposer bundled --seeds 0 1 2 3 4 --total-timesteps 20000

Proposers: ``none`` (the planner alone), ``scripted`` (a loopback server answering with the back-swing: push
with the car's velocity, :func:`language_models.scripted.swing_script`; the mechanism's upper bound) and
``bundled`` (SmolLM2-135M-Instruct with the goal "reach the flag on the right hilltop"). Runs are interleaved
(seed by seed, proposer by proposer). Evaluation episodes are played one by one (``train.eval_lockstep``
false) so that proposals reach them. Writes ``results.json`` and ``results.md`` into ``--out``.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np

from agent.agent import MBRLAgent
from agent.config import resolve_config
from language_models.scripted import ScriptedServer, swing_script

ENV_ID = "MountainCarContinuous-v0"
GOAL = "reach the flag on the right hilltop"


def llm_settings(proposer: str, url: str, every: int) -> dict[str, Any]:
    """The ``llm.*`` overrides of one proposer kind."""
    if proposer == "none":
        return {}
    settings: dict[str, Any] = {"llm.goal": GOAL, "llm.every": every, "llm.num_proposals": 2}
    if proposer == "scripted":
        return {**settings, "llm.base_url": url, "llm.wait_s": 2.0}
    return {**settings, "llm.base_url": "bundled", "llm.timeout_s": 60.0}


def run_one(proposer: str, seed: int, args: argparse.Namespace, url: str) -> dict[str, Any]:
    """Train one agent; the step of its first flag-reaching episode, its evaluation, its wall-clock."""
    overrides = {"device": "cpu", "seed": seed, "train.total_timesteps": args.total_timesteps,
                 "train.eval_freq": 0, "train.eval_lockstep": False, "train.log_interval": 500,
                 **llm_settings(proposer, url, args.every), **dict(s.split("=", 1) for s in args.set)}
    config = resolve_config(ENV_ID, overrides, preset=args.preset)
    first_goal: list[int] = []

    def watch(agent: MBRLAgent) -> None:
        n = agent.num_timesteps
        if not first_goal and agent.buffer.stored().terminated[n - 1]:  # terminated = reached the flag
            first_goal.append(n)

    start = time.perf_counter()
    agent = MBRLAgent(ENV_ID, config, run_dir=Path(args.out) / f"{proposer}-seed{seed}")
    agent.learn(progress_bar=False, callback=watch)
    train_s = time.perf_counter() - start
    result = agent.evaluate(args.eval_episodes, seed=1000 + seed)
    metrics = agent.llm.metrics() if agent.llm is not None else {}
    if agent.llm is not None:
        agent.llm.close()
    limit = agent.env.spec.max_episode_steps if agent.env.spec is not None else None
    return {"proposer": proposer, "seed": seed, "first_goal_step": first_goal[0] if first_goal else None,
            "eval_success": float(np.mean(result.lengths < (limit or 999))), "eval_returns": result.returns.tolist(),
            "train_seconds": round(train_s, 1), "llm": metrics}


def report(rows: list[dict[str, Any]], args: argparse.Namespace) -> str:
    lines = [f"# {ENV_ID}: language-model proposals", "",
             f"`python -m benchmarks.llm_mountain_car {' '.join(args.argv)}`", "",
             f"{platform.node()}, {platform.processor() or platform.machine()}; wall-clock on a shared machine.", "",
             "| proposer | seed | first goal step | eval success | eval return | train s | LLM plans chosen / with "
             "proposals |", "| --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        llm = r["llm"]
        chosen = f"{llm['chosen_best']:.0f} / {llm['plans_with_proposals']:.0f}" if llm else "-"
        lines.append(f"| {r['proposer']} | {r['seed']} | {r['first_goal_step'] or 'never'} | {r['eval_success']:.2f} "
                     f"| {np.mean(r['eval_returns']):.1f} | {r['train_seconds']} | {chosen} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--proposer", nargs="+", default=["none", "scripted"], choices=["none", "scripted", "bundled"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--total-timesteps", type=int, default=3000)
    parser.add_argument("--eval-episodes", type=int, default=3)
    parser.add_argument("--every", type=int, default=1, help="llm.every (planning steps between calls)")
    parser.add_argument("--preset", default=None, help="preset name or YAML path (default: the env's, else default)")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="more config overrides")
    parser.add_argument("--out", type=Path, default=Path("runs/llm_mountain_car"))
    args = parser.parse_args(argv)
    args.argv = argv if argv is not None else __import__("sys").argv[1:]
    args.out.mkdir(parents=True, exist_ok=True)
    server = ScriptedServer(swing_script)
    rows = []
    try:
        for seed in args.seeds:
            for proposer in args.proposer:
                rows.append(run_one(proposer, seed, args, server.url))
                print(json.dumps(rows[-1]), flush=True)
    finally:
        server.close()
    (args.out / "results.json").write_text(json.dumps(rows, indent=1))
    (args.out / "results.md").write_text(report(rows, args))
    print(report(rows, args))


if __name__ == "__main__":
    main()

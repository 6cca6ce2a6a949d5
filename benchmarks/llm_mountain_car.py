"""MountainCarContinuous-v0 with and without a language model's proposals: steps until the first episode that
reaches the flag, and the evaluation success rate at a fixed budget.

    python -m benchmarks.llm_mountain_car --proposer none scripted --seeds 0 --total-timesteps 3000 \\
        --out benchmarks/results/llm/mountain_car_smoke
    python -m benchmarks.llm_mountain_car --proposer bundled --seeds 0 1 2 3 4 --total-timesteps 20000

Proposers: ``none`` (the planner alone), ``scripted`` (a loopback server answering with the back-swing: push
with the car's velocity, :func:`language_models.scripted.swing_script`; the mechanism's upper bound) and
``bundled`` (SmolLM2-135M-Instruct with the goal "reach the flag on the right hilltop"). Runs are interleaved
(seed by seed, proposer by proposer). ``--explore P`` sets ``llm.explore``: training episodes led by the
proposals with probability P (evaluations never are). Evaluation episodes are played one by one
(``train.eval_lockstep`` false) so that proposals reach them. Writes ``results.json`` and ``results.md`` into
``--out`` after each run; runs already in ``--out``'s results.json (an earlier invocation's) are kept and
not run again, so a sweep can be split or resumed.
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
from benchmarks.markdown import write_text_atomic
from language_models.scripted import ScriptedServer, swing_script

ENV_ID = "MountainCarContinuous-v0"
GOAL = "reach the flag on the right hilltop"


def llm_settings(proposer: str, url: str, every: int, explore: float = 0.0) -> dict[str, Any]:
    """The ``llm.*`` overrides of one proposer kind (``explore``: ``llm.explore``, training only)."""
    if proposer == "none":
        return {}
    settings: dict[str, Any] = {"llm.goal": GOAL, "llm.every": every, "llm.num_proposals": 2,
                                "llm.explore": explore}
    if proposer == "scripted":
        return {**settings, "llm.base_url": url, "llm.wait_s": 2.0}
    return {**settings, "llm.base_url": "bundled", "llm.timeout_s": 60.0}


def run_one(proposer: str, seed: int, args: argparse.Namespace, url: str) -> dict[str, Any]:
    """Train one agent; the step of its first flag-reaching episode, its evaluation, its wall-clock."""
    overrides = {"device": "cpu", "seed": seed, "train.total_timesteps": args.total_timesteps,
                 "train.eval_freq": 0, "train.eval_lockstep": False, "train.log_interval": 500,
                 **llm_settings(proposer, url, args.every, args.explore), **dict(s.split("=", 1) for s in args.set)}
    config = resolve_config(ENV_ID, overrides, preset=args.preset)
    goals: list[tuple[int, bool]] = []  # (step, whether the episode was led by the proposals)

    def watch(agent: MBRLAgent) -> None:
        n = agent.num_timesteps
        if agent.buffer.stored().terminated[n - 1]:  # terminated = reached the flag
            goals.append((n, agent._exploring))

    start = time.perf_counter()
    agent = MBRLAgent(ENV_ID, config, run_dir=Path(args.out) / f"{proposer}-seed{seed}")
    agent.learn(progress_bar=False, callback=watch)
    train_s = time.perf_counter() - start
    result = agent.evaluate(args.eval_episodes, seed=1000 + seed)
    metrics = agent.llm.metrics() if agent.llm is not None else {}
    if agent.llm is not None:
        agent.llm.close()
    limit = agent.env.spec.max_episode_steps if agent.env.spec is not None else None
    planned = [n for n, led in goals if not led]
    return {"proposer": proposer, "seed": seed, "first_goal_step": goals[0][0] if goals else None,
            "first_planned_goal_step": planned[0] if planned else None, "goal_episodes": len(goals),
            "planned_goal_episodes": len(planned),
            "eval_success": float(np.mean(result.lengths < (limit or 999))), "eval_returns": result.returns.tolist(),
            "eval_lengths": result.lengths.tolist(), "train_seconds": round(train_s, 1),
            "eval_seconds": round(time.perf_counter() - start - train_s, 1), "llm": metrics}


def _step(value: int | None) -> str:
    return "never" if value is None else str(value)


def report(rows: list[dict[str, Any]], args: argparse.Namespace) -> str:
    lines = [f"# {ENV_ID}: language-model proposals", "",
             f"`python -m benchmarks.llm_mountain_car {' '.join(args.argv)}` (the last invocation)", "",
             f"{platform.node()}, {platform.processor() or platform.machine()}; wall-clock on a shared machine.", "",
             "| proposer | seed | first goal step | first goal step, planner-led episode | goal episodes (planner-led) "
             "| eval success | eval return | train s | eval s | explored steps | LLM plans chosen / with proposals |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        llm = r["llm"]
        chosen = f"{llm['chosen_best']:.0f} / {llm['plans_with_proposals']:.0f}" if llm else "-"
        explored = f"{llm.get('explored_steps', 0):.0f}" if llm else "-"
        lines.append(f"| {r['proposer']} | {r['seed']} | {_step(r['first_goal_step'])} "
                     f"| {_step(r['first_planned_goal_step'])} | {r['goal_episodes']} ({r['planned_goal_episodes']}) "
                     f"| {r['eval_success']:.2f} | {np.mean(r['eval_returns']):.1f} | {r['train_seconds']} "
                     f"| {r['eval_seconds']} | {explored} | {chosen} |")
    lines += ["", "| proposer | runs | reached the goal in training | first goal step, median | eval success, mean |",
              "| --- | --- | --- | --- | --- |"]
    for proposer in dict.fromkeys(r["proposer"] for r in rows):
        mine = [r for r in rows if r["proposer"] == proposer]
        firsts = [r["first_goal_step"] for r in mine if r["first_goal_step"] is not None]
        median = f"{np.median(firsts):.0f}" if len(firsts) == len(mine) else (
            "never" if not firsts else f"> budget ({len(mine) - len(firsts)} never)")
        lines.append(f"| {proposer} | {len(mine)} | {len(firsts)} | {median} "
                     f"| {np.mean([r['eval_success'] for r in mine]):.2f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--proposer", nargs="+", default=["none", "scripted"], choices=["none", "scripted", "bundled"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--total-timesteps", type=int, default=3000)
    parser.add_argument("--eval-episodes", type=int, default=3)
    parser.add_argument("--every", type=int, default=1, help="llm.every (planning steps between calls)")
    parser.add_argument("--explore", type=float, default=0.0,
                        help="llm.explore: probability that a training episode is led by the proposals")
    parser.add_argument("--preset", default=None, help="preset name or YAML path (default: the env's, else default)")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="more config overrides")
    parser.add_argument("--out", type=Path, default=Path("runs/llm_mountain_car"))
    args = parser.parse_args(argv)
    args.argv = argv if argv is not None else __import__("sys").argv[1:]
    args.out.mkdir(parents=True, exist_ok=True)
    server = ScriptedServer(swing_script)
    saved = args.out / "results.json"
    rows: list[dict[str, Any]] = json.loads(saved.read_text()) if saved.exists() else []
    done = {(r["proposer"], r["seed"]) for r in rows}
    try:
        for seed in args.seeds:
            for proposer in args.proposer:
                if (proposer, seed) in done:  # a run of an earlier invocation with this --out
                    continue
                rows.append(run_one(proposer, seed, args, server.url))
                print(json.dumps(rows[-1]), flush=True)
                write_text_atomic(saved, json.dumps(rows, indent=1))  # after each run
                write_text_atomic(args.out / "results.md", report(rows, args))
    finally:
        server.close()
    print(report(rows, args))


if __name__ == "__main__":
    main()

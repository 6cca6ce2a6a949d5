"""Never worse: agents trained with a language-model server that answers only garbage, against agents without
a language model, on the presets' budgets (issue 36, must-show 1).

    python -m benchmarks.llm_never_worse --tasks InvertedPendulum-v5 Pendulum-v1 --seeds 0 1 2 \\
        --out benchmarks/results/llm/never_worse

Arms: ``none`` (no language model) and ``garbage`` (``llm.base_url`` pointing to a loopback
:class:`~language_models.scripted.ScriptedServer` running :func:`~language_models.scripted.garbage_script`:
malformed JSON, wrong lengths, NaN, out-of-range numbers, an empty reply, HTTP 500 and a reply after
``--delay-s`` seconds, in turn). The garbage arm keeps every other ``llm.*`` setting at its default (role
proposer, asked in the background every planning step, ``llm.wait_s`` 0, ``llm.timeout_s`` 30). Runs are
interleaved (task by task, seed by seed, arm by arm) so that machine drift hits both arms alike. Each run
records its evaluations' mean returns, its wall-clock (building the agent and ``learn``, evaluations
included), the process's CPU seconds over the same span (all its threads: the language model's worker and
the server's included), the machine's load average at its start and end, the seconds per phase
(``time/<phase>_s``) and the ``llm/*`` counters.

Writes ``results.json`` and ``results.md`` into ``--out`` after each run; runs already in ``--out``'s
results.json (an earlier invocation's) are kept and not run again, so a sweep can be split or resumed. Run
directories (checkpoints, progress.csv) go under ``--runs``, outside the repository.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from agent.agent import MBRLAgent
from agent.config import resolve_config
from benchmarks.markdown import write_text_atomic
from benchmarks.returns import read_run
from language_models.scripted import ScriptedServer, garbage_script

ARMS = ("none", "garbage")
TASKS = ("InvertedPendulum-v5", "Pendulum-v1")
MAX_RATIO = 1.2  # the must-show's bound on the wall-clock, garbage over none


def run_one(task: str, arm: str, seed: int, args: argparse.Namespace, url: str) -> dict[str, Any]:
    """Train one agent (``--preset``, default the task's); its evaluations, wall-clock, phase seconds and llm
    counters."""
    overrides: dict[str, Any] = {"device": "cpu", "seed": seed, **dict(s.split("=", 1) for s in args.set)}
    if arm == "garbage":
        overrides["llm.base_url"] = url
    config = resolve_config(task, overrides, preset=args.preset)
    run_dir = args.runs / task / f"{arm}-seed{seed}"
    if run_dir.exists():  # a run an earlier invocation did not finish: start it afresh
        shutil.rmtree(run_dir)
    load_before, cpu_start, start = os.getloadavg()[0], time.process_time(), time.perf_counter()
    agent = MBRLAgent(task, config, run_dir=run_dir)
    agent.learn(progress_bar=False)  # closes the language model's worker at the end
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    curve = read_run(run_dir)
    llm = agent.llm.metrics() if agent.llm is not None else {}
    llm.pop("latency_ms", None)  # a mean since the last log row, not the run's
    return {"task": task, "arm": arm, "seed": seed, "total_timesteps": config.train.total_timesteps,
            "eval_steps": curve["steps"], "eval_mean_returns": [round(r, 2) for r in curve["returns"]],
            "final_eval_mean_return": round(curve["returns"][-1], 2),
            "wall_clock_s": round(wall, 1), "process_cpu_s": round(cpu, 1),
            "load_average_1min_start_end": [round(load_before, 2), round(os.getloadavg()[0], 2)],
            "phase_s": {name: round(s, 1) for name, s in agent.clock.totals.items()},
            "llm": llm}


def _spread(rows: list[dict[str, Any]]) -> tuple[float, float] | None:
    returns = [r["final_eval_mean_return"] for r in rows]
    return (min(returns), max(returns)) if returns else None


def _phases(rows: list[dict[str, Any]]) -> dict[str, float]:
    names = dict.fromkeys(name for r in rows for name in r["phase_s"])
    return {name: float(np.sum([r["phase_s"].get(name, 0.0) for r in rows])) for name in names}


def summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Per task: the no-LLM arm's spread of final returns, each garbage run inside it or not, wall-clock ratios."""
    out: dict[str, Any] = {}
    for task in dict.fromkeys(r["task"] for r in rows):
        runs = {(r["arm"], r["seed"]): r for r in rows if r["task"] == task}
        none = [r for (arm, _), r in runs.items() if arm == "none"]
        spread = _spread(none)
        pairs = sorted(seed for arm, seed in runs if arm == "garbage" and ("none", seed) in runs)
        per_seed = {}
        for seed in pairs:
            g, n = runs[("garbage", seed)], runs[("none", seed)]
            per_seed[str(seed)] = {
                "garbage_within_none_spread": None if spread is None else
                bool(spread[0] <= g["final_eval_mean_return"] <= spread[1]),
                "garbage_vs_none_spread": None if spread is None else _place(g["final_eval_mean_return"], spread),
                "wall_clock_ratio_garbage_over_none": round(g["wall_clock_s"] / n["wall_clock_s"], 3),
                "cpu_ratio_garbage_over_none": round(g["process_cpu_s"] / n["process_cpu_s"], 3)
                if "process_cpu_s" in g and "process_cpu_s" in n else None}
        paired_g = [runs[("garbage", s)] for s in pairs]
        paired_n = [runs[("none", s)] for s in pairs]
        total_g, total_n = (sum(r["wall_clock_s"] for r in rs) for rs in (paired_g, paired_n))
        garbage = [r for (arm, _), r in runs.items() if arm == "garbage"]
        out[task] = {
            "none_final_return_spread_min_max": None if spread is None else list(spread),
            "none_final_return_mean": round(float(np.mean([r["final_eval_mean_return"] for r in none])), 2)
            if none else None,
            "garbage_final_return_mean": round(float(np.mean([r["final_eval_mean_return"] for r in garbage])), 2)
            if garbage else None,
            "per_seed": per_seed,
            "wall_clock_ratio_overall_paired_seeds": round(total_g / total_n, 3) if pairs else None,
            "phase_s_sum_paired_seeds": {"none": _phases(paired_n), "garbage": _phases(paired_g)},
        }
    return out


def _get(row: dict[str, Any] | None, key: str) -> str:
    value = None if row is None else row.get(key)
    return "-" if value is None else str(value)


def _load(row: dict[str, Any] | None) -> str:
    loads = None if row is None else row.get("load_average_1min_start_end")
    return "-" if loads is None else f"{loads[0]:.1f}..{loads[1]:.1f}"


def _place(value: float, spread: tuple[float, float]) -> str:
    """``within`` the spread, ``above`` it (better than every no-LLM seed) or ``below`` it (worse)."""
    return "below" if value < spread[0] else "above" if value > spread[1] else "within"


def report(rows: list[dict[str, Any]], args: argparse.Namespace) -> str:
    """results.md: a table per task (both arms per seed, the spread, the verdicts), phases and llm counters."""
    lines = ["# Never worse: a garbage language-model server against none", "",
             f"`python -m benchmarks.llm_never_worse {' '.join(args.argv)}` (the last invocation)", "",
             f"{platform.node()}, {platform.processor() or platform.machine()}; wall-clock on a shared machine. "
             f"Garbage arm: every reply malformed in turn, the slow one after {args.delay_s:g} s; llm.* defaults "
             "otherwise (proposer, background calls every planning step, wait_s 0, timeout_s 30).", ""]
    for task, s in summary(rows).items():
        runs = {(r["arm"], r["seed"]): r for r in rows if r["task"] == task}
        seeds = sorted({seed for _, seed in runs})
        spread = s["none_final_return_spread_min_max"]
        lines += [f"## {task}", "",
                  "| seed | final return, none | final return, garbage | garbage against none's spread "
                  "| wall-clock s, none | wall-clock s, garbage | ratio garbage/none | CPU s, none | CPU s, garbage "
                  "| CPU ratio | load average at start..end, none | load, garbage |",
                  "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
        for seed in seeds:
            n, g = runs.get(("none", seed)), runs.get(("garbage", seed))
            verdict = s["per_seed"].get(str(seed), {})
            ratio = verdict.get("wall_clock_ratio_garbage_over_none")
            lines.append(f"| {seed} | {n['final_eval_mean_return'] if n else '-'} "
                         f"| {g['final_eval_mean_return'] if g else '-'} "
                         f"| {_get(verdict, 'garbage_vs_none_spread')} "
                         f"| {n['wall_clock_s'] if n else '-'} | {g['wall_clock_s'] if g else '-'} "
                         f"| {'-' if ratio is None else f'{ratio:.2f}'} | {_get(n, 'process_cpu_s')} "
                         f"| {_get(g, 'process_cpu_s')} | {_get(verdict, 'cpu_ratio_garbage_over_none')} "
                         f"| {_load(n)} | {_load(g)} |")
        overall = s["wall_clock_ratio_overall_paired_seeds"]
        lines += ["", f"No-LLM spread of final returns (min..max over {len([k for k in runs if k[0] == 'none'])} "
                  f"seeds): {'-' if spread is None else f'{spread[0]} .. {spread[1]}'}; means: none "
                  f"{s['none_final_return_mean']}, garbage {s['garbage_final_return_mean']}. Wall-clock ratio "
                  f"over the paired seeds: {'-' if overall is None else f'{overall:.2f}'} "
                  f"(bound {MAX_RATIO:.2f}).", "",
                  "| arm | seed | evaluation mean returns (steps) |", "| --- | --- | --- |"]
        for (arm, seed), r in sorted(runs.items(), key=lambda kv: (kv[0][1], ARMS.index(kv[0][0]))):
            points = zip(r["eval_steps"], r["eval_mean_returns"], strict=True)
            curve = ", ".join(f"{ret} ({step})" for step, ret in points)
            lines.append(f"| {arm} | {seed} | {curve} |")
        phases = s["phase_s_sum_paired_seeds"]
        names = list(phases["none"]) or list(phases["garbage"])
        lines += ["", "Seconds per phase, summed over the paired seeds:", "",
                  "| arm | " + " | ".join(names) + " |", "| --- |" + " --- |" * len(names)]
        for arm in ARMS:
            lines.append(f"| {arm} | " + " | ".join(f"{phases[arm].get(n, 0.0):.0f}" for n in names) + " |")
        keys = ("calls", "calls_failed", "calls_timed_out", "replies_rejected", "proposals_parsed",
                "numbers_clipped", "plans_with_proposals", "chosen_best", "skipped_batched")
        lines += ["", "Language-model counters of the garbage runs (`llm/*`):", "",
                  "| seed | " + " | ".join(keys) + " |", "| --- |" + " --- |" * len(keys)]
        for seed in seeds:
            if ("garbage", seed) in runs:
                llm = runs[("garbage", seed)]["llm"]
                lines.append(f"| {seed} | " + " | ".join(f"{llm.get(k, 0):.0f}" for k in keys) + " |")
        lines.append("")
    return "\n".join(lines)


def _commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", nargs="+", default=list(TASKS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--arms", nargs="+", default=list(ARMS), choices=ARMS)
    parser.add_argument("--delay-s", type=float, default=30.0, help="the garbage server's slow reply")
    parser.add_argument("--preset", default=None, help="preset name or YAML path (default: each task's own)")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="config overrides, both arms")
    parser.add_argument("--out", type=Path, default=Path("runs/llm_never_worse"))
    parser.add_argument("--runs", type=Path, default=Path("/root/rehearse-runs/neverworse"),
                        help="where the run directories go")
    args = parser.parse_args(argv)
    args.argv = argv if argv is not None else sys.argv[1:]
    args.out.mkdir(parents=True, exist_ok=True)
    saved = args.out / "results.json"
    rows: list[dict[str, Any]] = json.loads(saved.read_text())["runs"] if saved.exists() else []
    done = {(r["task"], r["arm"], r["seed"]) for r in rows}
    commit = _commit()  # the code this invocation runs
    server = ScriptedServer(garbage_script(args.delay_s))
    try:
        for task in args.tasks:
            for seed in args.seeds:
                for arm in args.arms:
                    if (task, arm, seed) in done:  # a run of an earlier invocation with this --out
                        continue
                    row = run_one(task, arm, seed, args, server.url)
                    rows.append({**row, "commit": commit, "finished_utc":
                                 time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})
                    print(json.dumps(rows[-1]), flush=True)
                    result = {"garbage_delay_s": args.delay_s, "max_wall_clock_ratio": MAX_RATIO,
                              "summary": summary(rows), "runs": rows}
                    write_text_atomic(saved, json.dumps(result, indent=1))  # after each run
                    write_text_atomic(args.out / "results.md", report(rows, args))
    finally:
        server.close()
    print(report(rows, args))


if __name__ == "__main__":
    main()

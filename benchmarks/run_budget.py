"""Where a training run's wall-clock goes, before training it: the run's parts timed one by one.

    python -m benchmarks.run_budget --env HalfCheetah-v5 --out benchmarks/results/run_budget.md
    python -m benchmarks.run_budget --env HalfCheetah-v5 --set planner.horizon=5 planner.iterations=2
    python -m benchmarks.run_budget --env rehearse/BallCatch-v0 --preset ballcatch-pixels --episode-steps 200

The agent is built from the environment's preset (with ``--set section.field=value`` overrides),
its buffer filled with ``train.learning_starts`` random steps of the real environment and its world
model trained for ``train.initial_gradient_steps`` (capped by ``--fit-steps``). Then three parts are
timed, as the training loop runs them:

- one training plan (one problem, the loop's warm start), made once for every step after the
  random warm-up; timed alternating with gradient steps, as the loop runs them;
- one evaluation plan (``train.eval_episodes`` problems in one batched call, as evaluation plays
  its episodes side by side), made once for every step of every evaluation; the episode length
  is the environment's step limit, so for tasks whose episodes can end early this is an upper
  bound;
- one gradient step, made ``train.gradient_steps`` times every ``train.train_freq`` steps after
  the warm-up, plus ``train.initial_gradient_steps`` once.

Each time is the median of ``--repeats`` calls. The estimate is their sum times those counts;
it leaves out the environment's own steps, logging and checkpoints (small on MuJoCo tasks), and
it is only as good as the machine is quiet while it runs.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from agent.agent import MBRLAgent
from agent.config import Config, resolve_config
from planners.warm_start import WarmStart


@dataclass(frozen=True)
class PartTimes:
    """Median milliseconds of one call of each part."""

    train_plan_ms: float
    eval_plan_ms: float  # one batched call for all the evaluation episodes
    gradient_ms: float


@dataclass(frozen=True)
class RunCounts:
    """How many times a run of ``config`` calls each part."""

    train_plans: int
    eval_plans: int
    gradient_steps: int


def run_counts(config: Config, episode_steps: int) -> RunCounts:
    """Counts of one run of ``config``, whose evaluation episodes last ``episode_steps`` steps."""
    t = config.train
    after_warm_up = max(t.total_timesteps - t.learning_starts, 0)
    evaluations = t.total_timesteps // t.eval_freq if t.eval_freq else 0
    # the loop trains after step n (1-based) when n >= learning_starts and n % train_freq == 0
    first = max(t.learning_starts, 1)
    train_calls = max(t.total_timesteps // t.train_freq - (first - 1) // t.train_freq, 0)
    gradient_steps = train_calls * t.gradient_steps + (t.initial_gradient_steps if train_calls else 0)
    return RunCounts(after_warm_up, evaluations * episode_steps, gradient_steps)


def estimate_seconds(times: PartTimes, counts: RunCounts) -> dict[str, float]:
    """Seconds of each part over the run, and their ``total``."""
    parts = {
        "training plans": times.train_plan_ms * counts.train_plans / 1000,
        "evaluation plans": times.eval_plan_ms * counts.eval_plans / 1000,
        "gradient steps": times.gradient_ms * counts.gradient_steps / 1000,
    }
    return {**parts, "total": sum(parts.values())}


def _ms(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return 1000 * (time.perf_counter() - start)


def _median_ms(fn: Callable[[], object], repeats: int) -> float:
    fn()  # warm-up
    return statistics.median(_ms(fn) for _ in range(repeats))


def prepared_agent(config: Config, fit_steps: int) -> MBRLAgent:
    """The agent of ``config`` with ``train.learning_starts`` random steps stored and its model fitted."""
    agent = MBRLAgent(config.env_id, config)
    rng = np.random.default_rng(config.seed)
    env = agent.env
    obs, _ = env.reset(seed=config.seed)
    for _ in range(max(config.train.learning_starts, config.train.batch_size)):
        action = rng.uniform(-1.0, 1.0, agent.action_dim).astype(np.float32)
        next_obs, reward, terminated, truncated, info = env.step(action)
        agent.buffer.add(obs, action, float(reward), float(info.get("cost", 0.0)), terminated, truncated, next_obs)
        obs = env.reset()[0] if terminated or truncated else next_obs
    agent.adapter.fit_normalizers(agent.buffer)
    for _ in range(min(config.train.initial_gradient_steps, fit_steps)):
        agent.adapter.train_step(agent.buffer, agent.rng)
    return agent


def time_parts(agent: MBRLAgent, repeats: int) -> PartTimes:
    """Median milliseconds of one training plan, one batched evaluation plan and one gradient step."""
    config = agent.config
    data = agent.buffer.stored()
    episodes = max(config.train.eval_episodes, 1)
    one = data.obs[-1].copy()  # the buffer hands out read-only views
    batch = data.obs[-episodes:].copy()
    train_warm = WarmStart(config.planner.horizon, agent.action_dim, agent.device)
    eval_warm = WarmStart(config.planner.horizon, agent.action_dim, agent.device, batch=len(batch))
    plans, gradients = [], []
    for _ in range(repeats + 1):  # the loop's order: a plan, then a gradient step; the first pair warms up
        plans.append(_ms(lambda: agent.plan(one, agent.planner, train_warm)))
        gradients.append(_ms(lambda: agent.adapter.train_step(agent.buffer, agent.rng)))
    acting = agent.make_planner(torch.Generator().manual_seed(config.seed), acting=True)  # eval_num_candidates
    eval_plan = _median_ms(lambda: agent.plan(batch, acting, eval_warm), repeats)
    return PartTimes(statistics.median(plans[1:]), eval_plan, statistics.median(gradients[1:]))


def _overrides(pairs: Sequence[str]) -> dict[str, str]:
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or "." not in key:
            raise ValueError(f"--set takes section.field=value, got {pair!r}")
        out[key] = value
    return out


def report_lines(config: Config, overrides: dict[str, str], times: PartTimes, counts: RunCounts,
                 budget_minutes: float) -> list[str]:
    seconds = estimate_seconds(times, counts)
    p, s, m = config.planner, config.sampling, config.robotics
    each = {
        "training plans": (counts.train_plans, times.train_plan_ms, "1 problem"),
        "evaluation plans": (counts.eval_plans, times.eval_plan_ms, f"{config.train.eval_episodes} problems"),
        "gradient steps": (counts.gradient_steps, times.gradient_ms, f"batch {config.train.batch_size}"),
    }
    changed = " ".join(f"{k}={v}" for k, v in overrides.items()) or "none"
    lines = [
        f"### {config.env_id}, {config.train.total_timesteps:,} steps; overrides: {changed}",
        "",
        f"Planner {p.name}: horizon {p.horizon}, {s.num_candidates} candidates"
        f"{f' ({p.eval_num_candidates} in evaluations)' if p.eval_num_candidates else ''}, {s.iterations} iterations, "
        f"{p.particles} particles; model {m.num_layers}x{m.hidden_dim}, "
        f"{m.ensemble_size} members, value function {'on' if config.value.function else 'off'}.",
        "",
        "| part | calls | ms each (median) | minutes |",
        "|---|---|---|---|",
    ]
    for name, (calls, ms, what) in each.items():
        lines.append(f"| {name} ({what}) | {calls:,} | {ms:.1f} | {seconds[name] / 60:.1f} |")
    total = seconds["total"] / 60
    verdict = "within" if total <= budget_minutes else "over"
    lines += [f"| **total** | | | **{total:.1f}** ({verdict} {budget_minutes:g}) |", ""]
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run_budget", description=__doc__.splitlines()[0])
    parser.add_argument("--env", default="HalfCheetah-v5")
    parser.add_argument("--preset", help="preset name or YAML path (default: the env's own)")
    parser.add_argument("--set", nargs="*", default=[], metavar="SECTION.FIELD=VALUE",
                        help="preset overrides, e.g. planner.horizon=5")
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--fit-steps", type=int, default=200,
                        help="gradient steps before timing (speed does not depend on how well it fits)")
    parser.add_argument("--budget-minutes", type=float, default=60.0)
    parser.add_argument("--episode-steps", type=int,
                        help="evaluation episode length (default: the environment's step limit)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, help="append the table to this markdown file")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error(f"--repeats must be >= 1, got {args.repeats}")
    try:
        overrides = _overrides(args.set)
    except ValueError as error:
        parser.error(str(error))
    config = resolve_config(args.env, {**overrides, "seed": args.seed}, preset=args.preset)
    agent = prepared_agent(config, args.fit_steps)
    spec = agent.env.spec
    episode_steps = args.episode_steps or (spec.max_episode_steps if spec is not None else None)
    if not episode_steps or episode_steps < 1:
        parser.error(f"{args.env} registers no step limit: give its evaluation episode length with --episode-steps")
    times = time_parts(agent, args.repeats)
    lines = report_lines(config, overrides, times, run_counts(config, episode_steps), args.budget_minutes)
    header = (
        f"Machine: {platform.machine()}, torch {torch.__version__}, {torch.get_num_threads()} threads. "
        f"Command: `python -m benchmarks.run_budget {' '.join(argv if argv is not None else sys.argv[1:])}`"
    )
    text = "\n".join([header, "", *lines])
    print(text)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        with args.out.open("a") as f:
            f.write(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

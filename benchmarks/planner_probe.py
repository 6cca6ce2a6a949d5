"""Does more (or other) search lift a trained agent's return? The same checkpoint, planned differently.

    python -m benchmarks.planner_probe RUN_DIR --variant H16:horizon=16 \
        --variant wide:num_candidates=256,iterations=5 [--episodes 10] [--seed 777]

Loads ``RUN_DIR/checkpoints/latest.pt`` and plays the same ``--episodes`` deterministic
evaluation episodes (reset seeds ``seed``, ``seed + 1``, ...; the protocol of the training
loop's evaluations) once with the planner settings the run was trained with (``as trained``)
and once per ``--variant NAME:key=value[,key=value...]``, whose keys are ``planner.*`` settings
(``python train_agent.py --help`` lists them). The world model, value and replay buffer are the
checkpoint's, untouched; nothing is trained or written. The episodes are played as ``evaluate()``
plays them, so a run that sets ``eval_num_candidates`` searches that many candidates: vary that key
(``--variant c128:eval_num_candidates=128``) rather than ``num_candidates`` to widen its search.

Each row also gives the episodes' mean cost (``info["cost"]``, 0 where the task reports none). A variant may set
``cost_limit``: its episodes are planned with that limit's budget, at the multiplier the run learned.

If a wider or longer search returns about the same, the planner is not what limits the agent:
its model or terminal value is. Returns of a few evaluation episodes spread widely, so read
differences against the ``std`` column.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from agent.config import ConfigError, apply_overrides, validate
from benchmarks.world_model_report import ReportError, load_agent, print_or_refuse

Variant = tuple[str, dict[str, str]]


def parse_variant(text: str) -> Variant:
    """``"NAME:key=value,key=value"`` -> ``(NAME, {"planner.key": "value", ...})``; a key may
    also be written with its section (``planner.horizon``)."""
    name, sep, body = text.partition(":")
    pairs = [item.partition("=") for item in body.split(",")] if body else []
    if not sep or not name or not pairs or any(not key or not eq or not value for key, eq, value in pairs):
        raise ReportError(
            f"--variant {text!r}: expected NAME:key=value[,key=value...] with planner settings, "
            "e.g. H16:horizon=16 or wide:num_candidates=256,iterations=5"
        )
    return name, {f"planner.{key.strip().removeprefix('planner.')}": value.strip() for key, _, value in pairs}


def probe_table(run_dir: Path, variants: Sequence[Variant], episodes: int, seed: int) -> str:
    agent = load_agent(run_dir)
    trained = agent.config
    configs = []
    for name, overrides in variants:  # check every variant before playing any episode
        try:
            config = apply_overrides(trained, overrides)
            validate(config, kind=agent.model_kind)  # the planner's own checks among them
        except ConfigError as exc:
            raise ReportError(f"--variant {name}: {exc}") from exc
        configs.append((name, ", ".join(f"{k.removeprefix('planner.')}={v}" for k, v in overrides.items()), config))
    p = trained.planner
    acting = f" (acting: {p.eval_num_candidates})" if p.eval_num_candidates else ""
    s = trained.sampling
    acting_iterations = f" (acting: {p.eval_iterations})" if p.eval_iterations else ""
    own = (f"{p.name} H={p.horizon} N={s.num_candidates}{acting} iterations={s.iterations}{acting_iterations} "
           f"elites={s.num_elites} particles={p.particles}")
    lines = [f"Planner probe of {run_dir} at {agent.num_timesteps} steps: {episodes} evaluation episodes, "
             f"reset seeds {seed} to {seed + episodes - 1}", "",
             "| variant | settings | mean return | std | min | max | mean length | mean cost | seconds |",
             "|---|---|---|---|---|---|---|---|---|"]
    trained_multiplier = agent.cost_multiplier.value if agent.cost_multiplier is not None else 0.0
    for name, settings, config in [("as trained", own, trained), *configs]:
        agent.config = config
        # a variant's cost limit is planned with (its budget share), at the multiplier the run learned
        agent.cost_multiplier = agent._make_cost_multiplier()
        if agent.cost_multiplier is not None:
            agent.cost_multiplier.value = min(max(trained_multiplier, agent.cost_multiplier.min_value),
                                              agent.cost_multiplier.max_value)
        started = time.time()
        result = agent.evaluate(n_episodes=episodes, seed=seed)
        r = result.returns
        lines.append(f"| {name} | {settings} | {r.mean():.1f} | {r.std():.1f} | {r.min():.1f} | {r.max():.1f} | "
                     f"{result.lengths.mean():.0f} | {result.costs.mean():.1f} | {time.time() - started:.0f} |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", type=Path, help="a run directory (holds checkpoints/latest.pt)")
    parser.add_argument("--variant", action="append", default=[], metavar="NAME:key=value[,key=value...]",
                        help="planner settings to try (repeatable), e.g. H16:horizon=16")
    parser.add_argument("--episodes", type=int, default=10, help="evaluation episodes per variant (default: 10)")
    parser.add_argument("--seed", type=int, default=0, help="reset seed of the first episode (default: 0)")
    args = parser.parse_args(argv)
    if args.episodes < 1:
        parser.error(f"--episodes must be at least 1, got {args.episodes}")

    def table() -> str:
        return probe_table(args.run_dir, [parse_variant(v) for v in args.variant], args.episodes, args.seed)

    return print_or_refuse(table)


if __name__ == "__main__":
    sys.exit(main())

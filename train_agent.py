"""Train a Rehearse agent from the command line.

    python train_agent.py                                   # InvertedPendulum-v5, short budget
    python train_agent.py --env HalfCheetah-v5 --total-timesteps 50000 --seed 0 --run-dir runs/hc
    python train_agent.py --env Pendulum-v1 --planner-horizon 30 --planner-name mppi
    python train_agent.py --env rehearse/BallCatch-v0 --preset ballcatch-pixels     # from pixels
    python train_agent.py --env InvertedPendulum-v5 --pixels --frame-stack 3        # rendered frames

Every field of the preset (agent/presets/<env>.yaml) has a flag ``--<section>-<field>``.
Re-running with the same run directory (or ``--resume``) continues where it stopped.
``--evaluate N`` plays N deterministic episodes with the run directory's checkpoint instead
of training (its saved configuration is used; the preset flags are ignored).
"""

from __future__ import annotations

import argparse
import errno
import os
import signal
import sys
from pathlib import Path
from typing import Any, Sequence

import torch

from agent import CheckpointError, ConfigError, MBRLAgent, RunDirInUse, resolve_config
from agent.agent import CHECKPOINT_NAME
from agent.checkpoint import checked_env_id, load_run_checkpoint, run_checkpoints
from agent.config import RENAMED, SECTIONS, default_run_dir
from agent.config_docs import config_fields, format_default
from agent.timing import profile_summary
from envs import EnvironmentSpecError, NonFiniteError, parse_env_kwargs
from language_models import LLMSetupError


def build_parser() -> argparse.ArgumentParser:
    """The command line: run options, then one flag per configuration field (``--<section>-<field>``) whose
    help is the field's default and docstring (:func:`agent.config_docs.config_fields`)."""
    parser = argparse.ArgumentParser(
        description="Train a model-based agent (world model + CEM/MPPI planning) on a Gymnasium task.",
        usage="%(prog)s [--env ENV] [--preset PRESET] [--total-timesteps N] [--seed S] [--run-dir DIR] [options] "
              "[--<section>-<field> VALUE ...]",
        epilog="Example: python train_agent.py --env Pendulum-v1 --planner-name mppi --planner-horizon 25",
    )
    parser.add_argument("--env", default="InvertedPendulum-v5",
                        help="Gymnasium id or package.module:EnvClass (default: InvertedPendulum-v5)")
    parser.add_argument("--env-kwargs", nargs="*", default=[], metavar="KEY=VALUE",
                        help="environment constructor arguments, values parsed as YAML (default: the preset's)")
    parser.add_argument("--pixels", action="store_true", default=None,
                        help="observe rendered 64x64 RGB frames (envs that render rgb_array) (default: the preset's)")
    parser.add_argument("--frame-stack", type=int, default=None, metavar="K",
                        help="stack the last K frames along the channel axis (image observations) "
                             "(default: the preset's, else 1)")
    parser.add_argument("--preset", default=None,
                        help="preset name (e.g. debug) or YAML path (default: agent/presets/<env>.yaml, "
                             "else default.yaml)")
    parser.add_argument("--total-timesteps", type=int, default=None, metavar="N",
                        help="environment steps, random warm-up included (default: the preset's)")
    parser.add_argument("--seed", type=int, default=0, metavar="S", help="seeds everything (default: 0)")
    parser.add_argument("--run-dir", type=Path, default=None, metavar="DIR",
                        help="outputs and checkpoints; an existing run there is continued "
                             "(default: runs/<env>-seed<seed>)")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto",
                        help="auto picks CUDA when present (default: auto)")
    parser.add_argument("--threads", type=int, default=None, metavar="N",
                        help="torch threads for this process (default: the CPUs it may use, "
                             "os.sched_getaffinity, or OMP_NUM_THREADS where lower); more than those is lowered")
    parser.add_argument("--resume", action="store_true", help="require a checkpoint in --run-dir and continue it")
    parser.add_argument("--no-progress-bar", action="store_true", help="no progress bar (steps/s, latest return)")
    parser.add_argument("--evaluate", type=int, default=None, metavar="N",
                        help="do not train: play N deterministic episodes with --run-dir's checkpoint and print them")
    parser.add_argument("--goal", default=None, metavar="TEXT",
                        help="the task's goal in words, for the language model's prompts (sets llm.goal; see "
                             "--llm-base-url)")
    parser.add_argument("--evaluate-seed", type=int, default=0, metavar="S",
                        help="with --evaluate: episode j starts from reset seed S + j (default: 0)")
    group = parser.add_argument_group(
        "preset overrides (any preset value)",
        "Each flag sets one field of the configuration. The defaults shown are the built-in ones: the preset "
        "(agent/presets/<env>.yaml, or --preset) may set another value, and a flag given here wins over both. "
        "Booleans take true/false.",
    )
    for f in config_fields(SECTIONS):
        group.add_argument(f.flag, dest=f.key, default=argparse.SUPPRESS, metavar=f.type.upper(),
                           help=f"{f.doc} (default: {format_default(f.default)})".strip().replace("%", "%%"))
    return parser


def add_renamed_flags(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The flags of earlier versions' keys (``--model-hidden-dim``), hidden from ``--help``: their values go
    where those settings are now (``agent.config.RENAMED``)."""
    for key in RENAMED:
        section, _, name = key.partition(".")
        parser.add_argument(f"--{section}-{name.replace('_', '-')}", dest=key, default=argparse.SUPPRESS,
                            help=argparse.SUPPRESS)
    return parser


def overrides_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """Collect ``section.field`` overrides plus the top-level flags."""
    overrides = {k: v for k, v in vars(args).items() if "." in k}
    overrides.update(seed=args.seed, device=args.device)
    if args.env_kwargs:  # else the preset's (if any)
        overrides["env_kwargs"] = parse_env_kwargs(args.env_kwargs)
    if args.pixels is not None:
        overrides["pixels"] = args.pixels
    if args.frame_stack is not None:
        overrides["frame_stack"] = args.frame_stack
    if args.total_timesteps is not None:
        overrides["train.total_timesteps"] = args.total_timesteps
    if args.goal is not None:
        overrides["llm.goal"] = args.goal
    return overrides


def evaluate_run(run_dir: Path, episodes: int, seed: int, env: str | None = None) -> str:
    """Play ``episodes`` deterministic episodes with ``run_dir``'s checkpoint; a printable report.

    ``env``: the environment the user named (``--env``); by default the checkpoint's own, unless that is an
    entry point (``module:Class``), which a checkpoint may not choose to import (agent/checkpoint.py)."""
    found = load_run_checkpoint(run_dir)
    if found is None:
        raise CheckpointError(f"--evaluate needs a trained run: {run_dir / CHECKPOINT_NAME} does not exist "
                              f"(train with --run-dir {run_dir})")
    payload, path = found
    agent = MBRLAgent.from_checkpoint(payload, path, env=checked_env_id(payload, env))  # read once
    result = agent.evaluate(episodes, seed=seed)
    returns = ", ".join(f"{r:.1f}" for r in result.returns)
    return (
        f"{agent.config.env_id}, checkpoint at step {agent.num_timesteps} ({path}), {episodes} deterministic "
        f"episode(s), reset seeds {seed} to {seed + episodes - 1}:\n"
        f"mean return {result.returns.mean():.1f} +/- {result.returns.std():.1f}, "
        f"mean length {result.lengths.mean():.1f}, mean cost {result.costs.mean():.1f}\nreturns: {returns}"
    )


BAD_INPUT = (ConfigError, CheckpointError, EnvironmentSpecError, NonFiniteError, MemoryError, RunDirInUse,
             LLMSetupError)
"""Failures the user's input or choice causes: ``error:`` and exit status 2."""
KEPT = "the run keeps its last checkpoint ({}) and the logs up to it"


def check_run_dir(run_dir: Path) -> None:
    """A ConfigError when ``run_dir``, or a folder above it, is an existing file (it cannot become a folder)."""
    for path in (run_dir, *run_dir.parents):
        if path.exists() and not path.is_dir():
            raise ConfigError(f"--run-dir {run_dir}: {path} is a file, not a folder; give another --run-dir")


def os_failure(exc: OSError, run_dir: Path) -> str:
    """One line for an operating-system failure while training into ``run_dir``: what happened, what to do."""
    where = f" ({exc.filename})" if exc.filename else ""
    if exc.errno == errno.ENOSPC:
        todo = "free some disk space"
    elif exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        todo = f"make {run_dir} writable"
    else:
        todo = "fix the cause"
    return (f"could not write the run: {exc.strerror or exc}{where}. Nothing written before is lost: "
            f"{KEPT.format(run_dir / 'checkpoints')}. {todo.capitalize()} (or give another --run-dir), then run "
            "the same command to continue")


def named_env(args: argparse.Namespace, argv: Sequence[str] | None) -> str | None:
    """The ``--env`` the user typed (``None`` when it was left at its default)."""
    given = list(sys.argv[1:] if argv is None else argv)
    return args.env if any(a == "--env" or a.startswith("--env=") for a in given) else None


def failure(exc: BaseException, run_dir: Path, agent: MBRLAgent | None) -> int:
    """Report a failed run in one ``error:`` line and return the exit status (see :func:`main`); re-raise
    what is not ours to report, and unexpected failures when ``REHEARSE_TRACEBACK`` is set."""
    kept = KEPT.format(run_dir / "checkpoints")
    if isinstance(exc, BAD_INPUT):
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if isinstance(exc, KeyboardInterrupt):  # a second SIGINT/SIGTERM (agent/signals.py), or Ctrl-C before training
        signum = signal.SIGTERM if "SIGTERM" in str(exc) else signal.SIGINT
        print(f"\nerror: {exc or f'{signal.Signals(signum).name}: stopped at once'}; {kept}: run the same command "
              "to continue", file=sys.stderr)
        return 128 + signum
    if not isinstance(exc, Exception) or os.environ.get("REHEARSE_TRACEBACK"):
        raise exc
    if isinstance(exc, OSError):
        print(f"error: {os_failure(exc, run_dir)}", file=sys.stderr)
        return 1
    what = f"{type(exc).__name__}: {exc}"
    if agent is not None and agent.num_timesteps == 0 and agent.config.env_kwargs:  # its first step failed
        print(f"error: {agent.config.env_id} with env kwargs {agent.config.env_kwargs} failed on its first step: "
              f"{what}. Check the --env-kwargs values", file=sys.stderr)
        return 2
    step = f" at step {agent.num_timesteps}" if agent is not None else ""  # the environment's step, or a bug
    print(f"error: training stopped{step}: {what}. {kept[0].upper()}{kept[1:]}: fix the cause and run the same "
          "command to resume from there (REHEARSE_TRACEBACK=1 shows where it was raised)", file=sys.stderr)
    return 1


def evaluate_main(args: argparse.Namespace, argv: Sequence[str] | None) -> int:
    """``--evaluate N``: print the episodes' report; 2 on bad input."""
    if args.evaluate < 1:
        print(f"error: --evaluate needs at least one episode, got {args.evaluate}", file=sys.stderr)
        return 2
    try:
        print(evaluate_run(args.run_dir or default_run_dir(args.env, args.seed), args.evaluate,
                           args.evaluate_seed, named_env(args, argv)), flush=True)
    except BAD_INPUT as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


def train(args: argparse.Namespace, run_dir: Path, started: list[MBRLAgent]) -> MBRLAgent:
    """Build (or resume) the agent, appended to ``started`` as soon as it exists, and train it."""
    check_run_dir(run_dir)
    config = resolve_config(args.env, overrides_from_args(args), preset=args.preset)
    if args.resume and not run_checkpoints(run_dir):
        raise CheckpointError(f"--resume given but {run_dir / CHECKPOINT_NAME} does not exist")
    agent = MBRLAgent(args.env, config, run_dir=run_dir)
    started.append(agent)
    resumed = f" (resuming at step {agent.num_timesteps})" if agent.num_timesteps else ""
    print(f"Run directory: {run_dir}{resumed}", flush=True)
    return agent.learn(config.train.total_timesteps, progress_bar=not args.no_progress_bar)


def main(argv: Sequence[str] | None = None) -> int:
    """The CLI: 0 done, 2 bad input, 1 an environment or OS failure, 128 + signal when a signal stopped it.

    Every failure ends in one ``error:`` line saying what happened and what to do (:func:`failure`)."""
    args = add_renamed_flags(build_parser()).parse_args(argv)
    if args.seed < 0:
        print(f"error: --seed must be >= 0 (numpy and torch seeds are unsigned), got {args.seed}", file=sys.stderr)
        return 2
    if args.threads is not None:
        if args.threads < 1:
            print(f"error: --threads must be >= 1, got {args.threads}", file=sys.stderr)
            return 2
        torch.set_num_threads(args.threads)  # configure_process lowers it to what the process may use
    if args.evaluate is not None:
        return evaluate_main(args, argv)
    run_dir = args.run_dir or default_run_dir(args.env, args.seed)
    started: list[MBRLAgent] = []
    try:
        agent = train(args, run_dir, started)
    except (Exception, KeyboardInterrupt) as exc:
        return failure(exc, run_dir, started[0] if started else None)
    last = f"; last eval mean return {agent.last_eval_return:.1f}" if agent.last_eval_return is not None else ""
    if agent.stopped_by is not None:
        print(f"Stopped by {agent.stopped_by.name} at step {agent.num_timesteps}{last}. Checkpoint in "
              f"{run_dir / CHECKPOINT_NAME}: run the same command to continue", flush=True)
        return 128 + agent.stopped_by.value  # as a shell reports a process the signal ended
    phases = agent.clock.snapshot()
    print(f"Where the time went (this run, all sessions):\n{profile_summary(phases)}")
    print(f"Done: {agent.num_timesteps} steps in {sum(phases.values()):.0f} s{last}. Outputs in {run_dir}; "
          f"curves: tensorboard --logdir {run_dir / 'tb'}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

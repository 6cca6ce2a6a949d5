"""Rehearse against model-free baselines, side by side, under one evaluation protocol.

    python -m benchmarks.compare --env HalfCheetah-v5 --algos rehearse sac td3 ppo \
        --total-timesteps 50000 --seeds 0 1 2 --out benchmarks/results/compare/HalfCheetah-v5

Algorithms: ``rehearse`` (MBRLAgent with the environment's preset), ``sac``, ``td3`` and
``ppo`` (Stable-Baselines3 with rl-baselines3-zoo's hyperparameters, see
``benchmarks/zoo_hyperparams.yaml``). Every run is evaluated the same way: a separate
environment built by ``envs.make_env``, every ``--eval-freq`` steps, ``--eval-episodes``
deterministic episodes with the same episode seeds.

Outputs under ``--out``:

- ``runs/<algo>/seed<k>/``: one run directory per run, in train_agent.py's format
  (config.yaml, monitor.csv, progress.csv, TensorBoard events, evaluations.npz), so
  ``tensorboard --logdir <out>/runs`` and rl-zoo's plotting scripts show all algorithms;
- ``results.csv``: one long table (algo, env, seed, step, eval_mean_return, eval_cost,
  wall_seconds, eval_seconds);
- ``curves.png``: return against steps and against wall-clock, mean with a 95% bootstrap
  band, each seed faint; ``report.md``: return at fixed budgets (IQM, 95% bootstrap
  interval, ratio to SAC), steps and wall-clock to a threshold and to SAC's final return.
  When the environment reports costs (``rehearse/Safety*Velocity-v1``), also the evaluation cost
  at the budgets and per run, and a cost curve with ``--cost-limit`` (Rehearse's
  ``planner.cost_limit``) drawn on it.

Resumable: a finished run (its evaluations reach its budget) is skipped; an unfinished
Rehearse run continues from its last checkpoint (one without a checkpoint restarts from step 0,
its earlier logs removed); an unfinished baseline restarts.
Parallel: ``--workers`` processes on this machine (default: one per core), or a Ray
cluster with ``--ray-address auto|HOST:PORT`` (``local`` starts a private local Ray
instance), each run one Ray task; run directories are written where the task runs, so
use a shared filesystem for ``--out`` on a multi-node cluster.
"""

from __future__ import annotations

import argparse
import csv
import os
import shlex
import signal
import sys
import threading
import time
import traceback
from collections.abc import Iterable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import asdict, dataclass
from multiprocessing import active_children, get_context
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from benchmarks.returns import progress_times, run_dir_of

__all__ = ["ALGORITHMS", "RunSpec", "check_sweep", "collect_rows", "is_finished", "latest_step", "main",
           "plan_runs", "run_one"]

ALGORITHMS = ("rehearse", "sac", "td3", "ppo")
CSV_COLUMNS = ("algo", "env", "seed", "step", "eval_mean_return", "eval_cost", "wall_seconds", "eval_seconds")
REPO_ROOT = Path(__file__).resolve().parent.parent
_RUNNING = threading.Event()  # set while this process runs a run (run_one)


@dataclass(frozen=True)
class RunSpec:
    """One training run of the sweep."""

    algo: str
    env_id: str
    seed: int
    total_timesteps: int
    run_dir: str
    eval_freq: int
    eval_episodes: int = 10
    threads: int = 1
    rehearse_preset: str | None = None
    cost_limit: float | None = None
    """Rehearse's ``planner.cost_limit`` (``None``: unconstrained); the baselines ignore costs."""

    @property
    def name(self) -> str:
        return f"{self.algo}/seed{self.seed}"


# ---------------------------------------------------------------- one run


def is_finished(run_dir: str | Path, total_timesteps: int) -> bool:
    """A run is finished when its evaluations reach its budget."""
    path = Path(run_dir) / "evaluations.npz"
    if not path.exists():
        return False
    try:
        with np.load(path, allow_pickle=False) as data:
            steps = data["timesteps"]
    except (OSError, ValueError, KeyError):
        return False
    return len(steps) > 0 and int(steps[-1]) >= total_timesteps


def run_one(spec: RunSpec) -> list[dict[str, Any]]:
    """Train ``spec`` unless finished; return its rows of the long results table."""
    import torch

    torch.set_num_threads(spec.threads)
    _RUNNING.set()
    try:
        if not is_finished(spec.run_dir, spec.total_timesteps):
            if spec.algo == "rehearse":
                _train_rehearse(spec)
            else:
                from benchmarks.baselines import train_baseline

                train_baseline(spec.algo, spec.env_id, spec.seed, spec.total_timesteps, spec.run_dir,
                               eval_freq=spec.eval_freq, eval_episodes=spec.eval_episodes)
        return collect_rows(spec)
    finally:
        _RUNNING.clear()


def _train_rehearse(spec: RunSpec) -> None:
    from agent import MBRLAgent, resolve_config
    from agent.agent import CHECKPOINT_NAME
    from agent.atomic import RunDirLock
    from agent.logger import clear_outputs

    run_dir = Path(spec.run_dir)
    if run_dir.is_dir() and not (run_dir / CHECKPOINT_NAME).exists():  # restarts from step 0, as a baseline does
        lock = RunDirLock(run_dir)
        lock.acquire()  # a process training into it keeps its logs: RunDirInUse
        try:
            clear_outputs(run_dir)
        finally:
            lock.release()
    overrides: dict[str, Any] = {"train": {"total_timesteps": spec.total_timesteps, "eval_freq": spec.eval_freq,
                                           "eval_episodes": spec.eval_episodes}}
    if spec.cost_limit is not None:
        overrides["planner"] = {"cost_limit": spec.cost_limit}
    config = resolve_config(spec.env_id, overrides, preset=spec.rehearse_preset)
    agent = MBRLAgent(spec.env_id, config, seed=spec.seed, run_dir=spec.run_dir)
    agent.learn(spec.total_timesteps, progress_bar=False)
    if agent.stopped_by is not None:
        raise RuntimeError(f"stopped by {agent.stopped_by.name} at step {agent.num_timesteps} with a checkpoint: "
                           "re-run the sweep to continue it")


def collect_rows(spec: RunSpec) -> list[dict[str, Any]]:
    """The long-table rows of one run directory, one per evaluation up to the run's budget."""
    run_dir = Path(spec.run_dir)
    with np.load(run_dir / "evaluations.npz", allow_pickle=False) as data:
        steps = data["timesteps"].astype(int)
        returns = data["results"].mean(axis=1)
        costs = data["costs"].mean(axis=1) if "costs" in data.files else np.zeros(len(steps))
        wall = data["wall_seconds"] if "wall_seconds" in data.files else None
        evals = data["eval_seconds"] if "eval_seconds" in data.files else None
    fallback = progress_times(run_dir)[0] if wall is None else {}  # runs older than wall-clock in the npz
    rows = []
    for i, step in enumerate(steps):
        if step > spec.total_timesteps:
            break
        w, e = (float(wall[i]), float(evals[i])) if wall is not None and evals is not None else fallback.get(
            int(step), (float("nan"), float("nan")))
        rows.append({"algo": spec.algo, "env": spec.env_id, "seed": spec.seed, "step": int(step),
                     "eval_mean_return": float(returns[i]), "eval_cost": float(costs[i]),
                     "wall_seconds": w, "eval_seconds": e})
    return rows


# ---------------------------------------------------------------- the sweep


def plan_runs(env_id: str, algos: Sequence[str], seeds: Sequence[int], budgets: dict[str, int], out: Path,
              eval_freq: int, eval_episodes: int, threads: int = 1,
              rehearse_preset: str | None = None, cost_limit: float | None = None) -> list[RunSpec]:
    """Every (algorithm, seed) run of the sweep, in the order they are started."""
    unknown = [a for a in algos if a not in ALGORITHMS]
    if unknown:
        raise ValueError(f"unknown algorithm(s) {unknown}; choose from {list(ALGORITHMS)}")
    for flag, values in (("--algos", [str(a) for a in algos]), ("--seeds", [str(s) for s in seeds])):
        repeated = sorted({v for v in values if values.count(v) > 1})
        if repeated:  # two runs would write one run directory at once
            raise ValueError(f"{flag} names {', '.join(repeated)} more than once; give each once")
    return [RunSpec(algo, env_id, seed, budgets[algo], str(run_dir_of(out, seed, algo)), eval_freq,
                    eval_episodes, threads, rehearse_preset, cost_limit)
            for seed in seeds for algo in algos]


POLL_SECONDS = 30.0  # how often the display reads the running runs' progress.csv


def latest_step(run_dir: str | Path) -> int:
    """The last environment step a run logged to its ``progress.csv`` (``time/total_timesteps``), 0 if none yet.

    Rehearse and the SB3 baselines both log that key; a file being rewritten reads as 0 until it is whole."""
    path = Path(run_dir) / "progress.csv"
    try:
        with path.open(newline="") as handle:
            steps = [row.get("time/total_timesteps") or "" for row in csv.DictReader(handle)]
        return max((int(float(v)) for v in steps if v), default=0)
    except (OSError, ValueError, csv.Error):
        return 0


class _Display:
    """The sweep's progress in environment steps over all its runs, so the ETA moves while long runs go,
    with runs done, those running (and their step) and failed ones.

    Finished runs count their whole budget, running ones the step their ``progress.csv`` has reached."""

    def __init__(self, specs: Sequence[RunSpec], finished: Sequence[RunSpec], enabled: bool,
                 label: str = "running") -> None:
        """``label``: what the runs handed to :meth:`update` are (``unfinished`` on Ray, whose queue is not seen)."""
        self.runs, self.done, self.failed, self.label = len(specs), len(finished), 0, label
        self.done_steps = sum(s.total_timesteps for s in finished)
        self.bar = tqdm(total=sum(s.total_timesteps for s in specs), initial=self.done_steps, unit="step",
                        desc="sweep", disable=not enabled, dynamic_ncols=True)

    def update(self, running: Iterable[RunSpec]) -> None:
        """Read the step of each run in ``running`` and show it."""
        at = {s.name: (min(latest_step(s.run_dir), s.total_timesteps), s.total_timesteps) for s in running}
        self.bar.update(max(0, self.done_steps + sum(step for step, _ in at.values()) - self.bar.n))
        shown = " ".join(f"{name} {step}/{budget}" for name, (step, budget) in sorted(at.items()))
        self.bar.set_postfix_str(
            f"runs done {self.done}/{self.runs}; {self.label} {shown or 'none'}; failed {self.failed}")

    def finish_one(self, spec: RunSpec, running: Iterable[RunSpec], failed: bool) -> None:
        self.done += 1
        self.failed += int(failed)
        self.done_steps += spec.total_timesteps
        self.update(running)

    def close(self) -> None:
        self.bar.close()


Outcome = tuple[RunSpec, list[dict[str, Any]] | None, str | None]


class SweepStopped(KeyboardInterrupt):
    """The sweep was asked to stop by ``signum`` (SIGINT: Ctrl-C, or SIGTERM)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _raise_stop(signum: int, frame: Any) -> None:
    del frame
    raise SweepStopped(signum)


def _signum(stop: KeyboardInterrupt) -> int:
    """The signal behind ``stop``: its own for :class:`SweepStopped`, else SIGINT (Python's Ctrl-C)."""
    return stop.signum if isinstance(stop, SweepStopped) else signal.SIGINT


def _worker_init(parent: int) -> None:
    """Each local worker: in a session of its own, so that a signal reaches it once, from the sweep
    (:func:`_run_local`), not also from the terminal or a group kill. If the sweep process dies (even by
    SIGKILL) the worker sends itself SIGTERM, so that its Rehearse run stops after its step with a
    checkpoint instead of training on unowned with its run directory locked, and then it exits (a pool
    worker would otherwise wait for its next run forever)."""
    if hasattr(os, "setsid"):
        os.setsid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        told = False
        while _RUNNING.is_set():  # a run under way: tell it once, then let it write its checkpoint
            if not told:
                os.kill(os.getpid(), signal.SIGTERM)
                told = True
            time.sleep(0.2)
        os._exit(128 + signal.SIGTERM)

    threading.Thread(target=watch, name="sweep-watchdog", daemon=True).start()


def _run_local(specs: list[RunSpec], workers: int, display: _Display) -> list[Outcome]:
    outcomes: list[Outcome] = []
    queue = list(specs)
    running: dict[Future[list[dict[str, Any]]], RunSpec] = {}
    with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn"), initializer=_worker_init,
                             initargs=(os.getpid(),)) as pool:
        try:
            while queue or running:
                while queue and len(running) < workers:  # submit only what starts now: honest "running"
                    spec = queue.pop(0)
                    running[pool.submit(run_one, spec)] = spec
                display.update(running.values())
                done, _ = wait(running, timeout=POLL_SECONDS, return_when=FIRST_COMPLETED)
                for future in done:
                    spec = running.pop(future)
                    error = future.exception()
                    message = "".join(traceback.format_exception(error)) if error is not None else None
                    outcomes.append((spec, None if error is not None else future.result(), message))
                    display.finish_one(spec, running.values(), error is not None)
        except KeyboardInterrupt as stop:  # pass it on once to each worker; the pool then waits for their checkpoints
            for child in active_children():
                if child.pid is not None:
                    os.kill(child.pid, _signum(stop))
            raise
    return outcomes


def _run_ray(specs: list[RunSpec], address: str, workers: int, display: _Display) -> list[Outcome]:
    import ray

    env_vars = {"PYTHONPATH": os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")]),
                "OMP_NUM_THREADS": str(specs[0].threads if specs else 1)}
    kwargs: dict[str, Any] = {"runtime_env": {"env_vars": env_vars}, "include_dashboard": False,
                              "log_to_driver": False}
    if address == "local":
        kwargs["num_cpus"] = workers
    else:
        kwargs["address"] = address
    ray.init(**kwargs)
    try:
        task = ray.remote(num_cpus=1, max_retries=0)(run_one)
        refs = {task.options(num_cpus=s.threads).remote(s): s for s in specs}
        pending = list(refs)
        outcomes: list[Outcome] = []
        while pending:
            display.update(refs[r] for r in pending)  # queued on the cluster or running
            done, pending = ray.wait(pending, num_returns=1, timeout=POLL_SECONDS)
            if not done:
                continue
            spec = refs[done[0]]
            try:
                outcomes.append((spec, ray.get(done[0]), None))
            except Exception as exc:  # noqa: BLE001 - one failed run must not stop the sweep
                outcomes.append((spec, None, f"{type(exc).__name__}: {exc}"))
            display.finish_one(spec, [refs[r] for r in pending], outcomes[-1][2] is not None)
        return outcomes
    finally:
        ray.shutdown()


def execute(specs: list[RunSpec], workers: int, ray_address: str | None, progress: bool) -> list[Outcome]:
    """Run every unfinished run (finished ones are read back); one failure does not stop the others."""
    todo = [s for s in specs if not is_finished(s.run_dir, s.total_timesteps)]
    done: list[Outcome] = [(s, collect_rows(s), None) for s in specs if s not in todo]
    display = _Display(specs, [s for s, _, _ in done], progress, "running" if ray_address is None else "unfinished")
    try:
        if not todo:
            return done
        if ray_address is not None:
            outcomes = _run_ray(todo, ray_address, workers, display)
        else:
            outcomes = _run_local(todo, workers, display)
        return done + outcomes
    finally:
        display.close()


def write_csv(rows: Iterable[dict[str, Any]], path: Path) -> None:
    """The long results table (``CSV_COLUMNS``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=CSV_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)


def _parse_budgets(algos: Sequence[str], total: int, items: Sequence[str]) -> dict[str, int]:
    budgets = dict.fromkeys(algos, total)
    for item in items:
        algo, sep, value = item.partition("=")
        if not sep or algo not in algos or not value.isdigit():
            raise ValueError(f"--algo-timesteps expects ALGO=STEPS with ALGO one of {list(algos)}, got {item!r}")
        budgets[algo] = int(value)
    return budgets


def check_sweep(env_id: str, budgets: dict[str, int], counts: dict[str, int | None]) -> None:
    """``ValueError`` for a sweep that cannot run, before any run starts: a budget or one of
    ``counts`` (flag -> value, ``None`` for unset) below 1, or an environment id that ``make_env``
    refuses (unknown, or spaces Rehearse cannot plan over)."""
    from envs import make_env

    for algo, steps in budgets.items():
        if steps < 1:
            raise ValueError(f"the budget of {algo} (--total-timesteps, --algo-timesteps) must be >= 1 step, "
                             f"got {steps}")
    for flag, value in counts.items():
        if value is not None and value < 1:
            raise ValueError(f"{flag} must be >= 1, got {value}")
    make_env(env_id).close()


def check_preset(env_id: str, preset: str | None) -> None:
    """A ConfigError (a ``ValueError``) when the Rehearse runs' ``preset`` cannot be resolved for ``env_id``
    (an unknown name, a missing or invalid YAML file), before any run starts."""
    from agent.config import resolve_config

    resolve_config(env_id, {}, preset=preset)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--env", required=True, help="Gymnasium id, e.g. HalfCheetah-v5")
    p.add_argument("--algos", nargs="+", default=list(ALGORITHMS), help=f"any of {' '.join(ALGORITHMS)}")
    p.add_argument("--total-timesteps", type=int, required=True, help="budget of every algorithm")
    p.add_argument("--algo-timesteps", nargs="*", default=[], metavar="ALGO=STEPS",
                   help="a different budget for some algorithms, e.g. rehearse=3000")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--out", type=Path, required=True, help="results directory")
    p.add_argument("--eval-freq", type=int, default=None,
                   help="steps between evaluations (default: 1000 when the smallest budget is under 20k, else 5000)")
    p.add_argument("--eval-episodes", type=int, default=10)
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="runs at once (default: one per core)")
    p.add_argument("--threads-per-run", type=int, default=1, help="torch threads of each run")
    p.add_argument("--ray-address", default=None, help="auto, HOST:PORT, or local (start a private Ray instance)")
    p.add_argument("--rehearse-preset", default=None, help="Rehearse preset (default: the environment's)")
    p.add_argument("--cost-limit", type=float, default=None,
                   help="Rehearse's planner.cost_limit (cost per 1,000 steps; baselines stay unconstrained), drawn "
                        "on the cost plot (default: unconstrained)")
    p.add_argument("--threshold", type=float, default=None, help="report steps and wall-clock to reach it")
    p.add_argument("--report-steps", type=int, nargs="*", default=None, help="budgets for the table")
    p.add_argument("--report-only", action="store_true", help="train nothing; report the finished runs")
    p.add_argument("--no-progress-bar", action="store_true")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from benchmarks.report import write_report

    argv = list(sys.argv[1:] if argv is None else argv)
    command = "python -m benchmarks.compare " + " ".join(shlex.quote(a) for a in argv)
    try:
        budgets = _parse_budgets(args.algos, args.total_timesteps, args.algo_timesteps)
        check_sweep(args.env, budgets, {"--eval-freq": args.eval_freq, "--eval-episodes": args.eval_episodes,
                                        "--workers": args.workers, "--threads-per-run": args.threads_per_run})
        if "rehearse" in args.algos:
            check_preset(args.env, args.rehearse_preset)
        eval_freq = args.eval_freq or (1000 if min(budgets.values()) < 20_000 else 5000)
        specs = plan_runs(args.env, args.algos, args.seeds, budgets, args.out, eval_freq, args.eval_episodes,
                          args.threads_per_run, args.rehearse_preset, args.cost_limit)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    started = time.time()
    if args.report_only:
        outcomes: list[Outcome] = [(s, collect_rows(s), None) for s in specs if is_finished(s.run_dir,
                                                                                              s.total_timesteps)]
    else:
        in_main = threading.current_thread() is threading.main_thread()  # only there can Python take signals
        previous = signal.signal(signal.SIGTERM, _raise_stop) if in_main else None  # SIGTERM acts as Ctrl-C
        try:
            outcomes = execute(specs, args.workers, args.ray_address, not args.no_progress_bar)
        except KeyboardInterrupt as stop:  # each local Rehearse run was told once and stopped with a checkpoint
            signum = _signum(stop)
            kept = ("Rehearse runs stopped after their step with a checkpoint" if args.ray_address is None else
                    "Ray tasks end with this driver, Rehearse runs keeping their last regular checkpoint")
            print(f"\n{signal.Signals(signum).name}: {kept}, baselines restart; re-run the same command to "
                  "continue the sweep (report, CSV and plot not rewritten)", file=sys.stderr)
            return 128 + signum
        finally:
            if in_main:
                signal.signal(signal.SIGTERM, signal.SIG_DFL if previous is None else previous)
    order = sorted(outcomes, key=lambda o: (args.algos.index(o[0].algo), o[0].seed))
    rows = [row for _, result, _ in order for row in result or []]
    write_csv(rows, args.out / "results.csv")
    write_report(rows, args.out, env_id=args.env, command=command, threshold=args.threshold,
                 report_steps=args.report_steps, specs=[asdict(s) for s in specs], cost_limit=args.cost_limit)
    failures = [(s, msg) for s, _, msg in outcomes if msg is not None]
    for spec, message in failures:
        print(f"run {spec.name} failed:\n{message}", file=sys.stderr)
    print(f"{len(outcomes) - len(failures)} of {len(specs)} runs finished in {time.time() - started:.0f} s; "
          f"results in {args.out}/results.csv, report.md, curves.png")
    return 1 if failures or len(outcomes) < len(specs) else 0


if __name__ == "__main__":
    sys.exit(main())

"""How training steps share the cores: K processes started together, each timing world-model updates.

    python -m benchmarks.contention --processes 1 3 --threads 1 2 --policies ACTIVE PASSIVE \\
        --out benchmarks/results/contention.md

Each case starts ``K`` copies of this script (``--worker``) at once, each with ``T`` torch threads and
``OMP_WAIT_POLICY`` set to the case's policy before torch loads OpenMP. Every worker builds the
InvertedPendulum-v5 preset's robotics model (its networks, value and batch size), runs a few warm-up
updates and then times ``--updates`` updates on a fixed batch. The table gives the workers' median
milliseconds per update and the slowdown against one process alone with the same threads and policy.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path


def worker(threads: int, updates: int) -> float:
    """Milliseconds per update of the InvertedPendulum-v5 preset's model (one process, ``threads`` threads)."""
    import torch

    from agent.config import resolve_config
    from world_models.robotics import ModelBatch, RoboticsWorldModel

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    config = resolve_config("InvertedPendulum-v5")
    state_dim, action_dim = 4, 1
    model = RoboticsWorldModel(state_dim, action_dim, config.robotics, config.value, discount=config.planner.discount)
    e, b = config.robotics.ensemble_size, config.train.batch_size
    batch = ModelBatch(
        obs=torch.randn(e, b, state_dim), actions=torch.rand(e, b, action_dim) * 2 - 1, rewards=torch.randn(e, b),
        costs=torch.zeros(e, b), terminated=torch.zeros(e, b, dtype=torch.bool), next_obs=torch.randn(e, b, state_dim),
    )
    noise = (0.2 * torch.randn(e, b, action_dim)).clamp(-0.5, 0.5)
    for _ in range(5):
        model.update(batch, None, noise)
    start = time.perf_counter()
    for _ in range(updates):
        model.update(batch, None, noise)
    return 1000 * (time.perf_counter() - start) / updates


def run_case(processes: int, threads: int, policy: str, updates: int) -> list[float]:
    """Start ``processes`` workers together; their milliseconds per update."""
    env = {**os.environ, "OMP_WAIT_POLICY": policy, "OMP_NUM_THREADS": str(threads)}
    command = [sys.executable, "-m", "benchmarks.contention", "--worker", str(threads), "--updates", str(updates)]
    procs = [subprocess.Popen(command, env=env, stdout=subprocess.PIPE, text=True) for _ in range(processes)]
    results = []
    for proc in procs:
        out, _ = proc.communicate()
        if proc.returncode != 0:
            raise RuntimeError(f"worker failed with exit status {proc.returncode}")
        results.append(json.loads(out.strip().splitlines()[-1])["ms"])
    return results


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--processes", type=int, nargs="+", default=[1, 3])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--policies", nargs="+", default=["ACTIVE", "PASSIVE"], choices=["ACTIVE", "PASSIVE"])
    parser.add_argument("--updates", type=int, default=100)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--worker", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker is not None:
        print(json.dumps({"ms": worker(args.worker, args.updates)}))
        return
    rows = ["| processes | threads each | OMP_WAIT_POLICY | ms / update (median of workers) | all workers | "
            "x alone |", "|---|---|---|---|---|---|"]
    alone: dict[tuple[int, str], float] = {}
    for threads in args.threads:
        for policy in args.policies:
            for processes in sorted(args.processes):
                times = run_case(processes, threads, policy, args.updates)
                median = statistics.median(times)
                alone.setdefault((threads, policy), median)
                ratio = median / alone[(threads, policy)]
                rows.append(f"| {processes} | {threads} | {policy} | {median:.1f} | "
                            f"{', '.join(f'{t:.1f}' for t in times)} | {ratio:.2f} |")
                print(rows[-1], flush=True)
    cpus = len(os.sched_getaffinity(0))
    text = "\n".join([
        f"Command: `python -m benchmarks.contention {' '.join(argv or sys.argv[1:])}`",
        f"Machine: {cpus} CPUs in the affinity mask; 'x alone' is against the first (fewest processes) row of "
        "the same threads and policy.", "", *rows, ""])
    if args.out is not None:
        args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()

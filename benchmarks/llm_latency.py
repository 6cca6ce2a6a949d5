"""Latency of the bundled language model (SmolLM2-135M-Instruct on llama-cpp-python) per call and per action.

    python -m benchmarks.llm_latency --repeats 3 --out benchmarks/results/llm/latency.md

Starts the bundled server once, then times, for each calling pattern (role, sequences n, horizon H,
action size A), ``--repeats`` calls made one after another (each the full HTTP round trip: prompt,
constrained generation, strict parsing; a new random state each call), and reports the median. From it, the
milliseconds added per action:

- waiting for the reply (``llm.wait_s`` at least the latency): the call's latency divided by ``llm.every``;
- in the background (``llm.wait_s`` 0, the default): what ``propose`` itself costs the control loop
  (measured over ``--async-steps`` calls while the server works), plus whatever the server's use of the
  CPU takes from the planner on a machine with few cores (not separated here).
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from pathlib import Path

import numpy as np

from benchmarks.markdown import write_report
from language_models.bundled import BundledServer, check_bundled
from language_models.config import LLMConfig
from language_models.prompts import TaskSpec
from language_models.proposer import LLMProposer

PATTERNS = [("proposer", 1, 15, 1), ("proposer", 4, 15, 1), ("proposer", 1, 15, 6), ("judge", 4, 15, 2)]
"""(role, sequences or judged states, horizon, action size)."""


def spec(action_dim: int) -> TaskSpec:
    """A generic Box task: observations in [-10, 10]^4, actions in [-1, 1]^A."""
    return TaskSpec("generic", np.full(4, -10.0), np.full(4, 10.0), np.full(action_dim, -1.0),
                    np.full(action_dim, 1.0), "keep every observation near zero")


def time_calls(server: BundledServer, pattern: tuple[str, int, int, int], repeats: int,
               trace: Path | None = None) -> tuple[list[float], int]:
    """Milliseconds of ``repeats`` calls of ``pattern`` (every call, usable or not: the time a loop waiting for
    it loses) and how many gave a usable reply. ``trace``: a folder for the calls' ``llm_trace.jsonl``."""
    role, n, horizon, action_dim = pattern
    config = LLMConfig(base_url=server.base_url, num_proposals=n, wait_s=600.0, timeout_s=300.0,
                       response_format="json_object", trace=trace is not None)
    proposer = LLMProposer(config, spec(action_dim))  # no server: closing it leaves the server running
    if trace is not None:
        proposer.open_run(trace)
    rng = np.random.default_rng(0)
    times, usable = [], 0
    for _ in range(repeats):
        obs = rng.uniform(-5.0, 5.0, 4)  # a new state each call, as in a run (no reply from the prompt cache)
        start = time.perf_counter()
        if role == "proposer":
            parsed = proposer.counts["proposals_parsed"]
            proposer.propose({"obs": obs, "episode_start": True}, n, horizon)
            usable += int(proposer.counts["proposals_parsed"] > parsed)
        else:
            usable += int(proposer.rate(obs + rng.uniform(-1.0, 1.0, (n, 4))) is not None)
        times.append(1000 * (time.perf_counter() - start))
    proposer.close()
    return times, usable


def async_overhead(server: BundledServer, steps: int) -> float:
    """Median milliseconds one ``propose`` call costs the control loop with ``wait_s`` 0 and ``every`` 1."""
    config = LLMConfig(base_url=server.base_url, num_proposals=2, wait_s=0.0, timeout_s=300.0,
                       response_format="json_object")
    proposer = LLMProposer(config, spec(1))
    times = []
    for step in range(steps):
        start = time.perf_counter()
        proposer.propose({"obs": np.zeros(4), "episode_start": step == 0}, 2, 15)
        times.append(1000 * (time.perf_counter() - start))
        time.sleep(0.02)  # a planner's step
    proposer.close()
    return statistics.median(times)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--async-steps", type=int, default=200)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--trace", type=Path, default=None, help="folder for the calls' llm_trace.jsonl")
    args = parser.parse_args(argv)
    server = BundledServer(check_bundled(), 300.0)
    start = time.perf_counter()
    server.start()
    startup_ms = 1000 * (time.perf_counter() - start)
    lines = ["# Bundled language model: latency", "",
             f"`python -m benchmarks.llm_latency --repeats {args.repeats} --async-steps {args.async_steps}`", "",
             f"{platform.node()}, {platform.machine()}, CPU only; a shared machine (other jobs running): "
             "treat the numbers as upper bounds.", "", f"Server start (model load): {startup_ms:.0f} ms.", "",
             "| role | n | H | A | call ms (median) | calls (ms) | usable replies | ms/action waiting, every 1 "
             "| every 5 | every 15 |", "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    try:
        time_calls(server, PATTERNS[0], 1)  # warm-up
        for pattern in PATTERNS:
            times, usable = time_calls(server, pattern, args.repeats, args.trace)
            median = statistics.median(times)
            lines.append(f"| {' | '.join(map(str, pattern))} | {median:.0f} | {', '.join(f'{t:.0f}' for t in times)} "
                         f"| {usable}/{len(times)} | {median:.0f} | {median / 5:.0f} | {median / 15:.0f} |")
            print(lines[-1], flush=True)
        overhead = async_overhead(server, args.async_steps)
    finally:
        server.stop()
    lines += ["", f"In the background (`llm.wait_s` 0, `llm.every` 1): `propose` costs the control loop "
              f"{overhead:.2f} ms per action (median of {args.async_steps} steps, 20 ms apart, while the server "
              "generates)."]
    write_report(lines, args.out)


if __name__ == "__main__":
    main()

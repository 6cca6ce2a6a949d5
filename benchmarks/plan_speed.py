"""Planning speed: milliseconds per action and achieved GFLOP/s against the measured matmul peak.

    python -m benchmarks.plan_speed --out benchmarks/results/plan_speed.md

Configurations: ``pets`` (400 candidates, horizon 30, 5 CEM iterations, 20 particles,
5-member ensemble of 4x200 MLPs on HalfCheetah's 17-dim state and 6-dim action, no terminal value) and
every preset named with ``--presets`` (its acting plan, and its training plan too where
``planner.eval_num_candidates`` gives the two different widths); with ``--lockstep B`` (default 10, the evaluation
episodes) each preset also as ``B`` problems in one batched plan, as evaluation plans its
side-by-side episodes. Milliseconds per action are then the batched plan's time over ``B``.

``--layers`` instead times the parts of one imagined step of the ``pets`` network alone, as the fast
path runs them (each layer's batched product with its bias, each hidden layer's SiLU): the GFLOP/s a
plan made of nothing else would reach, the ceiling for the whole plan's.

``--fast both`` (the default) times every configuration with planning's fast path and with the
reference path (``world_models.fast``), the two alternating plan by plan so that the machine's drift
from one minute to the next falls on both alike; ``on`` or ``off`` times one. ``--memory`` sets the
allocator for the whole process: ``kept`` (the default, as the agent does with the fast path on:
``world_models.fast.keep_freed_memory``) or glibc's ``default``; each row gives the plans' minor page
faults per action. ``--dtype`` picks the dtype of the hidden-to-hidden products
(``model.imagination_dtype``; ``both`` alternates float32 and bfloat16 the same way). Each row's % of
peak is against the square matmul peak of the dtype its hidden products use, timed between its plans;
the bfloat16 rows also give their GFLOP/s against the float32 peak, the arithmetic being a different
one. Measurements and the commands that made them: ``benchmarks/results/plan_speed*.md``,
``benchmarks/results/speed_switches.md``.
"""

from __future__ import annotations

import argparse
import platform
import resource
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from functools import partial
from itertools import pairwise
from pathlib import Path

import torch
import torch.nn.functional as F

from agent.config import resolve_config, search_width
from benchmarks.markdown import write_report
from planners import SamplingConfig, make_objective, make_planner
from world_models.config import RoboticsConfig, ValueConfig
from world_models.fast import available_threads, keep_freed_memory, row_blocks, set_fast
from world_models.robotics import CONTINUATION_HIDDEN, IMAGINATION_DTYPES, RoboticsWorldModel


@dataclass(frozen=True)
class SpeedCase:
    name: str
    state_dim: int
    action_dim: int
    ensemble_size: int
    hidden_dim: int
    num_layers: int
    planner: str
    horizon: int
    num_candidates: int
    iterations: int
    particles: int
    num_elites: int
    problems: int = 1  # planning problems in one batched call (evaluation's side-by-side episodes)
    continuation_from: str = "transition"  # next_state: the model's continuation network runs on every imagined state
    terminal_value: str = "none"  # none (as PETS), state (V(z)) or policy (twin Q(z, pi(z))): model.value_kind


PETS = SpeedCase("pets", 17, 6, 5, 200, 4, "cem", 30, 400, 5, 20, 40)
ENV_DIMS = {"HalfCheetah-v5": (17, 6), "Hopper-v5": (11, 3), "InvertedPendulum-v5": (4, 1), "Pendulum-v1": (3, 1)}


def preset_cases(env_id: str) -> list[SpeedCase]:
    """The planning configurations of ``env_id``'s preset: the acting plan first (``predict`` and
    evaluation, ``planner.eval_num_candidates`` wide), then, where the training loop searches a
    different width (``planner.num_candidates``), its plan too."""
    c = resolve_config(env_id)
    s, a = ENV_DIMS[env_id]
    p, m, v, sampling = c.planner, c.robotics, c.value, c.sampling
    acting, training = search_width(p, sampling, acting=True), search_width(p, sampling)
    widths = [("", acting)] if acting == training else [(" acting", acting), (" training", training)]
    return [SpeedCase(f"preset:{env_id}{label}", s, a, m.ensemble_size, m.hidden_dim, m.num_layers, p.name,
                      p.horizon, n, sampling.iterations, p.particles, sampling.num_elites,
                      continuation_from=m.continuation_from, terminal_value=v.kind if v.function else "none")
            for label, n in widths]


def matmul_peak_gflops(size: int = 2048, repeats: int = 10, dtype: torch.dtype = torch.float32) -> float:
    """Best GFLOP/s of a square ``dtype`` matmul on this machine."""
    a, b = torch.randn(size, size, dtype=dtype), torch.randn(size, size, dtype=dtype)
    return 2 * size**3 / _best_seconds(partial(torch.mm, a, b), repeats, warm_up=False) / 1e9


Variant = tuple[str, str]  # (planning path: fast or reference, dtype of the hidden products: float32 or bfloat16)


@dataclass(frozen=True)
class CaseTimes:
    """Seconds per action (median, best) and minor page faults per action (median) for each variant,
    and the matmul peak of each dtype timed between the plans."""

    per_variant: dict[Variant, tuple[float, float]]
    peak_gflops: dict[str, float]
    faults: dict[Variant, float]


def _mlp_flops(widths: list[int]) -> int:
    """Multiply-add FLOPs per row of an MLP with these layer widths."""
    return sum(2 * i * o for i, o in pairwise(widths))


def flops_per_plan(case: SpeedCase) -> float:
    """Multiply-add FLOPs of the MLP evaluations in one plan (the mean is scored as an extra candidate).

    The output layer counts the columns imagination computes: the state change, reward,
    continuation and cost (not the log-variances, which only training needs).
    """
    widths = [case.state_dim + case.action_dim] + [case.hidden_dim] * case.num_layers + [case.state_dim + 3]
    per_row = _mlp_flops(widths)
    if case.continuation_from == "next_state":  # the continuation network on each imagined state
        per_row += _mlp_flops([case.state_dim, CONTINUATION_HIDDEN, CONTINUATION_HIDDEN, 1])
    rows = (case.num_candidates + 1) * case.particles  # per problem
    return float((per_row * case.horizon + terminal_value_flops(case)) * rows * case.iterations)


def terminal_value_flops(case: SpeedCase) -> int:
    """Multiply-add FLOPs of the terminal value on one row's last imagined state: ``V(z)`` (``state``),
    or the policy and both critics (``policy``); 0 for ``none``. Their MLPs have 2 hidden layers."""
    z, a, h = case.state_dim, case.action_dim, case.hidden_dim
    if case.terminal_value == "state":
        return _mlp_flops([z, h, h, 1])
    if case.terminal_value == "policy":
        return _mlp_flops([z, h, h, a]) + 2 * _mlp_flops([z + a, h, h, 1])
    return 0


@contextmanager
def _path(path: str) -> Iterator[None]:
    """Plan with the ``fast`` path or the ``reference`` path inside this context."""
    before = set_fast(path == "fast")
    try:
        yield
    finally:
        set_fast(before)


def _minor_faults() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def time_case(case: SpeedCase, repeats: int, variants: tuple[Variant, ...] = (("fast", "float32"),),
              peak_size: int = 2048) -> CaseTimes:
    """Median and best seconds per action for ``case`` in each variant (planning path ``fast`` or
    ``reference``, hidden products ``float32`` or ``bfloat16``): one plan, or one batched plan over
    ``problems``; the variants take turns, one plan each, on models with the same weights.

    The best is what the machine can do when nothing else holds its cores. A shared virtual
    machine's speed drifts from minute to minute, so the matmul peak it is compared with is
    timed in the same minutes: one square matmul (``peak_size`` a side) before each round of plans, the best kept.
    """
    dtypes = sorted({dtype for _, dtype in variants})
    models = {}
    for dtype in dtypes:
        torch.manual_seed(0)
        network = RoboticsConfig(ensemble_size=case.ensemble_size, hidden_dim=case.hidden_dim,
                                 num_layers=case.num_layers, continuation_from=case.continuation_from,
                                 imagination_dtype=dtype)
        value = ValueConfig(function=case.terminal_value != "none",
                            kind="state" if case.terminal_value == "none" else case.terminal_value)
        models[dtype] = RoboticsWorldModel(case.state_dim, case.action_dim, network, value).eval()
    sampling = SamplingConfig(num_candidates=case.num_candidates, iterations=case.iterations,
                              num_elites=case.num_elites)
    planner = make_planner(case.planner, sampling, case.action_dim, torch.Generator().manual_seed(0))
    z0 = torch.randn(case.state_dim) if case.problems == 1 else torch.randn(case.problems, case.state_dim)
    objectives = {dtype: make_objective(model.imagine, z0, particles=case.particles, discount=0.99,
                                        cost_weight=0.0)
                  for dtype, model in models.items()}
    init = torch.zeros(*z0.shape[:-1], case.horizon, case.action_dim)
    times: dict[Variant, list[float]] = {variant: [] for variant in variants}
    faults: dict[Variant, list[int]] = {variant: [] for variant in variants}
    for path, dtype in variants:  # warm-up
        with _path(path):
            planner.plan(objectives[dtype], init)
    peak = dict.fromkeys(dtypes, 0.0)
    for _ in range(repeats):
        for dtype in dtypes:
            peak[dtype] = max(peak[dtype], matmul_peak_gflops(peak_size, repeats=1,
                                                                dtype=IMAGINATION_DTYPES[dtype]))
        for path, dtype in variants:
            with _path(path):
                before, start = _minor_faults(), time.perf_counter()
                planner.plan(objectives[dtype], init)
                times[path, dtype].append((time.perf_counter() - start) / case.problems)
                faults[path, dtype].append(_minor_faults() - before)
    return CaseTimes({variant: (sorted(t)[len(t) // 2], min(t)) for variant, t in times.items()}, peak,
                     {variant: sorted(f)[len(f) // 2] / case.problems for variant, f in faults.items()})


def _best_seconds(fn: Callable[[], object], repeats: int, warm_up: bool = True) -> float:
    """The shortest of ``repeats`` timed calls of ``fn`` (after one untimed call with ``warm_up``)."""
    if warm_up:
        fn()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def layer_lines(case: SpeedCase, repeats: int) -> list[str]:
    """Markdown rows: each part of one imagined step of ``case``'s network timed alone (best of ``repeats``,
    under inference mode), with its GFLOP/s and % of a square matmul's peak timed just before it."""
    rows = (case.num_candidates + 1) * case.particles * case.problems // case.ensemble_size  # per member
    k = row_blocks(case.ensemble_size, rows)
    groups, m = case.ensemble_size * k, rows // k
    widths = [case.state_dim + case.action_dim] + [case.hidden_dim] * case.num_layers + [case.state_dim + 3]
    lines, total_flops, total_seconds = [], 0.0, 0.0
    with torch.inference_mode():
        for i, (n_in, n_out) in enumerate(pairwise(widths)):
            x, w = torch.randn(groups, m, n_in), torch.randn(groups, n_in, n_out) / n_in**0.5
            out, bias = torch.empty(groups, m, n_out), torch.zeros(groups, 1, n_out)
            flops = 2.0 * groups * m * n_in * n_out
            # (name, call, FLOPs, whether imagination runs it: the rest are for comparison only)
            parts: list[tuple[str, Callable[[], object], float, bool]] = []
            if i < case.num_layers:
                parts.append((f"layer {i + 1} product + bias ({n_in} -> {n_out})",
                              partial(torch.baddbmm, bias, x, w, out=out), flops, True))
                parts.append((f"layer {i + 1} SiLU", partial(F.silu, out, inplace=True), 0.0, True))
            else:  # the output layer, transposed as imagination runs it, and as rows for comparison
                w_t, out_t = w.transpose(1, 2).contiguous(), torch.empty(groups, n_out, m)
                parts.append((f"layer {i + 1} product ({n_in} -> {n_out}), transposed",
                              partial(torch.bmm, w_t, x.transpose(1, 2), out=out_t), flops, True))
                parts.append((f"layer {i + 1} product ({n_in} -> {n_out}), as rows (comparison)",
                              partial(torch.bmm, x, w, out=out), flops, False))
            for name, fn, flops, counted in parts:
                peak = matmul_peak_gflops(repeats=3)
                seconds = _best_seconds(fn, repeats)
                if counted:
                    total_flops, total_seconds = total_flops + flops, total_seconds + seconds
                rate = flops / seconds / 1e9
                lines.append(f"| {name} | {groups}x{m} | {1e3 * seconds:.3f} | {rate:.1f} | {peak:.1f} | "
                             f"{100 * rate / peak:.0f}% |" if flops else
                             f"| {name} | {groups}x{m} | {1e3 * seconds:.3f} | - | {peak:.1f} | - |")
                print(lines[-1], flush=True)
    rate = total_flops / total_seconds / 1e9
    lines.append(f"| one step, all parts | | {1e3 * total_seconds:.3f} | {rate:.1f} | {peak:.1f} | "
                 f"{100 * rate / peak:.0f}% |")
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--presets", nargs="*", default=["HalfCheetah-v5", "Hopper-v5", "InvertedPendulum-v5",
                                                         "Pendulum-v1"])
    parser.add_argument("--pets", action=argparse.BooleanOptionalAction, default=True,
                        help="time the pets configuration (--no-pets: the presets only)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--lockstep", type=int, default=10,
                        help="also time each preset as this many problems in one batched plan (0: skip)")
    parser.add_argument("--fast", choices=["both", "on", "off"], default="both",
                        help="time planning's fast path, the reference path, or both in alternation")
    parser.add_argument("--memory", choices=["kept", "default"], default="kept",
                        help="keep freed memory for reuse (as the agent does) or leave glibc's default")
    parser.add_argument("--dtype", choices=["float32", "bfloat16", "both"], default="float32",
                        help="dtype of the hidden-to-hidden products (model.imagination_dtype), or both in alternation")
    parser.add_argument("--layers", action="store_true",
                        help="time the parts of one imagined step of the pets network alone (see above)")
    parser.add_argument("--out", type=Path, default=None, help="write a markdown table here")
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    unknown = [e for e in args.presets if e not in ENV_DIMS]
    if unknown:
        parser.error(f"no planning case for preset(s) {unknown}; choose from {', '.join(ENV_DIMS)}")
    if args.repeats < 1 or args.lockstep < 0:
        parser.error(f"--repeats must be >= 1 and --lockstep >= 0, got {args.repeats} and {args.lockstep}")
    if args.memory == "kept":
        keep_freed_memory()
    peak = matmul_peak_gflops()
    columns = (["part", "groups x rows", "ms, best", "GFLOP/s", "peak GFLOP/s", "% of peak"] if args.layers else
               ["config", "B", "N", "H", "iters", "P", "E", "MLP", "path", "hidden products", "ms / action: median",
                "best", "GFLOP / action", "GFLOP/s (best)", "peak GFLOP/s (that dtype)", "% of peak (best)",
                "% of fp32 peak (best)", "minor faults / action"])
    peak_timed = "just before it" if args.layers else "between that row's plans"
    lines = [
        f"Command: `python -m benchmarks.plan_speed {' '.join(argv)}`",
        f"Machine: {platform.processor() or platform.machine()}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} torch threads ({available_threads()} available); measured fp32 matmul peak "
        f"{peak:.1f} GFLOP/s at the start (each row's % is against the peak timed {peak_timed}); "
        f"freed memory {'kept' if args.memory == 'kept' else 'returned (glibc default)'}",
        "",
        "| " + " | ".join(columns) + " |",
        "|" + "---|" * len(columns),
    ]
    if args.layers:
        return _finish(lines + layer_lines(PETS, 10 * args.repeats), args.out)
    paths = {"both": ("fast", "reference"), "on": ("fast",), "off": ("reference",)}[args.fast]
    dtypes = ("float32", "bfloat16") if args.dtype == "both" else (args.dtype,)
    variants = tuple((path, dtype) for dtype in dtypes for path in paths)
    cases = [preset_cases(e) for e in args.presets]
    presets = [case for per_env in cases for case in per_env]
    # evaluation plans its side-by-side episodes at the acting width, the first of each preset's cases
    batched = [replace(per_env[0], problems=args.lockstep) for per_env in cases] if args.lockstep > 1 else []
    for case in [PETS] * args.pets + [*presets, *batched]:
        gflop = flops_per_plan(case) / 1e9
        timed = time_case(case, args.repeats, variants)
        for (path, dtype), (median, best) in timed.per_variant.items():
            peak_here, fp32_peak = timed.peak_gflops[dtype], timed.peak_gflops.get("float32")
            lines.append(
                f"| {case.name} | {case.problems} | {case.num_candidates} | {case.horizon} | {case.iterations} | "
                f"{case.particles} | {case.ensemble_size} | {case.num_layers}x{case.hidden_dim} | {path} | {dtype} | "
                f"{1000 * median:.1f} | {1000 * best:.1f} | "
                f"{gflop:.2f} | {gflop / best:.1f} | {peak_here:.1f} | "
                f"{100 * gflop / best / peak_here:.0f}% | "
                + (f"{100 * gflop / best / fp32_peak:.0f}% |" if fp32_peak else "- |")
                + f" {timed.faults[path, dtype]:.0f} |"
            )
            print(lines[-1], flush=True)
    return _finish(lines, args.out)


def _finish(lines: list[str], out: Path | None) -> int:
    write_report(lines, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())

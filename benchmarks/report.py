"""The comparison report: a markdown table and learning curves from the long results table.

Rows are dicts with the keys of ``benchmarks.compare.CSV_COLUMNS``. Statistics are over
seeds: IQM with a 95% percentile bootstrap interval (``benchmarks.stats``).
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.stats import bootstrap_ci, iqm

__all__ = ["Curves", "curves_by_algo", "first_reach", "has_costs", "markdown_report", "plot_curves", "write_report"]

# algo -> seed -> arrays (steps, returns, wall_seconds, eval_seconds), each (n_evals,)
Curves = dict[str, dict[int, dict[str, np.ndarray]]]
_COLOURS = {"rehearse": "tab:red", "sac": "tab:blue", "td3": "tab:green", "ppo": "tab:purple"}


def curves_by_algo(rows: Iterable[dict[str, Any]]) -> Curves:
    """Group long-table rows into per-algorithm, per-seed curves sorted by step."""
    grouped: dict[str, dict[int, list[dict[str, Any]]]] = defaultdict(lambda: defaultdict(list))
    for row in rows:
        grouped[str(row["algo"])][int(row["seed"])].append(row)
    curves: Curves = {}
    for algo, seeds in grouped.items():
        curves[algo] = {}
        for seed, items in sorted(seeds.items()):
            items.sort(key=lambda r: int(r["step"]))
            curves[algo][seed] = {
                "steps": np.array([int(r["step"]) for r in items]),
                "returns": np.array([float(r["eval_mean_return"]) for r in items]),
                "wall": np.array([float(r["wall_seconds"]) for r in items]),
                "eval": np.array([float(r["eval_seconds"]) for r in items]),
                "costs": np.array([float(r.get("eval_cost") or 0.0) for r in items]),
            }
    return curves


def _at_step(curves: dict[int, dict[str, np.ndarray]], step: int, key: str = "returns") -> np.ndarray:
    """Each seed's return (or ``key``: ``costs``) at exactly ``step`` (seeds without that evaluation left out)."""
    values = [c[key][c["steps"] == step] for c in curves.values()]
    return np.array([v[0] for v in values if len(v)])


def has_costs(curves: Curves) -> bool:
    """Whether any evaluation reported a cost (the environment has costs)."""
    return any(np.any(c["costs"] > 0) for seeds in curves.values() for c in seeds.values())


def _cost_table(curves: Curves, steps: Sequence[int], cost_limit: float | None) -> list[str]:
    """Mean evaluation cost per episode at fixed budgets: IQM [95% CI] over seeds, and seeds within the limit."""
    within = "" if cost_limit is None else f", seeds <= {cost_limit:g}"
    lines = ["| algorithm | " + " | ".join(f"{s:,} steps: cost IQM [95% CI] (seeds{within})" for s in steps) + " |",
             "|---|" + "---|" * len(steps)]
    for algo, seeds in curves.items():
        cells = []
        for step in steps:
            values = _at_step(seeds, step, "costs")
            if not len(values):
                cells.append("not run")
                continue
            lo, hi = bootstrap_ci(values)
            kept = "" if cost_limit is None else f", {int(np.sum(values <= cost_limit))}/{len(values)}"
            cells.append(f"{iqm(values):.1f} [{lo:.1f}, {hi:.1f}] ({len(values)}{kept})")
        lines.append(f"| {algo} | " + " | ".join(cells) + " |")
    return lines


def first_reach(curve: dict[str, np.ndarray], target: float) -> tuple[int | None, float | None, float | None]:
    """``(step, wall seconds, training seconds = wall - evaluation)`` of the first evaluation >= target."""
    hits = np.flatnonzero(curve["returns"] >= target)
    if not len(hits):
        return None, None, None
    i = int(hits[0])
    wall, spent = float(curve["wall"][i]), float(curve["eval"][i])
    return int(curve["steps"][i]), wall, (wall - spent if math.isfinite(spent) else None)


def _fmt(x: float | None, digits: int = 1) -> str:
    return "-" if x is None or not math.isfinite(x) else f"{x:.{digits}f}"


def _budget_table(curves: Curves, steps: Sequence[int]) -> list[str]:
    lines = ["| algorithm | " + " | ".join(f"{s:,} steps: IQM [95% CI] (seeds)" for s in steps) + " |",
             "|---|" + "---|" * len(steps)]
    reference = {s: iqm(v) for s in steps if len(v := _at_step(curves.get("sac", {}), s))}
    for algo, seeds in curves.items():
        cells = []
        for step in steps:
            values = _at_step(seeds, step)
            if not len(values):
                cells.append("not run")
                continue
            lo, hi = bootstrap_ci(values)
            cell = f"{iqm(values):.1f} [{lo:.1f}, {hi:.1f}] ({len(values)})"
            ref = reference.get(step)
            if algo != "sac" and ref is not None and ref > 0 and iqm(values) >= 0:
                cell += f", {iqm(values) / ref:.2f}x SAC"
            cells.append(cell)
        lines.append(f"| {algo} | " + " | ".join(cells) + " |")
    return lines


def _reach_table(curves: Curves, target: float, label: str) -> list[str]:
    lines = [f"| algorithm | seeds reaching {label} | steps (per seed) | wall-clock s (per seed) "
             "| training s, evaluation excluded (per seed) |", "|---|---|---|---|---|"]
    for algo, seeds in curves.items():
        hits = [first_reach(c, target) for c in seeds.values()]
        reached = [h for h in hits if h[0] is not None]
        lines.append(f"| {algo} | {len(reached)}/{len(hits)} | "
                     + ", ".join(str(h[0]) if h[0] is not None else "not reached" for h in hits) + " | "
                     + ", ".join(_fmt(h[1], 0) for h in hits) + " | "
                     + ", ".join(_fmt(h[2], 0) for h in hits) + " |")
    return lines


def _runs_table(curves: Curves, costs: bool = False) -> list[str]:
    cost = " final cost |" if costs else ""
    lines = [f"| algorithm | seed | budget | final return |{cost} wall-clock s | of which evaluation s |",
             "|---|---|---|---|---|---|" + ("---|" if costs else "")]
    for algo, seeds in curves.items():
        for seed, c in seeds.items():
            final_cost = f" {c['costs'][-1]:.1f} |" if costs else ""
            lines.append(f"| {algo} | {seed} | {c['steps'][-1]:,} | {c['returns'][-1]:.1f} |{final_cost} "
                         f"{_fmt(c['wall'][-1], 0)} | {_fmt(c['eval'][-1], 0)} |")
    return lines


def markdown_report(rows: Sequence[dict[str, Any]], env_id: str, command: str, threshold: float | None = None,
                    report_steps: Sequence[int] | None = None, cost_limit: float | None = None) -> str:
    """The report's markdown: return at budgets, reaching a threshold and SAC's final return, runs; with costs,
    the evaluation cost at the budgets (against ``cost_limit`` when given) and per run."""
    curves = curves_by_algo(rows)
    if not curves:
        return f"# {env_id}: Rehearse against model-free baselines\n\nNo finished runs yet.\n"
    steps = sorted(set(report_steps or [int(max(c["steps"][-1] for c in s.values())) for s in curves.values()]))
    lines = [f"# {env_id}: Rehearse against model-free baselines", "", f"Command: `{command}`", "",
             "Protocol: a separate evaluation environment (`envs.make_env`), deterministic actions, the same "
             "episode seeds for every algorithm; returns are the mean over the evaluation's episodes. "
             "Statistics over seeds: IQM with a 95% bootstrap interval.", "",
             "## Return at fixed budgets", "", *_budget_table(curves, steps), ""]
    costs = has_costs(curves)
    if costs:
        limit = "" if cost_limit is None else f" (Rehearse's cost limit: {cost_limit:g} per 1,000 steps)"
        lines += [f"## Evaluation cost per episode at fixed budgets{limit}", "",
                  *_cost_table(curves, steps, cost_limit), ""]
    if threshold is not None:
        lines += [f"## Reaching a return of {threshold:g}", "", *_reach_table(curves, threshold, f"{threshold:g}"), ""]
    sac = curves.get("sac")
    if sac:
        budget = int(max(c["steps"][-1] for c in sac.values()))
        target = iqm(_at_step(sac, budget))
        lines += [f"## Reaching SAC's IQM return at its budget ({target:.1f} at {budget:,} steps)", "",
                  *_reach_table(curves, target, "it"), ""]
    lines += ["## Runs", "", *_runs_table(curves, costs), ""]
    return "\n".join(lines)


def plot_curves(rows: Sequence[dict[str, Any]], path: Path, title: str, cost_limit: float | None = None) -> None:
    """Return against steps and against wall-clock: mean with a 95% bootstrap band, seeds faint; when the
    environment reports costs, a third panel of evaluation cost against steps, ``cost_limit`` drawn on it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curves = curves_by_algo(rows)
    costs = has_costs(curves)
    fig, axes = plt.subplots(1, 3 if costs else 2, figsize=(18 if costs else 12, 4.5))
    for algo, seeds in curves.items():
        colour = _COLOURS.get(algo)
        for c in seeds.values():
            axes[0].plot(c["steps"], c["returns"], color=colour, alpha=0.2, lw=1)
            axes[1].plot(c["wall"], c["returns"], color=colour, alpha=0.2, lw=1)
            if costs:
                axes[2].plot(c["steps"], c["costs"], color=colour, alpha=0.2, lw=1)
        steps = sorted(set.intersection(*(set(c["steps"].tolist()) for c in seeds.values())))
        if not steps:
            continue
        values = [_at_step(seeds, s) for s in steps]
        mean = np.array([v.mean() for v in values])
        band = np.array([bootstrap_ci(v, np.mean) for v in values])
        wall = np.array([np.nanmean([c["wall"][c["steps"] == s][0] for c in seeds.values()]) for s in steps])
        count = f"{len(seeds)} seed" + ("" if len(seeds) == 1 else "s")
        axes[0].plot(steps, mean, color=colour, lw=2, label=f"{algo} ({count})")
        axes[0].fill_between(steps, band[:, 0], band[:, 1], color=colour, alpha=0.15)
        axes[1].plot(wall, mean, color=colour, lw=2, label=algo)
        if costs:
            axes[2].plot(steps, [_at_step(seeds, s, "costs").mean() for s in steps], color=colour, lw=2, label=algo)
    axes[0].set(xlabel="environment steps", ylabel="evaluation return", title=title)
    axes[1].set(xlabel="wall-clock seconds (evaluation included)", ylabel="evaluation return", xscale="log")
    if costs:
        axes[2].set(xlabel="environment steps", ylabel="evaluation cost per episode")
        if cost_limit is not None:
            axes[2].axhline(cost_limit, color="black", ls="--", lw=1, label=f"cost limit {cost_limit:g}")
            axes[2].legend()
    for ax in axes:
        ax.grid(alpha=0.3)
    axes[0].legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_report(rows: Sequence[dict[str, Any]], out: Path, *, env_id: str, command: str,
                 threshold: float | None = None, report_steps: Sequence[int] | None = None,
                 specs: Sequence[dict[str, Any]] = (), cost_limit: float | None = None) -> None:
    """``report.md``, ``curves.png`` and ``sweep.json`` (the planned runs) under ``out``; ``cost_limit``: drawn on
    the cost curve and counted in the cost table (environments with costs)."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.md").write_text(markdown_report(rows, env_id, command, threshold, report_steps, cost_limit))
    (out / "sweep.json").write_text(json.dumps({"command": command, "runs": list(specs)}, indent=1))
    if rows:
        plot_curves(rows, out / "curves.png", env_id, cost_limit)

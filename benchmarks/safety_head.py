"""The safety head of a trained run judged on transitions it never trained on: recall, precision, calibration.

    python -m benchmarks.safety_head --checkpoint RUN/checkpoints/latest.pt \
        --transitions OTHER_RUN/checkpoints/latest.pt [MORE ...] --out DIR

The agent of ``--checkpoint`` predicts, for every stored transition ``(obs, action, cost)`` of each
``--transitions`` checkpoint's replay buffer (another run on the same task: held out), the probability that
the step is costly, as the run's own evaluations do (``MBRLAgent.predict_safety`` on the one-step plan, the
mean over its particles). Those are judged against the costs the environment reported
(:func:`world_models.safety.safety_metrics`) at the planner's per-step threshold (``budget(1)``, with the
checkpoint's multiplier), at the nominal one (the multiplier at 0) and at 0.5. ``results.json`` holds every
figure; ``results.md`` the table.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from agent.agent import MBRLAgent
from agent.checkpoint import load_checkpoint
from benchmarks.markdown import write_text_atomic
from planners.constraint import CostMultiplier
from world_models.safety import safety_metrics

__all__ = ["judge", "main", "stored_transitions"]

CHUNK = 4096
"""Transitions per ``predict_safety`` call."""


def stored_transitions(payload: dict[str, Any], source: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(obs (n, *obs_shape), actions (n, A), costs (n,))`` of a checkpoint's replay buffer (in stored order)."""
    buffer = payload.get("buffer")
    if not isinstance(buffer, dict) or "costs" not in buffer:
        raise ValueError(f"{source}: the checkpoint holds no replay buffer with costs; pass a run's checkpoint")
    n = int(buffer["size"])
    arrays = [np.asarray(buffer[key][:n]) for key in ("obs", "actions", "costs")]
    return arrays[0], arrays[1].astype(np.float32), arrays[2].astype(np.float64)


def judge(agent: MBRLAgent, obs: np.ndarray, actions: np.ndarray, costs: np.ndarray,
          thresholds: dict[str, float]) -> dict[str, Any]:
    """The agent's predicted probability of cost on each transition, judged at each named threshold."""
    probability = np.concatenate([
        agent.predict_safety(obs[i:i + CHUNK], actions[i:i + CHUNK, None, :]).probability[:, 0]
        for i in range(0, len(costs), CHUNK)
    ])
    probability = np.clip(probability, 0.0, 1.0)
    out: dict[str, Any] = {"transitions": int(len(costs)), "costly": int((costs > 0).sum())}
    for name, threshold in thresholds.items():
        metrics = safety_metrics(probability, costs, threshold=threshold)
        out[name] = {"threshold": threshold, "recall": metrics.recall, "precision": metrics.precision,
                     "brier": metrics.brier, "calibration_error": metrics.calibration_error}
    return out


def _thresholds(payload: dict[str, Any]) -> dict[str, float]:
    """The planner's per-step threshold with the checkpoint's multiplier, the nominal one and 0.5."""
    planner = payload["config"]["planner"]
    limit = planner.get("cost_limit")
    if limit is None:
        return {"half": 0.5}
    state = payload.get("cost_multiplier") or {"value": 0.0}
    floor = float(planner.get("cost_multiplier_min", 0.0))
    trained = CostMultiplier(float(limit), min_value=floor, value=float(state["value"]))
    return {"planner": trained.budget(1), "nominal": CostMultiplier(float(limit)).budget(1), "half": 0.5}


def _markdown(rows: list[dict[str, Any]], command: str) -> str:
    lines = [f"`{command}`", "", "| transitions from | transitions | costly | threshold | recall | precision | "
             "Brier | calibration error |", "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for row in rows:
        for name in ("planner", "nominal", "half"):
            if name not in row:
                continue
            m = row[name]
            lines.append(f"| {row['source']} | {row['transitions']} | {row['costly']} | {name} {m['threshold']:.4f} | "
                         f"{m['recall']:.3f} | {m['precision']:.3f} | {m['brier']:.4f} | "
                         f"{m['calibration_error']:.4f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", type=Path, required=True, help="the run whose safety head is judged")
    parser.add_argument("--transitions", type=Path, nargs="+", required=True,
                        help="checkpoints of other runs on the same task, whose stored transitions are the test set")
    parser.add_argument("--env", default=None,
                        help="the task, where the checkpoint names one as module:Class (not imported unless named)")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    command = "python -m benchmarks.safety_head " + " ".join(sys.argv[1:] if argv is None else argv)
    payload = load_checkpoint(args.checkpoint)
    agent = MBRLAgent.from_checkpoint(payload, args.checkpoint, args.env, run_dir=Path(tempfile.mkdtemp()))
    thresholds = _thresholds(payload)
    del payload["buffer"]  # only the other runs' transitions are judged
    rows = []
    args.out.mkdir(parents=True, exist_ok=True)
    for source in args.transitions:
        other = load_checkpoint(source)
        if other["config"]["env_id"] != agent.config.env_id:
            raise ValueError(f"{source} is a run on {other['config']['env_id']}, not {agent.config.env_id}")
        row = {"source": str(source), **judge(agent, *stored_transitions(other, source), thresholds)}
        rows.append(row)
        print(json.dumps(row), flush=True)
        result = {"checkpoint": str(args.checkpoint), "command": command, "rows": rows}
        write_text_atomic(args.out / "results.json", json.dumps(result, indent=1) + "\n")
        write_text_atomic(args.out / "results.md", _markdown(rows, command))


if __name__ == "__main__":
    main()

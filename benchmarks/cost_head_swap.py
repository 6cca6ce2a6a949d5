"""One checkpoint, its cost head swapped: how the safety head alone changes an evaluation's return and cost.

    python -m benchmarks.cost_head_swap --checkpoint RUN/checkpoints/latest.pt --heads network linear:0 linear:2 \
        --out DIR

The agent of a checkpoint of :mod:`benchmarks.llm_safety_veto` (its world model, terminal value and replay
buffer) plays ``--episodes`` evaluation episodes (``MBRLAgent.evaluate``, seed 0) with the same unsafe
:class:`~benchmarks.llm_safety_veto.FastestProposer`, once per head:

- ``network``: the checkpoint's own cost head, unchanged;
- ``linear:W``: ``robotics.cost_head`` linear with ``robotics.costly_weight`` W, the new head trained on the
  checkpoint's buffer (``--head-steps`` AdamW steps of 256 transitions per member, learning rate 1e-3, the
  rest of the model frozen; seed 0), everything else loaded from the checkpoint.

Every arm plans with the same dynamics, values and data, so a difference in cost comes from the head.
``results.json`` holds each arm's per-episode returns and costs; ``results.md`` the table.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from agent.agent import MBRLAgent
from agent.checkpoint import load_checkpoint
from agent.config import config_from_dict
from benchmarks.llm_safety_veto import FastestProposer
from benchmarks.markdown import write_text_atomic
from envs import env_shapes, make_env
from world_models.training import rare_event_bce

__all__ = ["main", "parse_head", "run_arm"]


def parse_head(spec: str) -> tuple[str, float]:
    """``network`` or ``linear:W`` -> ``(cost_head, costly_weight)``."""
    head, _, weight = spec.partition(":")
    if head not in ("network", "linear") or (head == "network" and weight):
        raise argparse.ArgumentTypeError(f"a head is 'network' or 'linear:W' (W >= 0, the costly weight), got {spec!r}")
    try:
        value = float(weight) if weight else 0.0
    except ValueError:
        raise argparse.ArgumentTypeError(f"the weight in {spec!r} is not a number") from None
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"the weight in {spec!r} must be >= 0")
    return head, value


def _train_linear_head(agent: MBRLAgent, buffer: dict[str, Any], weight: float, steps: int) -> float:
    """Fit the agent's linear cost head on the checkpoint's buffer (the rest frozen); the last loss."""
    model = agent.model
    n = int(buffer["size"])
    obs, next_obs = buffer["obs"][:n].float(), buffer["next_obs"][:n].float()
    costly = buffer["costs"][:n] > 0
    optimizer = torch.optim.AdamW(model.cost_net.parameters(), lr=1e-3, weight_decay=1e-5)
    generator = torch.Generator().manual_seed(0)
    loss = torch.zeros(())
    for _ in range(steps):
        idx = torch.randint(0, n, (model.ensemble_size, 256), generator=generator)
        loss = rare_event_bce(model.linear_cost_logit(obs[idx], next_obs[idx]), costly[idx], weight)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return float(loss.item())


def run_arm(payload: dict[str, Any], checkpoint: Path, head: str, weight: float, head_steps: int,
            episodes: int) -> dict[str, Any]:
    """One arm: the agent of ``payload`` (read from ``checkpoint``) with ``head`` (``weight``), evaluated with
    the unsafe proposer. ``payload`` is only read: every arm starts from the same checkpoint."""
    config = config_from_dict(payload["config"])
    config.robotics.cost_head, config.robotics.costly_weight = head, weight
    probe = make_env(config.env_id, check=False)
    proposer = FastestProposer(env_shapes(probe)[1], config.planner.discount, seed=0)
    probe.close()
    agent = MBRLAgent(config.env_id, config, run_dir=Path(tempfile.mkdtemp()), proposer=proposer)
    result = agent.model.load_state_dict(payload["model"], strict=False)
    new = [key for key in result.missing_keys if not key.startswith("cost_net.")]
    if new or result.unexpected_keys:
        raise ValueError(f"{checkpoint}: its model does not match beyond the cost head (missing {new}, "
                         f"unexpected {result.unexpected_keys})")
    started = time.perf_counter()
    last_loss = _train_linear_head(agent, payload["buffer"], weight, head_steps) if head == "linear" else None
    head_s = time.perf_counter() - started
    started = time.perf_counter()
    evaluation = agent.evaluate(n_episodes=episodes, seed=0)
    return {"head": head, "costly_weight": weight, "head_steps": head_steps if head == "linear" else 0,
            "head_last_loss": last_loss, "head_seconds": round(head_s, 1),
            "returns": evaluation.returns.round(1).tolist(), "costs": evaluation.costs.tolist(),
            "mean_return": float(evaluation.returns.mean()), "mean_cost": float(evaluation.costs.mean()),
            "eval_seconds": round(time.perf_counter() - started, 1)}


def _markdown(rows: list[dict[str, Any]], command: str, limit: float | None) -> str:
    lines = [f"`{command}`", "", "| head | costly weight | mean return | mean cost | episodes over the limit | costs |",
             "| --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        over = "-" if limit is None else str(sum(c > limit for c in r["costs"]))
        lines.append(f"| {r['head']} | {r['costly_weight']:g} | {r['mean_return']:.1f} | {r['mean_cost']:.1f} | "
                     f"{over} of {len(r['costs'])} | {', '.join(f'{c:.0f}' for c in r['costs'])} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", type=Path, required=True)
    parser.add_argument("--heads", nargs="+", type=parse_head, default=[("network", 0.0), ("linear", 2.0)])
    parser.add_argument("--head-steps", type=int, default=4000)
    parser.add_argument("--episodes", type=int, default=10)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    command = "python -m benchmarks.cost_head_swap " + " ".join(argv if argv is not None else
                                                                 __import__("sys").argv[1:])
    args.out.mkdir(parents=True, exist_ok=True)
    payload = load_checkpoint(args.checkpoint)
    limit = payload["config"]["planner"].get("cost_limit")
    rows = []
    for head, weight in args.heads:
        rows.append(run_arm(payload, args.checkpoint, head, weight, args.head_steps, args.episodes))
        print(json.dumps(rows[-1]), flush=True)
        write_text_atomic(args.out / "results.json", json.dumps(rows, indent=1) + "\n")
        write_text_atomic(args.out / "results.md", _markdown(rows, command, limit))


if __name__ == "__main__":
    main()

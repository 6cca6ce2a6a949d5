"""Goals given only in words: a language model as judge grounds a phrase, the planner drives the mass there.

    python -m benchmarks.llm_language_goals --judges scripted bundled --out benchmarks/results/llm/language_goals

Task: ``rehearse/GoalPointMass-v0`` (``envs.toy.GoalPointMassEnv``), a mass on the plane ``[-1, 1]^2`` that starts
at rest at the centre and is paid ``-|p - g|^2`` for a goal ``g`` it does not observe. Each of :data:`PHRASINGS`'
20 fixed phrasings ("the top-left corner", "just right of the centre", ...) names one goal of the 5 x 5 grid
:data:`GRID` (spacing 0.4). One 50-step episode per phrasing and method; success: the final position within
:data:`SUCCESS_RADIUS` (half the grid spacing) of the true goal.

Methods, all planning with the same CEM (:data:`SAMPLING`, horizon 15) through the task's true dynamics
(:class:`TrueGoalModel`), so that only what each knows of the goal differs:

- ``true_goal``: the planner is given the goal's coordinates (the agent given the true goal);
- ``centre``: no goal at all, it holds the start (what words that are not understood leave);
- ``judge:<name>``: at the episode's start the judge role (``LLMProposer.rate``, the prompt of
  ``language_models.prompts.judge_messages``: the goal phrase and the 25 grid positions at rest, described
  with the task's names and ranges) rates each grid position 0..10 against the phrase; the planner drives to
  the mean of the best-rated positions (the centre when the call fails). Judges: ``scripted`` (a loopback server
  that rates by the true distance: the mechanism's upper bound), ``bundled`` (SmolLM2-135M-Instruct, started
  here), ``server`` (any OpenAI-compatible server at ``--url``, model ``--model``) or ``random`` (uniform
  ratings: chance).

Writes ``results.json`` and ``results.md`` into ``--out`` after the two baselines and after each judge (atomically).
"""

from __future__ import annotations

import argparse
import json
import platform
import re
import sys
import time
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch

import envs  # noqa: F401  (registers rehearse/GoalPointMass-v0)
from benchmarks.markdown import write_text_atomic
from benchmarks.stats import wilson_interval
from envs import GOAL_POINT_MASS_ID
from language_models.bundled import BundledServer, check_bundled
from language_models.config import LLMConfig
from language_models.prompts import TaskSpec
from language_models.proposer import LLMProposer
from language_models.scripted import ScriptedServer, completion
from planners import SamplingConfig, WarmStart, make_objective, make_planner
from world_models.base import Rollout

PHRASINGS: dict[str, tuple[float, float]] = {
    "the top-left corner": (-0.8, 0.8),
    "the top-right corner": (0.8, 0.8),
    "the bottom-left corner": (-0.8, -0.8),
    "the bottom-right corner": (0.8, -0.8),
    "the centre": (0.0, 0.0),
    "just right of the centre": (0.4, 0.0),
    "just left of the centre": (-0.4, 0.0),
    "just above the centre": (0.0, 0.4),
    "just below the centre": (0.0, -0.4),
    "the middle of the top edge": (0.0, 0.8),
    "the middle of the bottom edge": (0.0, -0.8),
    "the middle of the left edge": (-0.8, 0.0),
    "the middle of the right edge": (0.8, 0.0),
    "halfway between the centre and the top-right corner": (0.4, 0.4),
    "halfway between the centre and the bottom-left corner": (-0.4, -0.4),
    "a little up and to the left of the centre": (-0.4, 0.4),
    "a little down and to the right of the centre": (0.4, -0.4),
    "the right side, a little above the middle": (0.8, 0.4),
    "the left side, a little below the middle": (-0.8, -0.4),
    "near the top, slightly right of the middle": (0.4, 0.8),
}
"""The 20 goal phrasings and the grid point each names."""

GRID = np.array([(x, y) for y in (0.8, 0.4, 0.0, -0.4, -0.8) for x in (-0.8, -0.4, 0.0, 0.4, 0.8)])
"""``(25, 2)`` positions the judge rates, row by row from the top-left."""
SUCCESS_RADIUS = 0.2
HORIZON = 15
SAMPLING = SamplingConfig(num_candidates=128, iterations=4, num_elites=16)
JUDGES = ("scripted", "bundled", "server", "random")


class TrueGoalModel:
    """``GoalPointMassEnv``'s dynamics and reward towards ``target (2,)``, as a world model the planners read:
    latents are observations ``(x, y, vx, vy)``; ``imagine(z0 (B, 4), actions (H, B, 2)) -> Rollout``."""

    def __init__(self, target: np.ndarray) -> None:
        self.target = torch.as_tensor(np.asarray(target, dtype=np.float32))

    def imagine(self, z0: torch.Tensor, actions: torch.Tensor) -> Rollout:
        push = actions.clamp(-1.0, 1.0)
        position, velocity = z0[:, :2], z0[:, 2:]
        latents, rewards = [z0], []
        for a in push:  # (B, 2) per step
            velocity = (velocity + 0.1 * a).clamp(-2.0, 2.0)
            position = (position + 0.1 * velocity).clamp(-1.0, 1.0)
            latents.append(torch.cat([position, velocity], dim=-1))
            rewards.append(-((position - self.target) ** 2).sum(-1) - 0.01 * (a**2).sum(-1))
        reward = torch.stack(rewards)  # (H, B)
        return Rollout(rewards=reward, costs=torch.zeros_like(reward), continuation=torch.ones_like(reward),
                       latents=torch.stack(latents), disagreement=torch.zeros_like(reward), terminal_value=None)


def drive(target: np.ndarray, goal: np.ndarray, seed: int = 0) -> dict[str, float]:
    """One episode planning towards ``target``, paid for the true ``goal``: final distance, success, return."""
    env = gym.make(GOAL_POINT_MASS_ID)
    obs, _ = env.reset(seed=seed, options={"goal": tuple(goal)})
    model = TrueGoalModel(target)
    planner = make_planner("cem", SAMPLING, 2, torch.Generator().manual_seed(seed))
    warm = WarmStart(HORIZON, 2, torch.device("cpu"))
    total, done = 0.0, False
    while not done:
        z0 = torch.as_tensor(obs, dtype=torch.float32)
        objective = make_objective(model.imagine, z0, particles=1, discount=0.99, cost_weight=0.0)
        plan = planner.plan(objective, warm.init())
        warm.store(plan)
        obs, reward, terminated, truncated, _ = env.step(plan[0].numpy())
        total += float(reward)
        done = terminated or truncated
    distance = float(np.linalg.norm(obs[:2] - goal))
    return {"final_distance": distance, "success": distance <= SUCCESS_RADIUS, "return": total}


def grounded_target(ratings: np.ndarray | None) -> np.ndarray:
    """The mean of the best-rated grid positions; the centre when there are no ratings."""
    if ratings is None:
        return np.zeros(2)
    return GRID[ratings == ratings.max()].mean(axis=0)


_POSITION = re.compile(r"x position[^=]*= (-?[\d.eE+-]+).*?\n- y position[^=]*= (-?[\d.eE+-]+)")


def distance_rating_script(body: dict[str, Any]) -> tuple[int, bytes, float]:
    """A judge that knows the phrasings: rates each state ``round(10 - 10 d / 2.3)``, ``d`` its distance from the
    phrase's grid point (read from the prompt's goal and states)."""
    text = body["messages"][-1]["content"]
    phrase = text.split("Goal: ", 1)[1].split(".\n", 1)[0]
    goal = np.asarray(PHRASINGS[phrase])
    states = np.array([[float(x), float(y)] for x, y in _POSITION.findall(text)])
    ratings = np.rint(10.0 - 10.0 * np.linalg.norm(states - goal, axis=1) / 2.3).clip(0, 10).astype(int)
    return 200, completion(json.dumps({"ratings": ratings.tolist()})), 0.0


def judge_ratings(url: str, phrase: str, style: str,
                  model: str = "") -> tuple[np.ndarray | None, float, dict[str, int]]:
    """The judge's ratings of the grid for ``phrase`` (``None`` when the call failed), the call's seconds, counters."""
    env = gym.make(GOAL_POINT_MASS_ID)
    low, high = env.observation_space.low, env.observation_space.high  # type: ignore[attr-defined]
    spec = TaskSpec(GOAL_POINT_MASS_ID, low.astype(np.float64), high.astype(np.float64), -np.ones(2), np.ones(2),
                    goal=phrase)
    config = LLMConfig(base_url=url, model=model, roles="proposer,judge", goal=phrase, timeout_s=300.0,
                       wait_s=600.0, response_format=style)
    judge = LLMProposer(config, spec)
    states = np.concatenate([GRID, np.zeros_like(GRID)], axis=1)  # at rest
    start = time.perf_counter()
    ratings = judge.rate(states)
    seconds = time.perf_counter() - start
    counts = dict(judge.counts)
    judge.close()
    return ratings, seconds, counts


def run_judge(name: str, server_url: str | None, seed: int, model: str = "") -> list[dict[str, Any]]:
    """Every phrasing through judge ``name``: its ratings, the target they give, the episode."""
    rows = []
    rng = np.random.default_rng(seed)
    for phrase, goal in PHRASINGS.items():
        if name == "random":
            ratings: np.ndarray | None = rng.integers(0, 11, len(GRID))
            seconds, counts = 0.0, dict[str, int]()
        else:
            assert server_url is not None
            style = "json_object" if name == "bundled" else "json_schema"
            ratings, seconds, counts = judge_ratings(server_url, phrase, style, model)
        target = grounded_target(ratings)
        episode = drive(target, np.asarray(goal), seed)
        rows.append({"phrase": phrase, "goal": list(goal), "ratings": None if ratings is None else ratings.tolist(),
                     "target": target.round(3).tolist(), "judge_seconds": round(seconds, 2),
                     "calls_failed": counts.get("calls_failed", 0),
                     "replies_rejected": counts.get("replies_rejected", 0), **episode})
        print(f"{name:9s} {phrase:55s} target {np.round(target, 2)} distance {episode['final_distance']:.2f}",
              flush=True)
    return rows


def summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Success count and rate with its 95% Wilson interval, mean final distance, mean return."""
    wins = sum(bool(r["success"]) for r in rows)
    low, high = wilson_interval(wins, len(rows))
    return {"successes": wins, "episodes": len(rows), "success_rate": wins / len(rows),
            "success_rate_95ci": [round(low, 3), round(high, 3)],
            "mean_final_distance": float(np.mean([r["final_distance"] for r in rows])),
            "mean_return": float(np.mean([r["return"] for r in rows])),
            "target_on_goal": sum(np.allclose(r["target"], r["goal"], atol=1e-6) for r in rows)}


def report(results: dict[str, Any]) -> list[str]:
    lines = ["# Goals in words: GoalPointMass-v0, 20 phrasings", "", f"`{results['command']}`", "",
             f"{results['machine']}; {results['date']}.", "",
             "| method | successes (of 20) | success rate [95% CI] | goal point found | mean final distance | "
             "mean return | judge seconds per call (median) |", "|---|---|---|---|---|---|---|"]
    for name, arm in results["methods"].items():
        s = arm["summary"]
        seconds = [r.get("judge_seconds", 0.0) for r in arm["episodes"]]
        lines.append(f"| {name} | {s['successes']} | {s['success_rate']:.2f} [{s['success_rate_95ci'][0]:.2f}, "
                     f"{s['success_rate_95ci'][1]:.2f}] | {s['target_on_goal']} | {s['mean_final_distance']:.3f} | "
                     f"{s['mean_return']:.1f} | {np.median(seconds):.1f} |")
    for name, arm in results["methods"].items():
        if not name.startswith("judge:"):
            continue
        lines += ["", f"## {name}", "", "| phrase | true goal | ratings' target | final distance | success |",
                  "|---|---|---|---|---|"]
        lines += [f"| {r['phrase']} | {tuple(r['goal'])} | {tuple(r['target'])} | {r['final_distance']:.2f} | "
                  f"{'yes' if r['success'] else 'no'} |" for r in arm["episodes"]]
    return lines


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--judges", nargs="*", choices=JUDGES, default=list(JUDGES))
    parser.add_argument("--url", default="", help="the server judge's OpenAI-compatible base URL (.../v1)")
    parser.add_argument("--model", default="", help="the model name sent to --url")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    if "server" in args.judges and not args.url.startswith(("http://", "https://")):
        parser.error(f"--judges server needs --url http(s)://HOST:PORT/v1, got {args.url!r}")
    torch.manual_seed(args.seed)
    results: dict[str, Any] = {
        "command": " ".join(["python -m benchmarks.llm_language_goals", *(sys.argv[1:] if argv is None else argv)]),
        "machine": f"{platform.node()}, {platform.machine()}, CPU only",
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "task": GOAL_POINT_MASS_ID,
        "success_radius": SUCCESS_RADIUS, "methods": {}}
    for name, target_of in (("true_goal", None), ("centre", np.zeros(2))):
        rows = []
        for phrase, goal in PHRASINGS.items():
            target = np.asarray(goal) if target_of is None else target_of
            rows.append({"phrase": phrase, "goal": list(goal), "target": target.round(3).tolist(),
                         **drive(target, np.asarray(goal), args.seed)})
        results["methods"][name] = {"summary": summary(rows), "episodes": rows}
    if args.out is not None:
        write(results, args.out)
    for name in args.judges:
        server: ScriptedServer | BundledServer | None = None
        try:
            if name == "scripted":
                server = ScriptedServer(distance_rating_script)
            elif name == "bundled":
                server = BundledServer(check_bundled(), 300.0)
                server.start()
            url = server.base_url if isinstance(server, BundledServer) else server.url if server else args.url
            rows = run_judge(name, url or None, args.seed, args.model)
        finally:
            if isinstance(server, BundledServer):
                server.stop()
            elif server is not None:
                server.close()
        results["methods"][f"judge:{name}"] = {"summary": summary(rows), "episodes": rows}
        if args.out is not None:
            write(results, args.out)  # after each judge
    print("\n".join(report(results)))


def write(results: dict[str, Any], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out / "results.json", json.dumps(results, indent=1, default=float) + "\n")
    write_text_atomic(out / "results.md", "\n".join(report(results)) + "\n")


if __name__ == "__main__":
    main()

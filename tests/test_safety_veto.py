"""The safety veto (issue 36, must-show 3): proposals the cost constraint rejects are never executed while a
candidate fits, and the agent's veto counts (agent/veto.py) add up, through benchmarks/llm_safety_veto.py."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from agent.veto import VetoCounter, VetoCounts, attribute_costs
from benchmarks import llm_safety_veto
from planners import CEM, SamplingConfig, make_objective
from world_models.base import Rollout

HORIZON = 8
BUDGET = HORIZON * 25.0 / 1000  # the planner's budget for a cost limit of 25


def _speed_imagine(z0: torch.Tensor, actions: torch.Tensor) -> Rollout:
    """A scripted model: reward = the action, a step is costly when its action is over 0.5."""
    horizon, batch, _ = actions.shape
    return Rollout(rewards=actions[..., 0], costs=(actions[..., 0] > 0.5).float(),
                   continuation=torch.ones(horizon, batch), latents=torch.zeros(horizon + 1, batch, 1),
                   disagreement=torch.zeros(horizon, batch))


@pytest.mark.parametrize("batch", [1, 3])
def test_the_fastest_proposals_are_rejected_and_never_executed(batch: int) -> None:
    z0 = torch.zeros(batch, 1)
    proposer = llm_safety_veto.FastestProposer(1, discount=1.0, seed=0)
    for start in (True, False, False, False):  # warm-started: each call refines the last plan
        context = {"z0": z0, "imagine": _speed_imagine, "particles": 2, "episode_start": start}
        proposals = proposer.propose(context, 4, HORIZON)  # (B, 4, H, 1)
    assert proposals.shape == (batch, 4, HORIZON, 1)
    assert (proposals[:, 0, :4] > 0.5).all()  # unconstrained, the fastest plan is over the limit
    objective = make_objective(_speed_imagine, z0, particles=2, discount=1.0, cost_weight=0.0, cost_budget=BUDGET)
    planner = CEM(SamplingConfig(num_candidates=32, iterations=3, num_elites=4), 1, torch.Generator().manual_seed(0))
    plan = planner.plan(objective, torch.zeros(batch, HORIZON, 1), proposals)
    counter = VetoCounter()
    counter.judge(objective, _speed_imagine, z0, 2, 0.025, proposals, plan, planner.last_stats, training=False)
    counts = counter.eval
    assert (counts.plans, counts.proposals, counts.proposals_rejected) == (batch, 4 * batch, 4 * batch)
    assert counts.proposal_best == counts.proposal_executed == counts.rejected_executed == 0
    assert counts.flagged == counts.flagged_prob == 0 and (plan <= 0.5).all()
    assert counts.proposal_cost / counts.proposals > BUDGET and counter.eval_flags[0].tolist() == [False] * batch


def test_with_no_candidate_inside_the_budget_the_executed_plan_is_flagged() -> None:
    z0 = torch.zeros(1, 1)
    objective = make_objective(_speed_imagine, z0, particles=1, discount=1.0, cost_weight=0.0, cost_budget=0.0)
    unsafe = torch.ones(1, HORIZON, 1)
    counter = VetoCounter()
    counter.judge(objective, _speed_imagine, z0, 1, 0.025, unsafe[:, None], unsafe, {"proposal_best": 1.0}, True)
    assert (counter.train.flagged, counter.train.rejected_executed, counter.train.proposal_best) == (1, 1, 1.0)
    counter.add_step_cost(1.0)
    counter.add_step_cost(5.0)  # a step without a judged plan (a random one) is not counted
    assert (counter.train.flagged_cost, counter.train.steps_cost, counter.train.steps_known) == (1.0, 1.0, 1)
    restored = VetoCounter()
    restored.load_state_dict(counter.state_dict())
    assert restored.train == counter.train


def test_attribute_costs_follows_the_running_episodes() -> None:
    # lockstep: env 1 ends after 2 steps, so the third call has rows for envs 0 and 2 only
    flags = [np.array([True, False, False]), np.array([False, True, True]), np.array([True, False])]
    costs = [np.array([1.0, 0.0, 2.0]), np.array([0.0, 3.0]), np.array([0.0, 4.0, 5.0])]
    assert attribute_costs(flags, costs) == (1.0 + 3.0 + 4.0 + 2.0, 15.0, 8)
    assert attribute_costs(flags[:2], costs) is None  # fewer calls than steps: not attributed
    assert np.isnan(VetoCounts().scalars("x/")["x/proposal_mean_cost"])


def test_benchmark_counts_add_up_and_resume(tmp_path: Path) -> None:
    """The benchmark's mechanism on a tiny budget: a toy task whose fastest plan is unsafe."""
    args = ["--env", "tests.dummy_envs:SpeedEnv", "--preset", "debug", "--seeds", "0", "--total-timesteps", "100",
            "--proposals", "3", "--check-episodes", "1", "--out", str(tmp_path / "out"),
            "--run-root", str(tmp_path / "runs"), "--set", "train.eval_freq=100", "train.eval_episodes=2"]
    llm_safety_veto.main(args)
    rows = json.loads((tmp_path / "out" / "results.json").read_text())
    (row,) = rows
    planned = 100 - 50  # the debug preset's learning_starts: the steps before are random
    train = row["train"]
    assert (train["plans"], train["proposals"], train["steps_known"]) == (planned, 3 * planned, planned)
    assert train["proposals_rejected"] <= train["proposals"]
    assert train["rejected_executed"] <= train["flagged"] <= train["plans"]
    assert train["flagged_cost"] <= train["steps_cost"] <= row["train_cumulative_cost"]
    (evaluation,) = row["evaluations"]
    assert (evaluation["plans"], evaluation["proposals"], evaluation["steps_known"]) == (100, 300, 100)
    assert evaluation["steps_cost"] == pytest.approx(sum(evaluation["costs"]))
    assert evaluation["flagged_cost"] <= evaluation["steps_cost"]
    assert evaluation["rejected_executed"] <= evaluation["flagged"]
    assert len(row["unguarded"]["costs"]) == 1 and (tmp_path / "out" / "seed0" / "progress.csv").exists()
    assert "| 0 | eval 100 |" in (tmp_path / "out" / "results.md").read_text()
    llm_safety_veto.main(args)  # resumed: seed 0 is done, nothing is run again
    assert json.loads((tmp_path / "out" / "results.json").read_text()) == rows

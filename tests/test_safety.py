"""Safety: the velocity-constrained tasks, constrained planning, the cost limit's multiplier, predict_safety,
the safety head's metrics and the bad inputs around costs."""

from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env

from agent import MBRLAgent, resolve_config
from agent.config import Config, ConfigError, validate
from envs import SAFETY_VELOCITY_IDS, EnvironmentSpecError, NonFiniteError, make_env
from envs.safety import VELOCITY_THRESHOLDS, velocity_cost
from planners import CEM, SamplingConfig, make_objective, make_planner
from planners.base import CostedObjective, Planner
from planners.constraint import CostMultiplier, cost_rate
from planners.sampling import constrained_merit
from world_models.base import Rollout
from world_models.safety import safety_metrics

ECHO = "tests.dummy_envs:EchoEnv"
PLANNERS = ("cem", "mppi", "random")


# ---------------------------------------------------------------- the velocity tasks


def test_velocity_cost_threshold() -> None:
    assert velocity_cost({"x_velocity": 3.2}, 3.2096) == 0.0
    assert velocity_cost({"x_velocity": 3.21}, 3.2096) == 1.0
    assert velocity_cost({"x_velocity": -9.0}, 3.2096) == 0.0  # only forward speed counts
    planar = {"x_velocity": 2.0, "y_velocity": 2.0}  # speed 2.83 > 2.6222 although each axis is below it
    assert velocity_cost(planar, 2.6222, planar=True) == 1.0
    assert velocity_cost(planar, 2.6222) == 0.0


@pytest.mark.parametrize("env_id", list(SAFETY_VELOCITY_IDS))
def test_safety_task_is_the_v5_task_with_costs(env_id: str) -> None:
    task = env_id.removeprefix("rehearse/Safety").removesuffix("Velocity-v1")
    safe, plain = gym.make(env_id), gym.make(f"{task}-v5")
    assert safe.spec is not None and safe.spec.max_episode_steps == 1000
    obs_a, _ = safe.reset(seed=3)
    obs_b, _ = plain.reset(seed=3)
    np.testing.assert_array_equal(obs_a, obs_b)
    rng = np.random.default_rng(0)
    for _ in range(30):
        action = rng.uniform(-1, 1, safe.action_space.shape).astype(np.float32)
        obs_a, reward_a, term_a, _, info = safe.step(action)
        obs_b, reward_b, term_b, _, info_b = plain.step(action)
        np.testing.assert_array_equal(obs_a, obs_b)
        assert reward_a == reward_b and term_a == term_b
        speed = math.hypot(info_b["x_velocity"], info_b["y_velocity"]) if task == "Ant" else info_b["x_velocity"]
        assert info["cost"] == (1.0 if speed > VELOCITY_THRESHOLDS[task] else 0.0)
        if term_a:
            break
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*infinity")  # the v5 tasks' own unbounded observations
        check_env(gym.make(env_id).unwrapped, skip_render_check=True)  # Gymnasium's checker passes


def test_safety_task_reports_costs_through_make_env() -> None:
    env = make_env("rehearse/SafetyHopperVelocity-v1", seed=0)
    env.reset(seed=0)
    costs = [env.step(np.ones(3, np.float32))[4]["cost"] for _ in range(20)]
    assert set(costs) <= {0.0, 1.0} and all(isinstance(c, float) for c in costs)
    assert sum(costs) > 0  # full throttle is over Hopper's 0.7402 m/s


# ---------------------------------------------------------------- constrained selection


def test_constrained_merit_prefers_feasible_then_least_cost() -> None:
    scores = torch.tensor([[5.0, 1.0, 3.0, -torch.inf], [5.0, 1.0, 3.0, 2.0]])
    costs = torch.tensor([[9.0, 0.0, 0.5, 0.0], [9.0, 8.0, 7.0, torch.nan]])
    merit, feasible = constrained_merit(scores, costs, torch.tensor([1.0, 1.0]))
    assert feasible.tolist() == [[False, True, True, False], [False] * 4]
    assert merit[0].tolist() == [-math.inf, 1.0, 3.0, -math.inf]  # feasible ones by score
    assert merit[1].tolist() == [-9.0, -8.0, -7.0, -math.inf]  # none fits: least cost first, NaN cost last


def _scripted_imagine(z0: torch.Tensor, actions: torch.Tensor) -> Rollout:
    """A scripted model: reward = the action, a step is costly when its action is over 0.5."""
    horizon, batch, _ = actions.shape
    return Rollout(rewards=actions[..., 0], costs=(actions[..., 0] > 0.5).float(),
                   continuation=torch.ones(horizon, batch), latents=torch.zeros(horizon + 1, batch, 1),
                   disagreement=torch.zeros(horizon, batch))


def _planner(name: str, init_std: float = 0.3) -> Planner:
    config = SamplingConfig(num_candidates=32, num_elites=4, iterations=3, init_std=init_std)
    return make_planner(name, config, 1, torch.Generator().manual_seed(0))


@pytest.mark.parametrize("name", list(PLANNERS))
def test_planner_picks_the_safe_plan_over_the_best_unsafe_proposal(name: str) -> None:
    """Issue 35, "must show" 5: the best-return plan (a proposal) is unsafe; the safe one is returned."""
    horizon = 4
    unsafe, safe = torch.full((horizon, 1), 1.0), torch.full((horizon, 1), 0.45)
    proposals = torch.stack([unsafe, safe])  # (2, H, 1)
    init = torch.full((horizon, 1), -1.0)  # samples start far from both
    z0 = torch.zeros(1)
    plain = make_objective(_scripted_imagine, z0, particles=2, discount=1.0, cost_weight=0.0)
    costed = make_objective(_scripted_imagine, z0, particles=2, discount=1.0, cost_weight=0.0, cost_budget=0.5)
    assert isinstance(costed, CostedObjective) and not isinstance(plain, CostedObjective)
    unconstrained = _planner(name, init_std=0.01).plan(plain, init, proposals)
    assert unconstrained.max() > 0.5  # without the budget the unsafe proposal wins
    plan = _planner(name, init_std=0.01).plan(costed, init, proposals)
    _, cost = costed.score_and_cost(plan[None])
    assert float(cost) <= 0.5 and plan.max() <= 0.5
    if name == "random":
        torch.testing.assert_close(plan, safe, rtol=0, atol=0)


@pytest.mark.parametrize("name", list(PLANNERS))
def test_planner_picks_the_least_cost_plan_when_none_is_safe(name: str) -> None:
    horizon = 4
    costly, cheaper = torch.full((horizon, 1), 1.0), torch.full((horizon, 1), 0.6)
    init = torch.full((horizon, 1), 0.9)
    proposals = torch.stack([costly, cheaper])

    def imagine(z0: torch.Tensor, actions: torch.Tensor) -> Rollout:  # every step costs, more for larger actions
        rollout = _scripted_imagine(z0, actions)
        return rollout._replace(costs=(actions[..., 0] + 1.0) / 2.0 + 0.5)

    objective = make_objective(imagine, torch.zeros(1), particles=1, discount=1.0, cost_weight=0.0, cost_budget=0.1)
    plan = _planner(name, init_std=0.01).plan(objective, init, proposals)
    _, plan_cost = objective.score_and_cost(plan[None])  # type: ignore[attr-defined]
    _, proposal_costs = objective.score_and_cost(proposals)  # type: ignore[attr-defined]
    assert float(plan_cost) <= float(proposal_costs.min()) + 1e-6  # least cost, not the best return (1.0)
    if name == "random":
        torch.testing.assert_close(plan, cheaper, rtol=0, atol=0)


@pytest.mark.parametrize("name", list(PLANNERS))
def test_constrained_batch_of_one_is_bit_identical(name: str) -> None:
    init = torch.zeros(5, 1)
    objective = make_objective(_scripted_imagine, torch.zeros(1, 1), particles=2, discount=0.9, cost_weight=0.5,
                               cost_budget=torch.tensor([1.0]))
    single = _planner(name).plan(objective, init)
    batched = _planner(name).plan(objective, init[None])
    assert torch.equal(single, batched[0])
    planner = CEM(SamplingConfig(num_candidates=32, num_elites=4), 1, torch.Generator().manual_seed(0))
    planner.plan(objective, init)
    assert 0.0 <= planner.last_stats["feasible_best"] <= 1.0


def test_constrained_batched_problems_have_their_own_budgets() -> None:
    init = torch.zeros(2, 4, 1)
    objective = make_objective(_scripted_imagine, torch.zeros(2, 1), particles=2, discount=1.0, cost_weight=0.0,
                               cost_budget=torch.tensor([0.0, 100.0]))
    plans = _planner("cem").plan(objective, init)
    assert plans[0].max() <= 0.5 < plans[1].max()  # problem 0 may not spend; problem 1 can go full speed


def test_bad_cost_budget_is_rejected() -> None:
    objective = make_objective(_scripted_imagine, torch.zeros(1), particles=1, discount=1.0, cost_weight=0.0,
                               cost_budget=torch.tensor([1.0, 2.0]))
    with pytest.raises(ValueError, match="cost_budget"):
        _planner("cem").plan(objective, torch.zeros(4, 1))


# ---------------------------------------------------------------- the multiplier


def test_multiplier_rises_when_over_the_limit_and_falls_back_to_zero() -> None:
    multiplier = CostMultiplier(25.0, learning_rate=0.5)
    assert cost_rate(10.0, 200) == 50.0  # per 1,000 steps
    assert multiplier.update(episode_cost=10.0, episode_length=200) == pytest.approx(0.5)  # (50 - 25) / 25
    assert multiplier.update(episode_cost=0.0, episode_length=1000) == pytest.approx(0.0)  # clipped at 0
    multiplier.update(30.0, 1000)
    high = multiplier.value
    assert high > 0 and multiplier.budget(10) == pytest.approx(10 * 25 / 1000 / (1 + high))
    assert multiplier.budget(10, left=0.1) == pytest.approx(0.1 / (1 + high))  # at most what is left
    restored = CostMultiplier(25.0)
    restored.load_state_dict(multiplier.state_dict())
    assert restored.value == high
    with pytest.raises(ValueError, match="cost_limit"):
        CostMultiplier(-1.0)


def test_multiplier_below_zero_loosens_the_budget_towards_the_target() -> None:
    """With a negative floor, episodes under ``target x limit`` loosen the plan's share (CAP-style), overspending
    tightens it again, and the penalty on predicted cost never turns into a reward."""
    multiplier = CostMultiplier(25.0, learning_rate=0.5, min_value=-2.0, target=0.5)
    share = 10 * 25 / 1000
    assert multiplier.update(0.0, 1000) == pytest.approx(-0.25)  # (0 - 12.5) / 25 x 0.5
    assert multiplier.scale == pytest.approx(math.exp(0.25)) and multiplier.penalty == 0.0
    assert multiplier.budget(10) == pytest.approx(share * math.exp(0.25))  # looser than the share
    assert multiplier.budget(10, left=0.1) == pytest.approx(0.1)  # never more than the episode has left
    for _ in range(20):
        multiplier.update(0.0, 1000)
    assert multiplier.value == -2.0 and multiplier.budget(10) == pytest.approx(share * math.exp(2.0))  # floor
    assert multiplier.update(12.5, 1000) == -2.0  # at the target: unchanged
    multiplier.update(100.0, 1000)  # (100 - 12.5) / 25 x 0.5 = +1.75
    assert multiplier.value == pytest.approx(-0.25) and multiplier.budget(10) == pytest.approx(share * math.exp(0.25))
    tight = CostMultiplier(25.0, value=0.5)  # the two branches of the scale meet at 0 and keep the old meaning
    assert tight.scale == pytest.approx(1 / 1.5) and tight.penalty == 0.5
    assert CostMultiplier(25.0, value=0.0).scale == 1.0
    restored = CostMultiplier(25.0, min_value=-2.0)
    restored.load_state_dict(multiplier.state_dict())
    assert restored.value == multiplier.value
    with pytest.raises(ValueError, match=r"a saved value must be in \[0"):
        CostMultiplier(25.0).load_state_dict(multiplier.state_dict())  # a floor of 0 cannot hold it
    with pytest.raises(ValueError, match="min_value"):
        CostMultiplier(25.0, min_value=0.5)
    with pytest.raises(ValueError, match="target"):
        CostMultiplier(25.0, target=0.0)


def test_config_checks_the_loosening_settings() -> None:
    with pytest.raises(ConfigError, match="cost_multiplier_min"):
        validate(resolve_config("Pendulum-v1", {"planner.cost_multiplier_min": 1.0}))
    with pytest.raises(ConfigError, match="cost_target"):
        validate(resolve_config("Pendulum-v1", {"planner.cost_target": 1.5}))


def _echo_config(**overrides: object) -> Config:
    base = {"device": "cpu", "env_kwargs": {"cost": 1.0}, "planner.cost_limit": 25.0, "train.eval_freq": 100}
    return resolve_config(ECHO, {**base, **overrides}, preset="debug")


def _echo_agent(config: Config, run_dir: Path) -> MBRLAgent:
    return MBRLAgent(ECHO, config, run_dir=run_dir)


@pytest.mark.parametrize("lockstep", [True, False])
def test_evaluation_plans_keep_within_what_is_left_of_each_episodes_budget(tmp_path: Path, lockstep: bool) -> None:
    """Evaluations count each episode's cost as training does: every plan gets the budget that is left."""
    agent = _echo_agent(_echo_config(**{"train.eval_lockstep": lockstep}), tmp_path)  # every step costs 1
    spent: list[np.ndarray] = []
    budgets: list[float | torch.Tensor | None] = []
    plan = agent.plan

    def spy(obs: np.ndarray, *args: Any, cost_spent: np.ndarray | None = None, **kwargs: Any) -> np.ndarray:
        assert cost_spent is not None
        spent.append(np.array(cost_spent, dtype=float).reshape(-1))
        budgets.append(agent.cost_budget(cost_spent if obs.ndim == 2 else float(spent[-1][0])))
        return plan(obs, *args, cost_spent=cost_spent, **kwargs)  # type: ignore[misc]

    agent.plan = spy  # type: ignore[method-assign,assignment]
    result = agent.evaluate(n_episodes=2)
    np.testing.assert_array_equal(result.costs, [50.0, 50.0])
    per_step = [float(s[0]) for s in spent]
    assert per_step[:50] == [float(t) for t in range(50)]  # 0, 1, ..., 49 in the first episode
    if lockstep:
        assert len(spent) == 50 and all(len(s) == 2 and s[0] == s[1] for s in spent)
    else:
        assert per_step[50:] == per_step[:50]  # counted again from 0 in the second episode
    assert agent.cost_multiplier is not None
    episode_budget = agent.cost_multiplier.episode_budget(agent.episode_steps)  # 25: the env has no time limit
    for cost, budget in zip(spent, budgets, strict=True):
        want = [agent.cost_multiplier.budget(agent.config.planner.horizon, episode_budget - c) for c in cost]
        np.testing.assert_allclose(np.asarray(budget, dtype=float).reshape(-1), want)
    assert float(np.asarray(budgets[-1]).reshape(-1)[0]) == 0.0  # the budget spent: nothing more may be


def test_multiplier_and_cumulative_cost_resume_exactly(tmp_path: Path) -> None:
    config = _echo_config(**{"train.eval_freq": 50})  # episodes of 50 steps, all costly
    straight = _echo_agent(config, tmp_path / "a").learn(100, progress_bar=False)
    first = _echo_agent(config, tmp_path / "b").learn(50, progress_bar=False)
    assert first.cost_multiplier is not None and first.cost_multiplier.value > 0  # every step costs: it rose
    resumed = _echo_agent(config, tmp_path / "b")
    assert resumed.cost_multiplier is not None and resumed.cost_multiplier.value == first.cost_multiplier.value
    resumed.learn(100, progress_bar=False)
    assert straight.cost_multiplier is not None
    assert resumed.cost_multiplier.value == straight.cost_multiplier.value
    assert resumed._cumulative_cost == straight._cumulative_cost == 100.0
    assert resumed.veto.train == straight.veto.train and straight.veto.train.plans == 50  # agent/veto.py's counts
    for x, y in zip(straight.buffer.stored(), resumed.buffer.stored(), strict=True):
        np.testing.assert_array_equal(x, y)
    header = (tmp_path / "a" / "progress.csv").read_text().splitlines()[0].split(",")
    for key in ("train/cumulative_cost", "eval/mean_cost", "safety/cost_multiplier", "safety/brier",
                "safety/recall", "safety/precision", "planner/feasible_best", "safety/train_flagged",
                "safety/train_proposals_rejected", "safety/eval_flagged", "safety/eval_flagged_cost"):
        assert key in header, key


# ---------------------------------------------------------------- predict_safety


def test_predict_safety_shapes_and_bounds(tmp_path: Path) -> None:
    agent = _echo_agent(_echo_config(), tmp_path)
    horizon = 6
    one = agent.predict_safety(np.zeros(2, np.float32), np.zeros((horizon, 1), np.float32))
    assert one.probability.shape == one.disagreement.shape == (horizon,)
    assert one.expected_cost.shape == one.budget_use.shape == ()
    many = agent.predict_safety(np.zeros((3, 2), np.float32), torch.rand(3, horizon, 1) * 2 - 1)
    assert many.probability.shape == many.disagreement.shape == (3, horizon)
    assert many.expected_cost.shape == many.budget_use.shape == (3,)
    assert np.all((many.probability >= 0) & (many.probability <= 1)) and np.all(many.disagreement >= 0)
    assert np.all((many.expected_cost >= 0) & (many.expected_cost <= horizon))
    budget = 25.0 * agent.episode_steps / 1000
    np.testing.assert_allclose(many.budget_use, many.expected_cost / budget, rtol=1e-6)
    with pytest.raises(ValueError, match="predict_safety"):
        agent.predict_safety(np.zeros(2, np.float32), np.zeros((3, horizon, 1), np.float32))
    with pytest.raises(ValueError, match="finite"):
        agent.predict_safety(np.zeros(2, np.float32), np.full((horizon, 1), np.nan, np.float32))
    unconstrained = _echo_agent(_echo_config(**{"planner.cost_limit": None}), tmp_path / "u")
    assert np.isnan(unconstrained.predict_safety(np.zeros(2, np.float32), np.zeros((2, 1))).budget_use)


# ---------------------------------------------------------------- the safety head's metrics


def test_safety_metrics_known_values() -> None:
    metrics = safety_metrics(np.array([0.9, 0.1, 0.8, 0.2]), np.array([1.0, 0.0, 0.0, 0.0]), threshold=0.5, bins=2)
    assert metrics.recall == 1.0 and metrics.precision == 0.5 and metrics.positive_rate == 0.25
    assert metrics.brier == pytest.approx((0.01 + 0.01 + 0.64 + 0.04) / 4)
    assert metrics.reliability.counts.tolist() == [2, 2]
    np.testing.assert_allclose(metrics.reliability.frequency, [0.0, 0.5])
    assert metrics.calibration_error == pytest.approx((2 * 0.15 + 2 * 0.35) / 4)
    assert set(metrics.scalars()) >= {"safety/brier", "safety/recall", "safety/precision"}
    assert math.isnan(safety_metrics(np.array([0.1]), np.array([0.0])).recall)  # no costly step
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        safety_metrics(np.array([1.5]), np.array([0.0]))
    with pytest.raises(ValueError, match=">= 0"):
        safety_metrics(np.array([0.5]), np.array([-1.0]))


# ---------------------------------------------------------------- bad input


def test_negative_cost_is_rejected_naming_env_and_step() -> None:
    env = make_env(ECHO, {"cost": -0.5})
    env.reset(seed=0)
    with pytest.raises(EnvironmentSpecError, match=r"EchoEnv.*negative info\['cost'\].*step 0"):
        env.step(np.zeros(1, np.float32))


def test_non_finite_cost_is_rejected() -> None:
    env = make_env(ECHO, {"cost": float("nan")}, check=False)  # the checker would reject it (NaN != NaN)
    env.reset(seed=0)
    with pytest.raises(NonFiniteError, match="cost"):
        env.step(np.zeros(1, np.float32))


def test_negative_cost_limit_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="planner.cost_limit must be a finite number >= 0"):
        validate(resolve_config("Pendulum-v1", {"planner.cost_limit": -1}))
    assert resolve_config("Pendulum-v1", {"planner.cost_limit": "null"}).planner.cost_limit is None


def test_cost_limit_on_env_without_costs_warns_once(tmp_path: Path) -> None:
    agent = _echo_agent(_echo_config(env_kwargs={}, **{"train.eval_freq": 0}), tmp_path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        agent.learn(150, progress_bar=False)  # three episodes
    vacuous = [w for w in caught if "vacuous" in str(w.message)]
    assert len(vacuous) == 1 and "info['cost']" in str(vacuous[0].message)


# ---------------------------------------------------------------- benchmarks


def test_compare_report_shows_costs_and_the_limit(tmp_path: Path) -> None:
    from benchmarks.report import markdown_report, write_report

    rows = [{"algo": algo, "env": "e", "seed": seed, "step": step, "eval_mean_return": 1.0 + step,
             "eval_cost": cost * step / 1000, "wall_seconds": 1.0, "eval_seconds": 0.1}
            for algo, cost in (("rehearse", 10.0), ("sac", 80.0)) for seed in (0, 1) for step in (1000, 2000)]
    report = markdown_report(rows, "e", "cmd", cost_limit=25.0)
    assert "Evaluation cost per episode" in report and "| rehearse | 0 | 2,000 | 2001.0 | 20.0 |" in report
    assert "20.0 [20.0, 20.0] (2, 2/2)" in report and "160.0 [160.0, 160.0] (2, 0/2)" in report
    free = [{**row, "eval_cost": 0.0} for row in rows]
    assert "cost" not in markdown_report(free, "e", "cmd").lower()  # an env without costs: no cost columns
    write_report(rows, tmp_path, env_id="e", command="cmd", cost_limit=25.0)
    assert (tmp_path / "curves.png").stat().st_size > 0


def test_a_bonus_added_to_the_scores_keeps_the_cost_budget() -> None:
    """A judge's bonus (planners.objective.add_to_scores) changes scores, never the costs or the budget."""
    from planners.base import CostedObjective
    from planners.objective import add_to_scores

    def evaluate(candidates: torch.Tensor, with_cost: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
        scores = candidates.sum(dim=(1, 2))
        return scores, (candidates.abs().sum(dim=(1, 2)) if with_cost else None)

    from planners.objective import _Constrained

    costed = _Constrained(evaluate, 0.5)
    judged = add_to_scores(costed, lambda c: torch.full((len(c),), 10.0))
    assert isinstance(judged, CostedObjective) and judged.cost_budget == 0.5
    candidates = torch.tensor([[[0.2]], [[0.9]]])
    scores, costs = judged.score_and_cost(candidates)
    torch.testing.assert_close(scores, torch.tensor([10.2, 10.9]))
    torch.testing.assert_close(costs, torch.tensor([0.2, 0.9]))
    torch.testing.assert_close(judged(candidates), scores)
    plain = add_to_scores(lambda c: c.sum(dim=(1, 2)), lambda c: torch.ones(len(c)))
    assert not isinstance(plain, CostedObjective)
    torch.testing.assert_close(plain(candidates), torch.tensor([1.2, 1.9]))

"""Contract tests for the planners and the objective (fast: a few seconds on 2 cores)."""

from __future__ import annotations

import math

import pytest
import torch

from planners import (
    CEM,
    MPPI,
    Objective,
    PlanningError,
    RandomShooting,
    SamplingConfig,
    make_objective,
    make_planner,
    score_rollout,
)
from world_models.base import Rollout

PLANNERS = ["cem", "mppi", "random"]
OPTIMISERS = ["cem", "mppi"]  # the planners that refine a distribution
SIZES = [(1, 1, 8), (5, 3, 64), (12, 6, 32)]  # (H, A, N)
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])

# Enough budget for CEM/MPPI to pin down a (4, 2) quadratic to < 0.05 in a few ms.
SOLVE = SamplingConfig(num_candidates=256, iterations=10, num_elites=32, min_std=0.01)


def quadratic(target: torch.Tensor) -> Objective:
    """``-||x - target||^2`` per candidate: ``(N, H, A) -> (N,)``, maximised at ``target``."""
    return lambda x: -((x - target.to(x)) ** 2).sum(dim=(1, 2))


def planner(name: str, config: SamplingConfig, action_dim: int, seed: int = 0):
    return make_planner(name, config, action_dim, torch.Generator().manual_seed(seed))


def random_target(horizon: int, action_dim: int, seed: int) -> torch.Tensor:
    """``(H, A)`` uniform in ``(-0.8, 0.8)``."""
    g = torch.Generator().manual_seed(1000 + seed)
    return torch.rand(horizon, action_dim, generator=g) * 1.6 - 0.8


# --------------------------------------------------------------------------- planners


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize(("horizon", "action_dim", "num"), SIZES)
@pytest.mark.parametrize("name", PLANNERS)
def test_plan_shape_bounds_and_inputs_unchanged(
    name: str, horizon: int, action_dim: int, num: int, dtype: torch.dtype, device: str
) -> None:
    config = SamplingConfig(num_candidates=num, iterations=2, num_elites=4)
    init = torch.linspace(-1.5, 1.5, horizon * action_dim, dtype=dtype, device=device)
    init = init.view(horizon, action_dim)  # partly out of bounds on purpose
    proposals = 2 * torch.rand(3, horizon, action_dim, dtype=dtype, device=device) - 1
    proposals[0] = 3.0  # out of bounds: must be clamped, not written back
    init_copy, proposals_copy = init.clone(), proposals.clone()

    out = planner(name, config, action_dim).plan(quadratic(torch.full((horizon, action_dim), 0.3)), init, proposals)

    assert out.shape == (horizon, action_dim)
    assert out.dtype == dtype and out.device == init.device
    assert bool(torch.isfinite(out).all())
    assert float(out.abs().max()) <= 1.0
    assert torch.equal(init, init_copy)
    assert torch.equal(proposals, proposals_copy)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize(("horizon", "action_dim"), [(1, 1), (4, 2)])
@pytest.mark.parametrize("name", OPTIMISERS)
def test_finds_known_optimum(name: str, horizon: int, action_dim: int, seed: int) -> None:
    target = random_target(horizon, action_dim, seed)
    out = planner(name, SOLVE, action_dim, seed).plan(quadratic(target), torch.zeros(horizon, action_dim))
    assert float((out - target).abs().max()) < 0.05


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_random_shooting_improves_over_init(seed: int) -> None:
    target = random_target(4, 2, seed)
    objective = quadratic(target)
    init = torch.zeros(4, 2)
    rs = planner("random", SamplingConfig(num_candidates=128), 2, seed)
    out = rs.plan(objective, init)
    best = float(objective(out[None])[0])
    assert best > float(objective(init[None])[0])
    assert rs.last_stats["best_score"] == pytest.approx(best)


@pytest.mark.parametrize("name", OPTIMISERS)
def test_target_outside_bounds_gives_clamped_optimum(name: str) -> None:
    target = torch.tensor([[1.5, -2.0], [0.5, 3.0], [-1.2, -0.3]])
    out = planner(name, SOLVE, 2).plan(quadratic(target), torch.zeros(3, 2))
    assert float((out - target.clamp(-1, 1)).abs().max()) < 0.05


@pytest.mark.parametrize("name", PLANNERS)
def test_warm_start_is_used(name: str) -> None:
    target = random_target(6, 2, seed=3)
    one_round = SamplingConfig(num_candidates=32, iterations=1, num_elites=4, init_std=1e-3, min_std=1e-4)
    warm = planner(name, one_round, 2).plan(quadratic(target), target.clone())
    cold = planner(name, one_round, 2).plan(quadratic(target), torch.zeros(6, 2))
    assert float((warm - target).abs().max()) < 1e-2
    assert float((cold - target).abs().max()) > 0.1


@pytest.mark.parametrize("name", PLANNERS)
def test_proposals_are_used(name: str) -> None:
    target = random_target(5, 3, seed=4)
    proposals = torch.stack([torch.zeros(5, 3), target, -torch.ones(5, 3)])
    config = SamplingConfig(num_candidates=16, iterations=2, num_elites=4)
    p = planner(name, config, 3)
    out = p.plan(quadratic(target), torch.zeros(5, 3), proposals)
    assert p.last_stats["proposal_best"] == 1.0 and p.last_best_proposal.tolist() == [1]  # which one: the target
    assert p.last_stats["best_score"] == 0.0
    if name == "random":
        assert torch.equal(out, target)


def test_best_from_samples_is_not_credited_to_proposals() -> None:
    target = random_target(3, 2, seed=5)
    p = planner("random", SamplingConfig(num_candidates=64), 2)
    p.plan(quadratic(target), target.clone(), -torch.ones(2, 3, 2))  # init is optimal
    assert p.last_stats["proposal_best"] == 0.0 and p.last_best_proposal.tolist() == [-1]


@pytest.mark.parametrize("name", PLANNERS)
def test_same_seed_same_plan(name: str) -> None:
    objective = quadratic(random_target(5, 3, seed=6))
    config = SamplingConfig(num_candidates=32, iterations=3, num_elites=4)
    a = planner(name, config, 3, seed=7).plan(objective, torch.zeros(5, 3))
    b = planner(name, config, 3, seed=7).plan(objective, torch.zeros(5, 3))
    c = planner(name, config, 3, seed=8).plan(objective, torch.zeros(5, 3))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


@pytest.mark.parametrize("shift", [-1e4, 1e4])
@pytest.mark.parametrize("name", OPTIMISERS)
def test_refit_is_shift_invariant(name: str, shift: float) -> None:
    # MPPI must subtract the max score before exp: exp(-1e4 / T) underflows to 0.
    target = random_target(3, 2, seed=9).double()
    config = SamplingConfig(num_candidates=32, iterations=3, num_elites=8)
    init = torch.zeros(3, 2, dtype=torch.float64)
    plain = planner(name, config, 2).plan(quadratic(target), init)
    shifted = planner(name, config, 2).plan(lambda x: quadratic(target)(x) + shift, init)
    torch.testing.assert_close(shifted, plain)


@pytest.mark.parametrize("name", OPTIMISERS)
def test_nan_scores_are_ignored(name: str) -> None:
    target = random_target(4, 2, seed=8)
    base = quadratic(target)

    def half_nan(x: torch.Tensor) -> torch.Tensor:
        scores = base(x)
        scores[::2] = math.nan  # every other row, including the optimum's neighbours
        return scores

    p = planner(name, SOLVE, 2)
    out = p.plan(half_nan, torch.zeros(4, 2))
    assert float((out - target).abs().max()) < 0.05
    assert 0.4 < p.last_stats["finite_fraction"] < 0.6


@pytest.mark.parametrize("name", PLANNERS)
def test_all_nan_raises_planning_error(name: str) -> None:
    def broken(x: torch.Tensor) -> torch.Tensor:
        return torch.full((x.shape[0],), math.nan)

    p = planner(name, SamplingConfig(num_candidates=8, num_elites=2), 2)
    with pytest.raises(PlanningError, match="non-finite predictions for every candidate"):
        p.plan(broken, torch.zeros(3, 2))
    assert p.last_stats["finite_fraction"] == 0.0


def test_all_nan_round_keeps_distribution() -> None:
    calls = {"n": 0}
    target = torch.full((2, 1), 0.5)

    def first_round_broken(x: torch.Tensor) -> torch.Tensor:
        calls["n"] += 1
        scores = quadratic(target)(x)
        return torch.full_like(scores, math.nan) if calls["n"] == 1 else scores

    out = planner("cem", SOLVE, 1).plan(first_round_broken, torch.zeros(2, 1))
    assert float((out - target).abs().max()) < 0.05


def test_bad_shapes_are_rejected() -> None:
    p = CEM(SamplingConfig(num_candidates=8, num_elites=2), action_dim=2)
    objective = quadratic(torch.zeros(3, 2))
    with pytest.raises(ValueError, match="init"):
        p.plan(objective, torch.zeros(3, 4))
    with pytest.raises(ValueError, match="proposals"):
        p.plan(objective, torch.zeros(3, 2), torch.zeros(2, 4, 2))
    with pytest.raises(ValueError, match="objective"):
        p.plan(lambda x: torch.zeros(x.shape[0], 1), torch.zeros(3, 2))


def test_make_planner_and_config_validation() -> None:
    config = SamplingConfig(num_candidates=8, num_elites=2)
    assert isinstance(make_planner("cem", config, 2), CEM)
    assert isinstance(make_planner("mppi", config, 2), MPPI)
    assert isinstance(make_planner("random", config, 2), RandomShooting)
    with pytest.raises(ValueError, match="cem, mppi, random"):
        make_planner("icem", config, 2)
    with pytest.raises(ValueError, match="num_elites"):
        SamplingConfig(num_candidates=8, num_elites=16)
    with pytest.raises(ValueError, match="momentum"):
        SamplingConfig(momentum=1.0)


# --------------------------------------------------------------------------- objective


class FakeModel:
    """Closed-form world model; latent ``Z = A``.

    ``z_{t+1} = z_t + a_t``; ``reward_t = -||z_{t+1}||^2 + offsets[b % E]``;
    ``continuation`` / ``costs`` are per-step ``(H,)`` constants; the terminal value
    is ``sum(z_H)`` when enabled. Records every ``imagine`` call.
    """

    def __init__(
        self,
        continuation: list[float] | None = None,
        costs: list[float] | None = None,
        terminal_value: bool = False,
        offsets: list[float] | None = None,
        nan_reward_above: float | None = None,
    ) -> None:
        self.continuation = continuation
        self.costs = costs
        self.terminal_value = terminal_value
        self.offsets = torch.tensor(offsets or [0.0])
        self.nan_reward_above = nan_reward_above
        self.calls: list[tuple[torch.Tensor, torch.Tensor]] = []

    def encode(self, obs: torch.Tensor) -> torch.Tensor:
        return obs

    def imagine(self, z0: torch.Tensor, actions: torch.Tensor) -> Rollout:
        horizon, batch, _ = actions.shape
        self.calls.append((z0.clone(), actions.clone()))
        latents = torch.cat([z0[None], z0 + actions.cumsum(dim=0)])  # (H+1, B, Z)
        member = torch.arange(batch) % len(self.offsets)
        rewards = -(latents[1:] ** 2).sum(-1) + self.offsets[member]  # (H, B)
        if self.nan_reward_above is not None:
            bad = actions[..., 0] > self.nan_reward_above
            rewards = torch.where(bad, torch.full_like(rewards, math.nan), rewards)
        cont = torch.tensor(self.continuation or [1.0] * horizon)[:, None]
        costs = torch.tensor(self.costs or [0.0] * horizon)[:, None]
        return Rollout(
            rewards=rewards,
            costs=costs.expand(horizon, batch),
            continuation=cont.expand(horizon, batch),
            latents=latents,
            disagreement=torch.zeros(horizon, batch),
            terminal_value=latents[-1].sum(-1) if self.terminal_value else None,
        )


def hand_score(
    rewards: list[float],
    costs: list[float],
    continuation: list[float],
    terminal: float | None,
    discount: float,
    cost_weight: float,
) -> float:
    total, alive = 0.0, 1.0
    for t, (r, c, k) in enumerate(zip(rewards, costs, continuation, strict=True)):
        total += discount**t * alive * (r - cost_weight * c)
        alive *= k
    if terminal is not None:
        total += discount ** len(rewards) * alive * terminal
    return total


def test_score_rollout_matches_hand_computation() -> None:
    rewards = [[1.0, -2.0], [3.0, 0.5], [-1.0, 4.0]]
    costs = [[0.0, 1.0], [0.5, 0.0], [1.0, 0.25]]
    cont = [[1.0, 0.9], [0.5, 0.8], [0.7, 1.0]]
    terminal = [10.0, -3.0]
    rollout = Rollout(
        rewards=torch.tensor(rewards, dtype=torch.float64),
        costs=torch.tensor(costs, dtype=torch.float64),
        continuation=torch.tensor(cont, dtype=torch.float64),
        latents=torch.zeros(4, 2, 1, dtype=torch.float64),
        disagreement=torch.zeros(3, 2, dtype=torch.float64),
        terminal_value=torch.tensor(terminal, dtype=torch.float64),
    )
    for with_terminal in (True, False):
        r = rollout if with_terminal else rollout._replace(terminal_value=None)
        got = score_rollout(r, discount=0.9, cost_weight=2.0)
        assert got.shape == (2,)
        for b in range(2):
            want = hand_score(
                [row[b] for row in rewards],
                [row[b] for row in costs],
                [row[b] for row in cont],
                terminal[b] if with_terminal else None,
                discount=0.9,
                cost_weight=2.0,
            )
            assert float(got[b]) == pytest.approx(want, rel=1e-12)


def test_termination_drops_later_rewards_and_terminal_value() -> None:
    actions = torch.tensor([[[0.5]], [[-0.25]], [[1.0]], [[0.75]]])  # (H=4, N=1, A=1)
    candidates = actions.transpose(0, 1)  # (N, H, A)
    z0 = torch.tensor([0.1])
    alive = make_objective(
        FakeModel(continuation=[1.0, 0.0, 1.0, 1.0], terminal_value=True).imagine,
        z0,
        particles=1,
        discount=0.9,
        cost_weight=0.0,
    )
    z = z0 + actions[:, 0, 0].cumsum(0)
    want = -(z[0] ** 2) - 0.9 * z[1] ** 2  # steps 0 and 1 count, nothing after
    assert float(alive(candidates)[0]) == pytest.approx(float(want))


def test_dead_steps_ignore_non_finite_predictions() -> None:
    rollout = Rollout(
        rewards=torch.tensor([[1.0], [math.nan]]),
        costs=torch.zeros(2, 1),
        continuation=torch.tensor([[0.0], [1.0]]),
        latents=torch.zeros(3, 1, 1),
        disagreement=torch.zeros(2, 1),
        terminal_value=torch.tensor([math.inf]),
    )
    assert float(score_rollout(rollout, discount=0.9, cost_weight=1.0)[0]) == 1.0


def test_cost_weight_subtracts_discounted_costs() -> None:
    costs = [0.2, 1.0, 0.5]
    model = FakeModel(costs=costs, continuation=[1.0, 0.5, 1.0])
    z0 = torch.tensor([0.0, 0.2])
    candidates = torch.rand(5, 3, 2, generator=torch.Generator().manual_seed(0))
    free = make_objective(model.imagine, z0, particles=1, discount=0.9, cost_weight=0.0)
    taxed = make_objective(model.imagine, z0, particles=1, discount=0.9, cost_weight=3.0)
    penalty = 3.0 * (0.2 + 0.9 * 1.0 + 0.81 * 0.5 * 0.5)
    torch.testing.assert_close(taxed(candidates), free(candidates) - penalty)


def test_non_finite_reward_gives_minus_inf_and_is_never_chosen() -> None:
    # Reward grows towards a = 0.5 from below; any first action above 0.4 is NaN.
    model = FakeModel(nan_reward_above=0.4)
    z0 = torch.tensor([-1.0])
    objective = make_objective(model.imagine, z0, particles=1, discount=1.0, cost_weight=0.0)
    scores = objective(torch.tensor([[[0.3]], [[0.6]], [[-0.2]]]))
    assert scores[1] == -math.inf
    assert bool(torch.isfinite(scores[[0, 2]]).all())

    inf_model = FakeModel(costs=[math.inf])
    inf_obj = make_objective(inf_model.imagine, z0, particles=1, discount=1.0, cost_weight=1.0)
    assert float(inf_obj(torch.zeros(1, 1, 1))[0]) == -math.inf

    for name in PLANNERS:
        out = planner(name, SOLVE, 1).plan(objective, torch.zeros(1, 1))
        assert float(out[0, 0]) <= 0.4


def test_particles_are_averaged_and_routed_b_equals_n_p_plus_p() -> None:
    offsets = [0.0, 1.0, 5.0]  # an "ensemble" of E = 3 members, row b -> member b % 3
    model = FakeModel(offsets=offsets)
    z0 = torch.tensor([0.1, -0.2])
    num, horizon, particles = 4, 3, 6  # P a multiple of E: every member twice per candidate
    candidates = torch.rand(num, horizon, 2, generator=torch.Generator().manual_seed(1))
    objective = make_objective(model.imagine, z0, particles=particles, discount=0.95, cost_weight=0.0)
    scores = objective(candidates)

    z_seen, actions_seen = model.calls[-1]
    assert z_seen.shape == (num * particles, 2)
    assert torch.equal(z_seen, z0.expand(num * particles, 2))
    assert actions_seen.shape == (horizon, num * particles, 2)
    for n in range(num):
        for p in range(particles):
            assert torch.equal(actions_seen[:, n * particles + p], candidates[n])

    single = make_objective(FakeModel().imagine, z0, particles=1, discount=0.95, cost_weight=0.0)
    mean_offset = sum(offsets) / len(offsets)
    per_step = sum(0.95**t for t in range(horizon)) * mean_offset
    torch.testing.assert_close(scores, single(candidates) + per_step)
    assert not scores.is_inference()


def test_one_bad_particle_makes_the_candidate_minus_inf() -> None:
    model = FakeModel(nan_reward_above=0.9)

    def imagine_with_one_bad_row(z0: torch.Tensor, actions: torch.Tensor) -> Rollout:
        actions = actions.clone()
        actions[0, 5, 0] = 1.0  # row 5 = candidate 1, particle 1
        return model.imagine(z0, actions)

    objective = make_objective(imagine_with_one_bad_row, torch.zeros(1), particles=4, discount=1.0, cost_weight=0.0)
    scores = objective(torch.zeros(3, 2, 1))
    assert scores[1] == -math.inf
    assert bool(torch.isfinite(scores[[0, 2]]).all())


def test_objective_rejects_bad_shapes() -> None:
    with pytest.raises(ValueError, match="z0"):
        make_objective(FakeModel().imagine, torch.zeros(1, 1, 2), particles=1, discount=1.0, cost_weight=0.0)
    objective = make_objective(FakeModel().imagine, torch.zeros(2), particles=2, discount=1.0, cost_weight=0.0)
    with pytest.raises(ValueError, match=r"\(N, H, A\)"):
        objective(torch.zeros(3, 2))
    batched = make_objective(FakeModel().imagine, torch.zeros(3, 2), particles=2, discount=1.0, cost_weight=0.0)
    with pytest.raises(ValueError, match="3 equal blocks"):
        batched(torch.zeros(4, 2, 2))  # 4 candidates cannot be split over B = 3 latents


def test_planner_with_objective_solves_a_model_task() -> None:
    # Reward -||z_{t+1}||^2 from z0: best is to cancel z0 in the first step, then stay.
    z0 = torch.tensor([0.3, -0.6])
    objective = make_objective(FakeModel().imagine, z0, particles=2, discount=0.9, cost_weight=0.0)
    out = planner("cem", SOLVE, 2).plan(objective, torch.zeros(3, 2))
    want = torch.stack([-z0, torch.zeros(2), torch.zeros(2)])
    assert float((out - want).abs().max()) < 0.05


# --------------------------------------------------------------------------- batched planning (B problems)


def batched_quadratic(targets: torch.Tensor) -> Objective:
    """``targets (B, H, A)``: candidates ``(B * M, H, A)``, block ``b`` scored ``-||x - targets[b]||^2``."""

    def objective(x: torch.Tensor) -> torch.Tensor:
        blocks = x.view(targets.shape[0], -1, *x.shape[1:])  # (B, M, H, A)
        return -((blocks - targets.to(x)[:, None]) ** 2).sum(dim=(2, 3)).reshape(-1)

    return objective


def random_targets(batch: int, horizon: int, action_dim: int, seed: int = 0) -> torch.Tensor:
    """``(B, H, A)`` uniform in ``(-0.8, 0.8)``, a different target per problem."""
    return torch.stack([random_target(horizon, action_dim, seed + 17 * b) for b in range(batch)])


@pytest.mark.parametrize("shared_proposals", [True, False])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("name", PLANNERS)
def test_batched_plan_shape_bounds_and_inputs_unchanged(name: str, dtype: torch.dtype, shared_proposals: bool) -> None:
    batch, horizon, action_dim, num = 3, 5, 2, 16
    config = SamplingConfig(num_candidates=num, iterations=2, num_elites=4)
    init = torch.linspace(-1.5, 1.5, batch * horizon * action_dim, dtype=dtype).view(batch, horizon, action_dim)
    proposals = 2 * torch.rand((2, horizon, action_dim) if shared_proposals else (batch, 2, horizon, action_dim),
                               dtype=dtype) - 1
    proposals[0] = 3.0  # out of bounds: must be clamped, not written back
    init_copy, proposals_copy = init.clone(), proposals.clone()
    seen: list[tuple[int, ...]] = []
    inner = batched_quadratic(torch.full((batch, horizon, action_dim), 0.3))

    def objective(x: torch.Tensor) -> torch.Tensor:
        seen.append(tuple(x.shape))
        return inner(x)

    out = planner(name, config, action_dim).plan(objective, init, proposals)

    assert out.shape == (batch, horizon, action_dim) and out.dtype == dtype
    assert bool(torch.isfinite(out).all()) and float(out.abs().max()) <= 1.0
    assert torch.equal(init, init_copy) and torch.equal(proposals, proposals_copy)
    per_problem = num + 1 + 2  # samples, mean, proposals
    assert set(seen) == {(batch * per_problem, horizon, action_dim)}  # one objective call per iteration
    assert len(seen) == (1 if name == "random" else 2)


@pytest.mark.parametrize("name", OPTIMISERS)
def test_batched_finds_each_problems_own_optimum(name: str) -> None:
    targets = random_targets(4, 4, 2, seed=1)
    out = planner(name, SOLVE, 2).plan(batched_quadratic(targets), torch.zeros(4, 4, 2))
    assert float((out - targets).abs().max()) < 0.05


@pytest.mark.parametrize("name", PLANNERS)
def test_batch_of_one_is_bit_identical_to_the_unbatched_call(name: str) -> None:
    target = random_target(5, 3, seed=2)
    proposals = 2 * torch.rand(3, 5, 3, generator=torch.Generator().manual_seed(0)) - 1
    config = SamplingConfig(num_candidates=32, iterations=3, num_elites=4)
    init = 0.2 * torch.ones(5, 3)
    single, batched = planner(name, config, 3, seed=4), planner(name, config, 3, seed=4)
    a = single.plan(quadratic(target), init, proposals)
    b = batched.plan(quadratic(target), init[None], proposals)
    c = planner(name, config, 3, seed=4).plan(quadratic(target), init[None], proposals[None])
    assert b.shape == (1, 5, 3)
    assert torch.equal(a, b[0]) and torch.equal(a, c[0])
    assert single.last_stats == batched.last_stats
    assert torch.equal(single.generator.get_state(), batched.generator.get_state())


@pytest.mark.parametrize("name", PLANNERS)
def test_problems_do_not_depend_on_each_other(name: str) -> None:
    """Changing problem 1's objective (even to few finite scores) leaves problems 0 and 2 unchanged."""
    targets = random_targets(3, 4, 2, seed=3)
    other = targets.clone()
    other[1] = -targets[1]
    config = SamplingConfig(num_candidates=32, iterations=3, num_elites=8)
    base = planner(name, config, 2, seed=5).plan(batched_quadratic(targets), torch.zeros(3, 4, 2))
    changed = planner(name, config, 2, seed=5).plan(batched_quadratic(other), torch.zeros(3, 4, 2))

    def few_finite_in_problem_1(x: torch.Tensor) -> torch.Tensor:
        scores = batched_quadratic(targets)(x).view(3, -1)
        scores[1, 3:] = math.nan  # problem 1 has 3 < num_elites finite scores: refit on its own
        return scores.reshape(-1)

    sparse = planner(name, config, 2, seed=5).plan(few_finite_in_problem_1, torch.zeros(3, 4, 2))
    for out in (changed, sparse):
        assert torch.equal(out[[0, 2]], base[[0, 2]])
    if name != "random":  # random shooting may keep the (same) initial mean as its best for either target
        assert not torch.equal(changed[1], base[1])


def test_batched_stats_are_averaged_over_problems() -> None:
    targets = random_targets(2, 3, 2, seed=4)
    proposals = torch.stack([targets[0][None], -torch.ones(1, 3, 2)])  # (B, n=1, H, A): only problem 0's helps
    init = torch.stack([torch.zeros(3, 2), targets[1]])  # problem 1 starts at its optimum (the mean candidate)
    p = planner("random", SamplingConfig(num_candidates=16, num_elites=4), 2)
    out = p.plan(batched_quadratic(targets), init, proposals)
    assert torch.equal(out, targets)
    assert p.last_stats["proposal_best"] == 0.5 and p.last_best_proposal.tolist() == [0, -1]
    assert p.last_stats["best_score"] == 0.0
    assert p.last_stats["finite_fraction"] == 1.0


@pytest.mark.parametrize("name", PLANNERS)
def test_batched_planning_error_names_the_problem(name: str) -> None:
    targets = random_targets(3, 2, 2)

    def problem_2_broken(x: torch.Tensor) -> torch.Tensor:
        scores = batched_quadratic(targets)(x).view(3, -1)
        scores[2] = math.nan
        return scores.reshape(-1)

    p = planner(name, SamplingConfig(num_candidates=8, num_elites=2), 2)
    with pytest.raises(PlanningError, match=r"every candidate of problem\(s\) \[2\]"):
        p.plan(problem_2_broken, torch.zeros(3, 2, 2))
    assert p.last_stats["finite_fraction"] == pytest.approx(2 / 3)


def test_batched_bad_shapes_are_rejected() -> None:
    p = CEM(SamplingConfig(num_candidates=8, num_elites=2), action_dim=2)
    objective = batched_quadratic(torch.zeros(3, 4, 2))
    with pytest.raises(ValueError, match="init"):
        p.plan(objective, torch.zeros(3, 4, 3))
    with pytest.raises(ValueError, match="init"):
        p.plan(objective, torch.zeros(1, 3, 4, 2))
    with pytest.raises(ValueError, match="init"):
        p.plan(objective, torch.zeros(0, 4, 2))  # no problems
    with pytest.raises(ValueError, match="proposals"):
        p.plan(objective, torch.zeros(3, 4, 2), torch.zeros(2, 2, 4, 2))  # (B, n, ...) with B = 2, not 3
    with pytest.raises(ValueError, match="proposals"):
        p.plan(quadratic(torch.zeros(4, 2)), torch.zeros(4, 2), torch.zeros(1, 2, 4, 2))  # per-problem needs B
    with pytest.raises(ValueError, match=r"to scores \(27,\)"):
        p.plan(lambda x: torch.zeros(x.shape[0] // 3), torch.zeros(3, 4, 2))


def test_objective_with_batched_z0_equals_separate_objectives() -> None:
    offsets = [0.0, 1.0, 5.0]  # E = 3; P = 6 keeps every candidate in front of every member
    z0 = torch.tensor([[0.1, -0.2], [0.5, 0.3], [-0.4, 0.0]])  # (B, Z)
    batch, num, horizon, particles = 3, 4, 3, 6
    candidates = torch.rand(batch * num, horizon, 2, generator=torch.Generator().manual_seed(2))
    model = FakeModel(offsets=offsets)
    kwargs: dict[str, float] = {"discount": 0.95, "cost_weight": 0.0, "pessimism": 0.5}
    scores = make_objective(model.imagine, z0, particles=particles, **kwargs)(candidates)

    z_seen, actions_seen = model.calls[-1]
    assert z_seen.shape == (batch * num * particles, 2)
    for r in range(batch * num * particles):  # row r = (b * M + n) * P + p
        b, n = divmod(r // particles, num)
        assert torch.equal(z_seen[r], z0[b])
        assert torch.equal(actions_seen[:, r], candidates[b * num + n])
    separate = [
        make_objective(FakeModel(offsets=offsets).imagine, z0[b], particles=particles, **kwargs)(block)
        for b, block in enumerate(candidates.split(num))
    ]
    torch.testing.assert_close(scores, torch.cat(separate), rtol=0, atol=0)


def test_batched_planner_with_objective_solves_each_model_task() -> None:
    z0 = torch.tensor([[0.3, -0.6], [-0.5, 0.2]])  # two starts, two problems
    objective = make_objective(FakeModel().imagine, z0, particles=2, discount=0.9, cost_weight=0.0)
    out = planner("cem", SOLVE, 2).plan(objective, torch.zeros(2, 3, 2))
    for b in range(2):
        want = torch.stack([-z0[b], torch.zeros(2), torch.zeros(2)])
        assert float((out[b] - want).abs().max()) < 0.05

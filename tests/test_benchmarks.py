"""Benchmark statistics: IQM and bootstrap intervals, FLOP counting."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from benchmarks.plan_speed import PETS, flops_per_plan
from benchmarks.plan_speed import main as plan_speed_main
from benchmarks.returns import first_reach, read_run, run_dir_of, seeds_to_summarise, summarise
from benchmarks.stats import bootstrap_ci, iqm


def test_iqm_is_the_mean_of_the_middle_half() -> None:
    assert iqm(np.array([1.0, 2.0, 3.0, 4.0])) == 2.5
    assert iqm(np.array([0.0, 1.0, 2.0, 3.0, 100.0, -100.0, 1.5, 2.5])) == 1.75
    assert abs(iqm(np.array([0.0, 3.0, 6.0])) - 3.0) < 1e-12  # symmetric weights 0.25, 1, 0.25


def test_bootstrap_interval_contains_the_statistic() -> None:
    values = np.array([10.0, 12.0, 11.0, 50.0, 9.0])
    lo, hi = bootstrap_ci(values, reps=500)
    assert lo <= iqm(values) <= hi


def test_first_reach() -> None:
    run = {"steps": [1000, 2000, 3000], "returns": [10.0, 1000.0, 900.0], "wall": [5.0, 12.0, 20.0]}
    assert first_reach(run, 1000) == (2000, 12.0)
    assert first_reach(run, 2000) == (None, None)


def test_summary_reports_wall_clock_evaluation_share_and_memory(tmp_path: Path) -> None:
    np.savez(tmp_path / "evaluations.npz", timesteps=np.array([1000, 2000]),
             results=np.array([[10.0, 30.0], [990.0, 1010.0]]))
    (tmp_path / "progress.csv").write_text(
        "time/total_timesteps,time/time_elapsed,time/eval_seconds,time/peak_rss_mb\n"
        "1000,40.0,15.0,300\n2000,100.0,35.5,420\n"
    )
    run = read_run(tmp_path)
    assert run["returns"] == [20.0, 1000.0] and run["wall"] == [40.0, 100.0] and run["eval_wall"] == [15.0, 35.5]
    table = summarise("Toy-v0", {0: run}, 1000.0, "cmd")
    assert "| 2000 | 1000.0 | 1000.0 | 1000.0 [1000.0, 1000.0] |" in table
    assert "| 0 | 1000.0 | 100 | 36 | 420 | 2000 | 100 |" in table


def test_summary_takes_in_seeds_trained_by_other_commands(tmp_path: Path) -> None:
    for seed in (0, 2, 7):
        run_dir_of(tmp_path, seed).mkdir(parents=True)
    for seed in (2, 7):  # seed 0 has not evaluated yet; "seedx" and "other" are not seeds
        np.savez(run_dir_of(tmp_path, seed) / "evaluations.npz", timesteps=np.array([1]), results=np.ones((1, 1)))
    (tmp_path / "runs" / "rehearse" / "seedx").mkdir()
    (tmp_path / "runs" / "rehearse" / "other").mkdir()
    assert seeds_to_summarise(tmp_path, [1]) == ([1, 2, 7], [2, 7])
    assert seeds_to_summarise(tmp_path, [7, 2]) == ([2, 7], [])
    assert seeds_to_summarise(tmp_path / "absent", [3]) == ([3], [])


def test_pets_flop_count() -> None:
    # 4x200 MLP on 17+6 inputs; imagination computes 20 outputs (17 state deltas, reward,
    # continuation, cost), not the 18 log-variances: 2*(23*200 + 3*200*200 + 200*20) FLOP per row
    per_row = 2 * (23 * 200 + 3 * 200 * 200 + 200 * 20)
    assert flops_per_plan(PETS) == per_row * 401 * 20 * 30 * 5


def test_preset_cases_carry_and_count_the_terminal_value() -> None:
    from benchmarks.plan_speed import preset_cases

    assert PETS.terminal_value == "none"  # PETS plans on rewards alone
    hopper = preset_cases("Hopper-v5")[0]  # V(z): 11 -> 200 -> 200 -> 1 on each row's last state
    assert hopper.terminal_value == "state"
    without = flops_per_plan(replace(hopper, terminal_value="none"))
    rows = (hopper.num_candidates + 1) * hopper.particles * hopper.iterations
    assert flops_per_plan(hopper) - without == 2 * (11 * 200 + 200 * 200 + 200) * rows
    pendulum = preset_cases("InvertedPendulum-v5")[0]  # pi(z) and twin Q(z, a)
    assert pendulum.terminal_value == "policy"
    h = pendulum.hidden_dim
    policy = 2 * (4 * h + h * h + h * 1) + 2 * 2 * (5 * h + h * h + h)
    assert flops_per_plan(pendulum) - flops_per_plan(replace(pendulum, terminal_value="none")) == policy * (
        (pendulum.num_candidates + 1) * pendulum.particles * pendulum.iterations)


@pytest.mark.parametrize(("argv", "message"), [
    (["--presets", "Walker2d-v5"], "no planning case for preset(s) ['Walker2d-v5']"),
    (["--repeats", "0"], "--repeats must be >= 1"),
])
def test_plan_speed_refuses_what_it_cannot_time(argv: list[str], message: str,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    """An unknown preset is named (not silently skipped) and a zero repeat count refused, before any timing."""
    with pytest.raises(SystemExit) as exit_info:
        plan_speed_main(argv)
    assert exit_info.value.code == 2 and message in capsys.readouterr().err


def test_preset_cases_time_the_acting_and_the_training_width() -> None:
    """A preset that evaluates wider than it trains is timed at both widths, acting first (the
    width evaluation's batched plan uses); one that does not keeps a single case."""
    from agent.config import resolve_config
    from benchmarks.plan_speed import preset_cases

    config = resolve_config("HalfCheetah-v5")
    planner, width = config.planner, config.sampling.num_candidates
    assert planner.eval_num_candidates not in (0, width)  # the preset this test is about
    acting, training = preset_cases("HalfCheetah-v5")
    assert (acting.name, acting.num_candidates) == ("preset:HalfCheetah-v5 acting", planner.eval_num_candidates)
    assert (training.name, training.num_candidates) == ("preset:HalfCheetah-v5 training", width)
    (single,) = preset_cases("Pendulum-v1")
    assert single.name == "preset:Pendulum-v1"
    assert single.num_candidates == resolve_config("Pendulum-v1").sampling.num_candidates


def test_time_case_alternates_paths_and_dtypes_of_imagination() -> None:
    from benchmarks.plan_speed import time_case

    case = replace(PETS, num_candidates=15, num_elites=4, particles=5, hidden_dim=8, num_layers=2, horizon=3,
                   iterations=2)
    variants = (("fast", "float32"), ("reference", "float32"), ("fast", "bfloat16"))
    timed = time_case(case, repeats=2, variants=variants, peak_size=256)  # bfloat16 is emulated on most CPUs: slow
    assert set(timed.per_variant) == set(variants) and set(timed.peak_gflops) == {"float32", "bfloat16"}
    assert all(0 < best <= median for median, best in timed.per_variant.values())
    assert all(peak > 0 for peak in timed.peak_gflops.values())
    assert set(timed.faults) == set(variants) and all(faults >= 0 for faults in timed.faults.values())


def test_layer_lines_time_every_part_of_one_imagined_step() -> None:
    from benchmarks.plan_speed import layer_lines

    case = replace(PETS, num_candidates=15, particles=5, hidden_dim=8, num_layers=2)
    lines = layer_lines(case, repeats=1)
    # three products, two SiLU passes, the output layer as rows (comparison), the whole step
    assert len(lines) == 3 + 2 + 1 + 1
    assert lines[0].startswith("| layer 1 product + bias (23 -> 8) | 5x16 |")
    assert lines[1].startswith("| layer 1 SiLU | 5x16 |") and lines[-1].startswith("| one step, all parts |")
    assert any(line.startswith("| layer 3 product (8 -> 20), transposed | 5x16 |") for line in lines)
    assert sum("(comparison)" in line for line in lines) == 1


def test_run_budget_counts_the_calls_a_run_makes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The budget's counts of plans and gradient steps are the ones the training loop makes."""
    from agent import MBRLAgent, resolve_config
    from agent.models import RoboticsAdapter
    from benchmarks.run_budget import run_counts
    from envs import POINT_MASS_ID

    config = resolve_config(POINT_MASS_ID, {"device": "cpu", "train.eval_episodes": 2, "train.train_freq": 3},
                            preset="debug")
    plans: list[int] = []  # problems per planner call
    gradient_steps = [0]
    original_plan, original_step = MBRLAgent.plan, RoboticsAdapter.train_step

    def counted_plan(self: MBRLAgent, obs: np.ndarray, *args: object, **kwargs: object) -> np.ndarray:
        plans.append(1 if obs.ndim == 1 else len(obs))
        return original_plan(self, obs, *args, **kwargs)  # type: ignore[arg-type]

    def counted_step(self: RoboticsAdapter, *args: object) -> dict[str, float]:
        gradient_steps[0] += 1
        return original_step(self, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(MBRLAgent, "plan", counted_plan)
    monkeypatch.setattr(RoboticsAdapter, "train_step", counted_step)
    MBRLAgent(POINT_MASS_ID, config, run_dir=tmp_path).learn(config.train.total_timesteps, progress_bar=False)
    counts = run_counts(config, episode_steps=50)  # PointMass episodes: 50 steps, never terminated
    assert plans.count(1) == counts.train_plans == 150
    assert plans.count(2) == counts.eval_plans == 2 * 50  # two evaluations, each a batched plan per step
    assert gradient_steps[0] == counts.gradient_steps == 50 + 5  # every 3rd step from 51 to 200, plus 5 at first


def test_run_budget_estimates_a_small_run_and_refuses_a_missing_episode_length(
        capsys: pytest.CaptureFixture[str]) -> None:
    from benchmarks.run_budget import main as run_budget_main

    with pytest.raises(SystemExit) as exit_info:
        run_budget_main(["--env", "rehearse/PointMass-v0", "--set", "train.total_timesteps=200", "--repeats", "1"])
    assert exit_info.value.code == 2 and "--episode-steps" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        run_budget_main(["--env", "InvertedPendulum-v5", "--set", "planner.horizon"])
    assert exit_info.value.code == 2 and "section.field=value" in capsys.readouterr().err
    assert run_budget_main(["--env", "InvertedPendulum-v5", "--set", "train.total_timesteps=2000",
                            "--repeats", "2", "--fit-steps", "2"]) == 0
    out = capsys.readouterr().out
    assert "| training plans (1 problem) | 1,800 |" in out  # 2,000 steps less the preset's 200 random ones
    assert "| evaluation plans (10 problems) | 2,000 |" in out  # 2 evaluations of 1,000-step episodes



def test_language_goals_true_model_is_the_task_and_a_distance_judge_grounds_every_phrase() -> None:
    import gymnasium as gym
    import torch

    from benchmarks.llm_language_goals import (
        GRID,
        PHRASINGS,
        TrueGoalModel,
        distance_rating_script,
        drive,
        grounded_target,
        judge_ratings,
    )
    from language_models.scripted import ScriptedServer

    goal = np.array([-0.4, 0.8])
    env = gym.make("rehearse/GoalPointMass-v0")
    obs, _ = env.reset(seed=0, options={"goal": tuple(goal)})
    actions = np.random.default_rng(0).uniform(-1.5, 1.5, (20, 2)).astype(np.float32)
    rollout = TrueGoalModel(goal).imagine(torch.as_tensor(obs)[None], torch.as_tensor(actions)[:, None])
    for t, action in enumerate(actions):  # the model imagines exactly what the task does, clipping included
        obs, reward, *_ = env.step(action)
        np.testing.assert_allclose(rollout.latents[t + 1, 0].numpy(), obs, atol=1e-5)
        assert rollout.rewards[t, 0].item() == pytest.approx(float(reward), abs=1e-5)
    assert drive(goal, goal)["success"] and not drive(np.zeros(2), goal)["success"]
    assert len(PHRASINGS) == 20 and all(any(np.allclose(g, p) for p in GRID) for g in PHRASINGS.values())
    np.testing.assert_allclose(grounded_target(None), [0.0, 0.0])
    ratings = np.zeros(len(GRID))
    ratings[[0, 1]] = 7
    np.testing.assert_allclose(grounded_target(ratings), [-0.6, 0.8])  # the mean of the best-rated points
    server = ScriptedServer(distance_rating_script)
    try:
        for phrase in ("the top-left corner", "just right of the centre"):
            rated, _, counts = judge_ratings(server.url, phrase, "json_schema")
            assert rated is not None and counts["judge_ratings"] == len(GRID)
            np.testing.assert_allclose(grounded_target(rated), PHRASINGS[phrase])
        assert "Goal: just right of the centre." in server.bodies[-1]["messages"][-1]["content"]
        assert "x position (-1 is the left edge" in server.bodies[-1]["messages"][-1]["content"]
    finally:
        server.close()


def test_llm_never_worse_runs_both_arms_reports_and_resumes(tmp_path: Path) -> None:
    from benchmarks.llm_never_worse import main as never_worse_main

    argv = ["--tasks", "Pendulum-v1", "--seeds", "0", "--delay-s", "0.2", "--preset", "debug",
            "--set", "train.total_timesteps=120", "train.eval_freq=60", "--out", str(tmp_path / "out"),
            "--runs", str(tmp_path / "runs")]
    never_worse_main(argv)
    saved = json.loads((tmp_path / "out" / "results.json").read_text())
    assert [(r["arm"], r["eval_steps"]) for r in saved["runs"]] == [("none", [60, 120]), ("garbage", [60, 120])]
    garbage = saved["runs"][1]
    assert garbage["llm"]["calls"] > 0 and saved["runs"][0]["llm"] == {} and garbage["wall_clock_s"] > 0
    summary = saved["summary"]["Pendulum-v1"]
    assert summary["per_seed"]["0"]["wall_clock_ratio_garbage_over_none"] > 0
    assert "| 0 |" in (tmp_path / "out" / "results.md").read_text()
    assert (tmp_path / "runs" / "Pendulum-v1" / "garbage-seed0" / "progress.csv").exists()
    never_worse_main(argv)  # both runs are in results.json: nothing is run again
    assert json.loads((tmp_path / "out" / "results.json").read_text())["runs"] == saved["runs"]


def test_language_goals_judges_any_server_by_url_and_refuses_a_missing_one(tmp_path: Path) -> None:
    from benchmarks.llm_language_goals import distance_rating_script
    from benchmarks.llm_language_goals import main as language_goals_main
    from language_models.scripted import ScriptedServer

    with pytest.raises(SystemExit):
        language_goals_main(["--judges", "server"])  # no --url: refused before any episode
    server = ScriptedServer(distance_rating_script)
    try:
        language_goals_main(["--judges", "server", "--url", server.url, "--out", str(tmp_path)])
    finally:
        server.close()
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["methods"]["judge:server"]["summary"]["successes"] == 20
    assert saved["methods"]["true_goal"]["summary"]["successes"] == 20
    assert "| judge:server | 20 |" in (tmp_path / "results.md").read_text()

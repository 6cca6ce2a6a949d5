"""benchmarks.compare: the sweep's contract (same protocol, outputs, resumable, local and Ray)."""

from __future__ import annotations

import csv
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from agent import RunDirInUse
from agent.agent import CHECKPOINT_NAME
from agent.atomic import RunDirLock
from agent.checkpoint import load_checkpoint
from benchmarks import compare
from benchmarks.baselines import _constructor_kwargs, hyperparams_for, train_baseline
from benchmarks.report import curves_by_algo, first_reach, markdown_report
from envs import POINT_MASS_ID
from tests.test_agent import HOLD_LOCK

TINY = ["--env", POINT_MASS_ID, "--total-timesteps", "200", "--seeds", "0", "--eval-freq", "100",
        "--eval-episodes", "2", "--rehearse-preset", "debug", "--no-progress-bar"]


def test_hyperparams_follow_the_zoo_lookup_order() -> None:
    entry, sac = hyperparams_for("sac", "HalfCheetah-v5")
    assert entry == "mujoco" and sac["learning_starts"] == 10000
    entry, ppo = hyperparams_for("ppo", "Hopper-v5")
    assert entry == "Hopper-v5" and ppo["normalize"] is True and ppo["n_steps"] == 512
    assert hyperparams_for("sac", "Pendulum-v1")[0] == "Pendulum-v1"
    assert hyperparams_for("td3", POINT_MASS_ID)[0] == "default"
    with pytest.raises(ValueError, match="no hyperparameters for algorithm 'a2c'"):
        hyperparams_for("a2c", "Pendulum-v1")


def test_constructor_kwargs_translate_zoo_notation() -> None:
    _, td3 = hyperparams_for("td3", "Pendulum-v1")
    kwargs = _constructor_kwargs(td3, action_dim=1)
    assert kwargs["train_freq"] == (1, "episode")
    assert np.allclose(kwargs["action_noise"]._sigma, 0.1)
    assert "noise_type" not in kwargs and "normalize" not in kwargs
    _, ppo = hyperparams_for("ppo", "HalfCheetah-v5")
    import torch

    assert _constructor_kwargs(ppo, action_dim=6)["policy_kwargs"]["activation_fn"] is torch.nn.ReLU


def test_plan_runs_and_budgets(tmp_path: Path) -> None:
    budgets = compare._parse_budgets(["rehearse", "sac"], 20000, ["rehearse=3000"])
    assert budgets == {"rehearse": 3000, "sac": 20000}
    specs = compare.plan_runs("Pendulum-v1", ["rehearse", "sac"], [0, 1], budgets, tmp_path, 1000, 10)
    assert [s.name for s in specs] == ["rehearse/seed0", "sac/seed0", "rehearse/seed1", "sac/seed1"]
    assert specs[0].run_dir == str(tmp_path / "runs" / "rehearse" / "seed0")
    with pytest.raises(ValueError, match="unknown algorithm"):
        compare.plan_runs("Pendulum-v1", ["dreamer"], [0], {"dreamer": 1}, tmp_path, 1000, 10)
    with pytest.raises(ValueError, match="--seeds names 1 more than once"):
        compare.plan_runs("Pendulum-v1", ["sac"], [0, 1, 1], {"sac": 1}, tmp_path, 1000, 10)
    with pytest.raises(ValueError, match="--algos names sac more than once"):
        compare.plan_runs("Pendulum-v1", ["sac", "sac"], [0], {"sac": 1}, tmp_path, 1000, 10)
    with pytest.raises(ValueError, match="ALGO=STEPS"):
        compare._parse_budgets(["sac"], 100, ["td3=5"])
    assert compare.main([*TINY, "--algos", "sac", "--algo-timesteps", "sac=abc", "--out", str(tmp_path)]) == 2


@pytest.mark.parametrize(("args", "message"), [
    (["--env", "Pendlum-v1"], "unknown environment id 'Pendlum-v1'"),
    (["--env", "CartPole-v1"], "action space Discrete(2): it is not a Box"),
    (["--total-timesteps", "0"], "the budget of sac (--total-timesteps, --algo-timesteps) must be >= 1 step, got 0"),
    (["--algo-timesteps", "sac=0"], "the budget of sac"),
    (["--workers", "0"], "--workers must be >= 1, got 0"),
    (["--eval-freq", "0"], "--eval-freq must be >= 1, got 0"),
    (["--eval-episodes", "0"], "--eval-episodes must be >= 1, got 0"),
])
def test_a_sweep_that_cannot_run_is_refused_before_any_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    """An unknown or unsupported environment, or a count below 1, exits 2 with the reason; nothing is written."""
    out = tmp_path / "out"
    assert compare.main([*TINY, "--algos", "sac", *args, "--out", str(out)]) == 2  # later flags win
    assert message in capsys.readouterr().err
    assert not out.exists()


def test_baseline_uses_the_protocol_and_stops_at_budget(tmp_path: Path) -> None:
    """PPO's rollouts overshoot; the run stops at the budget, evaluating at each multiple of eval_freq."""
    run = train_baseline("ppo", POINT_MASS_ID, 0, 250, tmp_path / "ppo", eval_freq=100, eval_episodes=3)
    with np.load(run / "evaluations.npz") as data:
        assert data["timesteps"].tolist() == [100, 200, 250]
        assert data["results"].shape == (3, 3) and data["costs"].shape == (3, 3)
        assert np.all(np.diff(data["wall_seconds"]) >= 0) and np.all(data["eval_seconds"] > 0)
    assert (run / "monitor.csv").read_text().startswith("#{")
    assert "eval/mean_reward" in (run / "progress.csv").read_text().splitlines()[0]
    assert "hyperparams_source: zoo_hyperparams.yaml:ppo.default" in (run / "config.yaml").read_text()


@pytest.mark.skipif(sys.platform == "win32", reason="advisory run-directory locks need fcntl")
def test_a_baseline_on_a_run_directory_in_use_is_refused_and_removes_nothing(tmp_path: Path) -> None:
    """A second process on a baseline's directory neither clears it (a restart clears) nor trains into it."""
    run = train_baseline("ppo", POINT_MASS_ID, 0, 100, tmp_path / "ppo", eval_freq=100, eval_episodes=1)
    before = {p.name: p.read_bytes() for p in sorted(run.rglob("*")) if p.is_file()}
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(run)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        with pytest.raises(RunDirInUse, match="is in use"):
            train_baseline("ppo", POINT_MASS_ID, 0, 100, run, eval_freq=100, eval_episodes=1)
        assert {p.name: p.read_bytes() for p in sorted(run.rglob("*")) if p.is_file()} == before
    finally:
        holder.kill()
        holder.wait()


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def test_sweep_outputs_and_resume(tmp_path: Path) -> None:
    out = tmp_path / "cmp"
    assert compare.main([*TINY, "--algos", "rehearse", "sac", "--threshold", "-30", "--out", str(out)]) == 0
    rows = _rows(out / "results.csv")
    assert list(rows[0]) == list(compare.CSV_COLUMNS)
    assert {(r["algo"], int(r["step"])) for r in rows} == {(a, s) for a in ("rehearse", "sac") for s in (100, 200)}
    for algo in ("rehearse", "sac"):
        run = out / "runs" / algo / "seed0"
        assert all((run / name).exists() for name in ("config.yaml", "monitor.csv", "progress.csv",
                                                     "evaluations.npz"))
    report = (out / "report.md").read_text()
    assert "## Return at fixed budgets" in report and "Reaching a return of -30" in report
    assert (out / "curves.png").stat().st_size > 10_000

    # A finished sweep is skipped entirely: nothing is retrained.
    before = {p: p.stat().st_mtime_ns for p in (out / "runs").rglob("evaluations.npz")}
    assert compare.main([*TINY, "--algos", "rehearse", "sac", "--out", str(out)]) == 0
    assert before == {p: p.stat().st_mtime_ns for p in (out / "runs").rglob("evaluations.npz")}

    # A sweep killed mid-run: the unfinished run is not finished and gets trained again.
    sac_eval = out / "runs" / "sac" / "seed0" / "evaluations.npz"
    with np.load(sac_eval) as data:
        partial = {k: data[k][:1] for k in data.files}
    np.savez(sac_eval, **partial)
    assert not compare.is_finished(sac_eval.parent, 200)
    assert compare.main([*TINY, "--algos", "rehearse", "sac", "--out", str(out)]) == 0
    assert compare.is_finished(sac_eval.parent, 200)
    assert before[out / "runs" / "rehearse" / "seed0" / "evaluations.npz"] == (
        out / "runs" / "rehearse" / "seed0" / "evaluations.npz").stat().st_mtime_ns


def test_a_rehearse_run_without_its_checkpoint_restarts_from_step_0(tmp_path: Path) -> None:
    """On a checkout without the (git-ignored) checkpoints an unfinished Rehearse run trains again from step 0
    into clean logs, as an unfinished baseline does, and, seeded, repeats the first attempt's evaluations."""
    out = tmp_path / "cmp"
    assert compare.main([*TINY, "--algos", "rehearse", "--out", str(out)]) == 0
    run = out / "runs" / "rehearse" / "seed0"
    with np.load(run / "evaluations.npz") as data:
        first = {k: data[k] for k in ("timesteps", "results", "ep_lengths")}
        np.savez(run / "evaluations.npz", **{k: data[k][:1] for k in data.files})  # killed after one evaluation
    shutil.rmtree(run / "checkpoints")
    assert compare.main([*TINY, "--algos", "rehearse", "--out", str(out)]) == 0
    with np.load(run / "evaluations.npz") as data:
        for key, value in first.items():
            np.testing.assert_array_equal(data[key], value)
    steps = [float(r["time/total_timesteps"]) for r in _rows(run / "progress.csv")]
    assert steps == sorted(set(steps))  # one run's rows, not two
    assert len(list((run / "tb").iterdir())) == 1


def _start_long_sweep(out: Path) -> subprocess.Popen[str]:
    """A one-run Rehearse sweep far too long to finish, in a session of its own; returns once it is training."""
    args = [*TINY, "--algos", "rehearse", "--out", str(out), "--workers", "1"]
    args[args.index("--total-timesteps") + 1] = "200000"
    proc = subprocess.Popen([sys.executable, "-m", "benchmarks.compare", *args], cwd=Path(__file__).parents[1],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.time() + 180
    while not (out / "runs" / "rehearse" / "seed0" / "progress.csv").exists() and time.time() < deadline:
        time.sleep(0.2)
    return proc


def _wait_until_free(run: Path, seconds: float) -> None:
    """Wait until no process trains into ``run`` (its lock can be taken), failing after ``seconds``."""
    deadline = time.time() + seconds
    while True:
        lock = RunDirLock(run)
        try:
            lock.acquire()
        except RunDirInUse:
            assert time.time() < deadline, f"{run} still in use after {seconds} s"
            time.sleep(0.2)
            continue
        lock.release()
        return


@pytest.mark.skipif(sys.platform == "win32", reason="process groups and POSIX signals")
@pytest.mark.parametrize("how", ["ctrl_c", "sigterm_to_the_sweep"])
def test_a_stopped_sweep_leaves_its_rehearse_run_checkpointed(tmp_path: Path, how: str) -> None:
    """Ctrl-C (SIGINT to the sweep's process group) or SIGTERM to the sweep process alone: the Rehearse run
    stops after its step with a checkpoint, no worker trains on, and the sweep exits 128 + the signal saying
    how to continue, without writing a report from the unfinished run."""
    out = tmp_path / "cmp"
    proc = _start_long_sweep(out)
    if how == "ctrl_c":
        os.killpg(proc.pid, signal.SIGINT)
    else:
        os.kill(proc.pid, signal.SIGTERM)
    _, err = proc.communicate(timeout=180)
    code = 130 if how == "ctrl_c" else 143
    assert proc.returncode == code and "re-run the same command to continue the sweep" in err, err
    run = out / "runs" / "rehearse" / "seed0"
    _wait_until_free(run, 10)
    steps = load_checkpoint(run / CHECKPOINT_NAME)["counters"]["num_timesteps"]
    assert 0 < steps < 200_000 and not (out / "report.md").exists()


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_a_killed_sweeps_worker_stops_with_a_checkpoint(tmp_path: Path) -> None:
    """SIGKILL to the sweep process (nothing it can catch): its worker notices, and its Rehearse run stops
    after its step with a checkpoint instead of training on without the sweep, and the worker exits (the
    sweep's output pipes, which it shares, close: communicate returns)."""
    out = tmp_path / "cmp"
    proc = _start_long_sweep(out)
    proc.kill()
    proc.communicate(timeout=60)
    run = out / "runs" / "rehearse" / "seed0"
    _wait_until_free(run, 60)
    steps = load_checkpoint(run / CHECKPOINT_NAME)["counters"]["num_timesteps"]
    assert 0 < steps < 200_000


def test_ray_path_on_a_local_instance(tmp_path: Path) -> None:
    pytest.importorskip("ray")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    out = tmp_path / "ray"
    code = compare.main([*TINY, "--algos", "sac", "td3", "--ray-address", "local", "--workers", "2",
                         "--out", str(out)])
    assert code == 0
    rows = _rows(out / "results.csv")
    assert {r["algo"] for r in rows} == {"sac", "td3"} and len(rows) == 4
    assert (out / "runs" / "td3" / "seed0" / "evaluations.npz").exists()


def test_report_statistics() -> None:
    rows = [{"algo": algo, "env": "E", "seed": seed, "step": step, "eval_mean_return": ret,
             "eval_cost": 0.0, "wall_seconds": float(step), "eval_seconds": 1.0}
            for algo, base in (("rehearse", 200.0), ("sac", 100.0)) for seed in range(3)
            for step, ret in ((1000, base * (1 + seed)), (2000, base * (2 + seed)))]
    curves = curves_by_algo(rows)
    assert first_reach(curves["rehearse"][0], 350.0) == (2000, 2000.0, 1999.0)
    assert first_reach(curves["sac"][0], 1e9) == (None, None, None)
    report = markdown_report(rows, "E", "cmd", threshold=300.0)
    assert "| rehearse | 600.0 [400.0, 800.0] (3), 2.00x SAC |" in report
    assert "SAC's IQM return at its budget (300.0 at 2,000 steps)" in report


def test_sweep_display_counts_the_steps_of_running_runs(tmp_path: Path) -> None:
    """The bar counts environment steps: finished runs their budget, running ones what progress.csv has reached."""
    sac, td3, ppo = compare.plan_runs(POINT_MASS_ID, ["sac", "td3", "ppo"], [0], {"sac": 1000, "td3": 500, "ppo": 300},
                                      tmp_path, 100, 2)
    Path(sac.run_dir).mkdir(parents=True)
    (Path(sac.run_dir) / "progress.csv").write_text("time/fps,time/total_timesteps\n10,200.0\n12,400.0\n")
    assert compare.latest_step(sac.run_dir) == 400 and compare.latest_step(td3.run_dir) == 0  # none yet
    display = compare._Display([sac, td3, ppo], [ppo], enabled=True)
    assert (display.bar.total, display.bar.n) == (1800, 300)
    display.update([sac, td3])
    assert display.bar.n == 700
    assert "runs done 1/3; running sac/seed0 400/1000 td3/seed0 0/500; failed 0" in str(display.bar.postfix)
    display.finish_one(td3, [sac], failed=True)
    assert display.bar.n == 1200 and "runs done 2/3; running sac/seed0 400/1000; failed 1" in str(display.bar.postfix)
    display.close()

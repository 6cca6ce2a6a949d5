"""Smoke runs of the real CLI and its answers to bad input (clear message, nothing lost)."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import train_agent
from agent.agent import CHECKPOINT_NAME
from agent.checkpoint import load_checkpoint

DEBUG = ["--preset", "debug", "--no-progress-bar", "--device", "cpu"]


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = train_agent.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_smoke_run_then_rerun_resumes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run_dir = tmp_path / "run"
    code, out, _ = run(capsys, "--env", "rehearse/PointMass-v0", "--total-timesteps", "100",
                       "--run-dir", str(run_dir), *DEBUG)
    assert code == 0 and f"Run directory: {run_dir}" in out
    assert (run_dir / CHECKPOINT_NAME).exists() and (run_dir / "config.yaml").exists()
    code, out, _ = run(capsys, "--env", "rehearse/PointMass-v0", "--total-timesteps", "150",
                       "--run-dir", str(run_dir), "--resume", *DEBUG)
    assert code == 0 and "resuming at step 100" in out
    assert load_checkpoint(run_dir / CHECKPOINT_NAME)["counters"]["num_timesteps"] == 150


def test_fresh_run_sets_earlier_logs_aside(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A fresh run into a directory whose checkpoint is gone (a new clone, a deleted checkpoints/, a run killed
    before its first checkpoint) would append a second run to the first one's logs: they are moved, unchanged,
    into aborted-<time>/ with a note naming them, and the run starts from step 0."""
    run_dir = tmp_path / "run"
    args = ["--env", "rehearse/PointMass-v0", "--total-timesteps", "100", "--run-dir", str(run_dir), *DEBUG]
    assert run(capsys, *args)[0] == 0
    for path in (run_dir / "checkpoints").iterdir():
        path.unlink()
    before = {p.relative_to(run_dir): p.read_bytes() for p in sorted(run_dir.rglob("*")) if p.is_file()}
    code, _, err = run(capsys, *args)
    assert code == 0
    assert f"note: {run_dir} holds logs (progress.csv, evaluations.npz, monitor.csv, tb/)" in err
    (aside,) = run_dir.glob("aborted-*")
    assert {p.relative_to(aside): p.read_bytes() for p in sorted(aside.rglob("*")) if p.is_file()} == before


def test_sigterm_stops_the_cli_with_a_checkpoint(tmp_path: Path) -> None:
    """A cluster's SIGTERM (or Ctrl-C) mid-run: the step finishes, a checkpoint is written, exit 128 + 15."""
    run_dir = tmp_path / "run"
    args = [sys.executable, "train_agent.py", "--env", "rehearse/PointMass-v0", "--total-timesteps", "1000000",
            "--run-dir", str(run_dir), *DEBUG]
    proc = subprocess.Popen(args, cwd=Path(__file__).parents[1], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    assert proc.stdout is not None
    assert proc.stdout.readline().startswith(f"Run directory: {run_dir}")
    deadline = time.time() + 120
    while not (run_dir / "progress.csv").exists() and time.time() < deadline:  # training is under way
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM
    assert "SIGTERM: stopping after this step with a checkpoint" in err
    steps = load_checkpoint(run_dir / CHECKPOINT_NAME)["counters"]["num_timesteps"]
    assert 0 < steps < 1_000_000
    assert f"Stopped by SIGTERM at step {steps}" in out and "run the same command to continue" in out


def test_mujoco_smoke_run_with_overrides(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, _ = run(capsys, "--env", "InvertedPendulum-v5", "--total-timesteps", "60", "--run-dir",
                     str(tmp_path), "--planner-name", "mppi", "--train-learning-starts", "30", *DEBUG)
    assert code == 0
    assert "name: mppi" in (tmp_path / "config.yaml").read_text()


def test_unknown_env_suggests_close_matches(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "--env", "HalfCheeta-v5", "--run-dir", str(tmp_path), *DEBUG)
    assert code == 2 and "HalfCheetah-v5" in err


def test_discrete_action_space_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "--env", "CartPole-v1", "--run-dir", str(tmp_path), *DEBUG)
    assert code == 2 and "Discrete" in err


def test_unknown_override_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "--env", "Pendulum-v1", "--run-dir", str(tmp_path), "--env-kwargs", "g",
                       *DEBUG)
    assert code == 2 and "key=value" in err


def test_nan_observation_stops_cleanly_and_keeps_checkpoint(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # the debug preset checkpoints at the first episode end after 100 steps; NaN comes at step ~170
    code, _, err = run(capsys, "--env", "tests.dummy_envs:NaNLaterEnv", "--env-kwargs", "nan_after=180",
                       "--total-timesteps", "200", "--run-dir", str(tmp_path), *DEBUG)
    assert code == 2 and "non-finite observation" in err and "episode" in err and "step" in err
    checkpoint = load_checkpoint(tmp_path / CHECKPOINT_NAME)
    assert checkpoint["counters"]["num_timesteps"] == 100


def test_truncated_checkpoint_gives_clear_error_and_is_kept(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["--env", "rehearse/PointMass-v0", "--total-timesteps", "100", "--run-dir", str(tmp_path), *DEBUG]
    assert run(capsys, *args)[0] == 0
    (tmp_path / "checkpoints" / "latest.1.pt").unlink(missing_ok=True)  # any one before: no fallback
    path = tmp_path / CHECKPOINT_NAME
    damaged = path.read_bytes()[:1000]
    path.write_bytes(damaged)
    code, _, err = run(capsys, *args)
    assert code == 2 and "truncated" in err and "Nothing was changed" in err
    assert path.read_bytes() == damaged


def test_evaluate_plays_a_trained_run_without_training_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_dir = tmp_path / "run"
    code, _, err = run(capsys, "--run-dir", str(run_dir), "--evaluate", "3")
    assert code == 2 and "does not exist" in err and "--run-dir" in err
    assert run(capsys, "--env", "rehearse/PointMass-v0", "--total-timesteps", "100", "--run-dir", str(run_dir),
               *DEBUG)[0] == 0
    before = (run_dir / CHECKPOINT_NAME).read_bytes()
    code, out, _ = run(capsys, "--run-dir", str(run_dir), "--evaluate", "3", "--evaluate-seed", "7")
    assert code == 0 and "rehearse/PointMass-v0, checkpoint at step 100" in out
    assert "3 deterministic episode(s), reset seeds 7 to 9" in out
    returns = out.split("returns: ")[1].split(", ")
    assert len(returns) == 3 and all(float(r) <= 0 for r in returns)  # PointMass pays minus the distance
    assert run(capsys, "--run-dir", str(run_dir), "--evaluate", "3", "--evaluate-seed", "7")[1] == out  # repeatable
    assert (run_dir / CHECKPOINT_NAME).read_bytes() == before
    assert run(capsys, "--run-dir", str(run_dir), "--evaluate", "0")[0] == 2


def test_threads_sets_torch_threads_and_refuses_zero(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import torch

    before = torch.get_num_threads()
    try:
        code, _, err = run(capsys, "--threads", "0", "--run-dir", str(tmp_path), *DEBUG)
        assert code == 2 and "--threads must be >= 1" in err
        code, _, _ = run(capsys, "--env", "rehearse/PointMass-v0", "--total-timesteps", "20", "--threads", "1",
                         "--run-dir", str(tmp_path / "run"), *DEBUG)
        assert code == 0 and torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)

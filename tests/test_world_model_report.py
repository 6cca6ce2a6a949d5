"""The world-model report: open-loop error against horizon, frames grid, TensorBoard, clear errors."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from agent import MBRLAgent, resolve_config
from benchmarks import world_model_report as wmr
from envs import POINT_MASS_ID
from tests.test_pixel_agent import tiny_pixel_config


def _train_pixels(run: Path, objective: str, steps: int) -> Path:
    config = tiny_pixel_config(**{"model.objective": objective, "train.eval_freq": 0})
    MBRLAgent(config.env_id, config, run_dir=run).learn(steps, progress_bar=False)
    return run


@pytest.fixture(scope="module")
def jepa_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _train_pixels(tmp_path_factory.mktemp("jepa"), "jepa", 70)


def _tensorboard(run: Path) -> EventAccumulator:
    events = EventAccumulator(str(run / "tb"), size_guidance={"images": 0, "scalars": 0})
    events.Reload()
    return events


def test_pixel_report_writes_table_json_frames_and_tensorboard(
    jepa_run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    progress = (jepa_run / "progress.csv").read_text()
    assert wmr.main([str(jepa_run), "--horizons", "1", "5", "1000", "--sequences", "6", "--seed", "1"]) == 0
    out = capsys.readouterr().out
    assert "| horizon | normalised error | cosine_distance | windows |" in out

    report = json.loads((jepa_run / wmr.REPORT_JSON).read_text())
    assert report["model"] == "LatentWorldModel (jepa)" and report["num_timesteps"] == 70
    rows = {row["horizon"]: row for row in report["horizons"]}
    assert not rows[1000]["fits"] and rows[1000]["error"] is None  # no 1000-step episode in 70 steps
    assert rows[1]["fits"] and rows[5]["fits"] and report["window_length"] == 5
    for h in (1, 5):
        assert math.isfinite(rows[h]["error"]) and rows[h]["error"] >= 0
        assert 0 < rows[h]["windows"] <= 6 and math.isfinite(rows[h]["cosine_distance"])

    text = (jepa_run / wmr.REPORT_MD).read_text()
    assert f"| 1000 | {wmr.NOT_AVAILABLE} |" in text and "nearest (cosine similarity)" in text
    assert f"python -m benchmarks.world_model_report {jepa_run} --horizons 1 5 1000" in text
    assert (jepa_run / wmr.FRAMES_PNG).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (jepa_run / "progress.csv").read_text() == progress  # loading leaves the run's logs alone

    events = _tensorboard(jepa_run)
    scalars = events.Tags()["scalars"]
    assert {"world_model_report/error_h1", "world_model_report/error_h5"} <= set(scalars)
    assert "world_model_report/error_h1000" not in scalars
    assert [e.step for e in events.Scalars("world_model_report/error_h1")] == [70]
    assert "world_model_report/frames" in events.Tags()["images"]


def test_reconstruction_report_adds_pixel_error(tmp_path: Path) -> None:
    run = _train_pixels(tmp_path, "reconstruction", 50)
    report = wmr.make_report(run, horizons=[1, 2], sequences=4)
    assert report["extra_metrics"] == ["cosine_distance", "pixel_mse"] and report["frames"] == wmr.FRAMES_PNG
    for row in report["horizons"]:
        assert row["fits"] and 0 <= row["pixel_mse"] <= 1 and math.isfinite(row["error"])
    assert "decoded" in (run / wmr.REPORT_MD).read_text()
    assert "world_model_report/pixel_mse_h2" in _tensorboard(run).Tags()["scalars"]


def test_state_report_for_the_robotics_model(tmp_path: Path) -> None:
    config = resolve_config(POINT_MASS_ID, {"device": "cpu", "train.eval_freq": 0}, preset="debug")
    MBRLAgent(POINT_MASS_ID, config, run_dir=tmp_path).learn(110, progress_bar=False)
    assert wmr.main([str(tmp_path), "--sequences", "4"]) == 0
    report = json.loads((tmp_path / wmr.REPORT_JSON).read_text())
    assert report["model"].startswith("RoboticsWorldModel") and report["frames"] is None
    assert report["window_length"] == 50  # PointMass episodes are 50 steps: every default horizon fits
    errors = {row["horizon"]: row["error"] for row in report["horizons"]}
    assert list(errors) == list(wmr.DEFAULT_HORIZONS) and all(math.isfinite(e) for e in errors.values())
    assert errors[1] < 1.0  # one step ahead beats predicting the mean state
    assert not (tmp_path / wmr.FRAMES_PNG).exists()
    assert "world_model_report/error_h50" in _tensorboard(tmp_path).Tags()["scalars"]


def test_clear_errors_without_a_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert wmr.main([str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "checkpoints/latest.pt is missing" in err and "train_agent.py" in err
    assert wmr.main([str(tmp_path / "nowhere")]) == 2
    assert "is not a directory" in capsys.readouterr().err
    assert wmr.main([str(tmp_path), "--horizons", "0"]) == 2
    assert ">= 1" in capsys.readouterr().err


def test_normalised_mse_is_one_for_predicting_the_mean() -> None:
    rng = np.random.default_rng(0)
    target = rng.normal(size=(4, 50, 3)) * np.array([1.0, 10.0, 0.0])  # (T+1, N, D); last dim constant
    mean = np.broadcast_to(target[1:].mean(axis=(0, 1)), target.shape)
    np.testing.assert_allclose(wmr.normalised_mse(mean, target, per_dim=True)[1:].mean(), 1.0, rtol=0.1)
    np.testing.assert_allclose(wmr.normalised_mse(target, target, per_dim=False), 0.0)
    pooled = wmr.normalised_mse(mean, target, per_dim=False)
    assert pooled.shape == (4,) and abs(pooled[1:].mean() - 1.0) < 0.1

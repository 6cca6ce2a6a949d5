"""benchmarks.ball_probe: data, frame stacking, the landing read-off and a tiny end-to-end run."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from benchmarks import ball_probe
from envs.ball_catch import landing_bin


def test_collect_matches_the_environment_truth() -> None:
    throws = ball_probe.collect(3, seed=5)
    for frames, actions, ball, rewards in zip(throws.frames, throws.actions, throws.ball, throws.rewards,
                                              strict=True):
        assert frames.dtype == np.uint8 and frames.shape[1:] == (64, 64, 3)
        assert len(frames) == len(actions) + 1 == len(ball) == len(rewards) + 1
        assert abs(ball[-1, 1]) < 1e-9  # the last position is the floor contact
    assert throws.landing_bin.tolist() == [landing_bin(x) for x in throws.landing_x]
    assert np.allclose([b[-1, 0] for b in throws.ball], throws.landing_x)


def test_stack_frames_pairs_each_frame_with_the_previous() -> None:
    frames = np.arange(4, dtype=np.uint8).reshape(4, 1, 1, 1).repeat(3, axis=-1)
    stacked = ball_probe.stack_frames(frames)
    assert stacked.shape == (4, 1, 1, 6)
    assert stacked[:, 0, 0, 0].tolist() == [0, 0, 1, 2] and stacked[:, 0, 0, 3].tolist() == [0, 1, 2, 3]


def test_crossing_interpolates_the_first_floor_contact() -> None:
    positions = np.array([[0.0, 2.0], [1.0, 1.0], [2.0, -1.0], [3.0, -3.0]])
    assert ball_probe._crossing(positions) == 1.5
    assert ball_probe._crossing(np.array([[0.0, 3.0], [1.0, 2.0], [2.0, 2.5]])) == 1.0  # never lands: lowest point


def test_tiny_end_to_end_run(tmp_path: Path) -> None:
    code = ball_probe.main(["--objectives", "jepa", "--episodes", "6", "--test-episodes", "4", "--updates", "2",
                            "--batch-size", "4", "--length", "4", "--ks", "2", "5", "--out", str(tmp_path)])
    assert code == 0
    results = json.loads((tmp_path / "results.json").read_text())
    accuracy = results["objectives"]["jepa"]["probe"]["accuracy"]
    assert set(accuracy) == {"2", "5"} and all(0.0 <= a <= 1.0 for a in accuracy.values())
    assert "| jepa |" in (tmp_path / "report.md").read_text()


def test_objectives_train_in_parallel_workers(tmp_path: Path) -> None:
    code = ball_probe.main(["--objectives", "jepa", "reconstruction", "--workers", "2", "--episodes", "4",
                            "--test-episodes", "2", "--updates", "2", "--batch-size", "4", "--length", "4",
                            "--ks", "2", "--out", str(tmp_path)])
    assert code == 0
    results = json.loads((tmp_path / "results.json").read_text())["objectives"]
    assert set(results) == {"jepa", "reconstruction"}
    assert all(len(r["history"]) == 1 and r["history"][0]["update"] == 2 for r in results.values())
    assert (tmp_path / "models" / "jepa.pt").exists() and (tmp_path / "models" / "reconstruction.pt").exists()

"""benchmarks.ball_probe: data, frame stacking, the landing read-off and a tiny end-to-end run."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

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


def test_stack_frames_keeps_the_oldest_first() -> None:
    frames = np.arange(3, dtype=np.uint8).reshape(3, 1, 1, 1).repeat(3, axis=-1)
    stacked = ball_probe.stack_frames(frames, stack=3)
    assert stacked.shape == (3, 1, 1, 9)
    assert stacked[:, 0, 0, ::3].tolist() == [[0, 0, 0], [0, 0, 1], [0, 1, 2]]


def test_probe_data_pairs_every_imagined_latent_with_the_true_ball() -> None:
    throws = ball_probe.collect(2, seed=3)
    model = ball_probe._new_model("jepa", stack=3)
    real, real_ball = ball_probe._probe_data(model, throws, imagined=False)
    both, both_ball = ball_probe._probe_data(model, throws, imagined=True)
    steps = [len(a) for a in throws.actions]
    assert real.shape == (sum(t + 1 for t in steps), 64) and np.array_equal(real_ball, np.concatenate(throws.ball))
    assert both.shape == (sum((t + 1) * (t + 2) // 2 for t in steps), 64) and len(both_ball) == len(both)
    # the first throw's rollout from frame 0 comes first: its start is frame 0's encoding
    assert np.allclose(both[0], real[0], atol=1e-5) and np.array_equal(both_ball[: steps[0] + 1], throws.ball[0])


def test_imagined_landing_never_sees_frames_after_k() -> None:
    throws = ball_probe.collect(1, seed=4)
    model = ball_probe._new_model("jepa", stack=2)
    probe = ball_probe.fit_probe(model, throws, kind="linear", imagined=False)
    frames, actions = throws.frames[0], throws.actions[0]
    x, positions = ball_probe.imagine_landing(model, probe, frames, actions, k=3, horizon=20)
    scrambled = frames.copy()
    scrambled[3:] = 255 - scrambled[3:]
    x2, positions2 = ball_probe.imagine_landing(model, probe, scrambled, actions, k=3, horizon=20)
    assert positions.shape == (21, 2) and x == x2 and np.array_equal(positions, positions2)


def test_landing_point_stops_where_the_model_ends_the_episode() -> None:
    positions = np.array([[0.0, 3.0], [1.0, 2.0], [2.0, 1.0], [3.0, -1.0], [4.0, -3.0]])
    goes_on = np.ones(4)
    assert ball_probe.landing_point(positions, goes_on) == 2.5  # no predicted end: the floor crossing
    ends_early = np.array([1.0, 0.2, 1.0, 1.0])  # the model ends the episode on step 1 -> position 2
    assert ball_probe.landing_point(positions, ends_early) == 2.0  # still above the floor there: that x
    ends_late = np.array([1.0, 1.0, 1.0, 0.1])
    assert ball_probe.landing_point(positions, ends_late) == 2.5  # crossed before the end: the crossing


def test_crossing_interpolates_the_first_floor_contact() -> None:
    positions = np.array([[0.0, 2.0], [1.0, 1.0], [2.0, -1.0], [3.0, -3.0]])
    assert ball_probe._crossing(positions) == 1.5
    assert ball_probe._crossing(np.array([[0.0, 3.0], [1.0, 2.0], [2.0, 2.5]])) == 1.0  # never lands: lowest point


def test_tiny_end_to_end_run(tmp_path: Path) -> None:
    code = ball_probe.main(["--objectives", "jepa", "--episodes", "6", "--test-episodes", "4", "--updates", "2",
                            "--batch-size", "4", "--length", "4", "--ks", "2", "5", "--stack", "3",
                            "--probe-steps", "20", "--out", str(tmp_path)])
    assert code == 0
    results = json.loads((tmp_path / "results.json").read_text())
    accuracy = results["objectives"]["jepa"]["probe"]["accuracy"]
    assert set(accuracy) == {"2", "5"} and all(0.0 <= a <= 1.0 for a in accuracy.values())
    assert results["stack"] == 3 and results["probe_fit"] == "imagined"
    assert "| jepa |" in (tmp_path / "report.md").read_text()


def test_objectives_train_in_parallel_workers(tmp_path: Path) -> None:
    code = ball_probe.main(["--objectives", "jepa", "reconstruction", "--workers", "2", "--episodes", "4",
                            "--test-episodes", "2", "--updates", "2", "--batch-size", "4", "--length", "4",
                            "--ks", "2", "--probe-steps", "20", "--out", str(tmp_path)])
    assert code == 0
    results = json.loads((tmp_path / "results.json").read_text())["objectives"]
    assert set(results) == {"jepa", "reconstruction"}
    assert all(len(r["history"]) == 1 and r["history"][0]["update"] == 2 for r in results.values())
    assert (tmp_path / "models" / "jepa.pt").exists() and (tmp_path / "models" / "reconstruction.pt").exists()


def test_reusing_a_model_with_another_stack_is_refused_clearly(tmp_path: Path) -> None:
    common = ["--objectives", "jepa", "--episodes", "3", "--test-episodes", "2", "--updates", "1", "--batch-size", "2",
              "--length", "3", "--ks", "2", "--probe-steps", "5", "--out", str(tmp_path)]
    assert ball_probe.main(common) == 0
    with pytest.raises(SystemExit, match="--stack it was trained with"):
        ball_probe.main([*common, "--stack", "3", "--reuse-models"])


def test_training_stops_when_its_time_budget_is_spent(tmp_path: Path) -> None:
    throws = ball_probe.collect(3, seed=0)
    model, history = ball_probe.train_model(throws, "jepa", updates=50, batch_size=2, length=3, seed=0,
                                            save_to=tmp_path / "m.pt", max_seconds=0.0)
    assert [h["update"] for h in history] == [1]  # the first update passes a zero budget
    assert (tmp_path / "m.pt").exists() and next(model.parameters()).device.type == "cpu"


def test_train_only_then_reuse_keeps_the_training_record(tmp_path: Path) -> None:
    common = ["--objectives", "jepa", "--episodes", "4", "--batch-size", "4", "--length", "4", "--out", str(tmp_path)]
    assert ball_probe.main([*common, "--updates", "3", "--train-only"]) == 0
    trained = json.loads((tmp_path / "results.json").read_text())
    assert "probe" not in trained["objectives"]["jepa"] and trained["objectives"]["jepa"]["history"][-1]["update"] == 3
    assert ball_probe.main([*common, "--reuse-models", "--test-episodes", "2", "--ks", "2", "--probe-steps", "5"]) == 0
    reread = json.loads((tmp_path / "results.json").read_text())
    assert reread["train_command"] == trained["command"] and "--train-only" in reread["train_command"]
    assert reread["objectives"]["jepa"]["history"] == trained["objectives"]["jepa"]["history"]
    assert "| jepa | 3 |" in (tmp_path / "report.md").read_text()


def test_reusing_a_missing_or_damaged_model_is_refused_before_collecting(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    def no_collecting(*args: object, **kwargs: object) -> None:
        raise AssertionError("throws were collected before the models were checked")

    monkeypatch.setattr(ball_probe, "collect", no_collecting)
    common = ["--objectives", "jepa", "--reuse-models", "--out", str(tmp_path)]
    with pytest.raises(SystemExit, match="found no jepa model"):
        ball_probe.main(common)
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "jepa.pt").write_bytes(b"not a model")
    with pytest.raises(SystemExit, match="not a readable model"):
        ball_probe.main(common)


def test_a_worker_ends_when_its_parent_is_gone(monkeypatch: pytest.MonkeyPatch) -> None:
    import os
    import threading

    ended: list[int] = []
    done = threading.Event()

    def fake_exit(code: int) -> None:
        ended.append(code)
        done.set()

    monkeypatch.setattr(ball_probe.os, "_exit", fake_exit)
    ball_probe._exit_with_parent(os.getppid(), 0.01)  # the parent is alive: nothing happens
    assert not done.wait(0.3)
    ball_probe._exit_with_parent(-1, 0.01)  # a parent id that is not ours: as if it had died
    assert done.wait(10) and ended == [1]


def test_held_out_throws_overlapping_the_training_ones_are_refused_before_training(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    def no_collecting(*args: object, **kwargs: object) -> None:
        raise AssertionError("throws were collected before the arguments were checked")

    monkeypatch.setattr(ball_probe, "collect", no_collecting)
    with pytest.raises(SystemExit):
        ball_probe.main(["--episodes", "10", "--test-seed", "5", "--out", str(tmp_path)])
    assert "overlap the training throws" in capsys.readouterr().err

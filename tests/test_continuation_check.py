"""The continuation check: steps to each termination, the table of predicted continuations, clear errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from agent import MBRLAgent, resolve_config
from benchmarks import continuation_check
from envs import POINT_MASS_ID


def test_steps_to_termination_count_down_within_terminated_episodes_only() -> None:
    terminated = np.array([False, False, True, False, False, False, True, False])
    truncated = np.array([False, False, False, False, True, False, False, False])
    expected = [2, 1, 0, -1, -1, 1, 0, -1]  # episode 2 was truncated; the last one has not ended
    np.testing.assert_array_equal(continuation_check.steps_to_termination(terminated, truncated), expected)


@pytest.mark.parametrize("source", ["transition", "next_state"])
def test_table_shows_the_continuation_around_terminations(
    source: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    env_id = "InvertedPendulum-v5"  # random actions topple the pole within tens of steps
    overrides = {"device": "cpu", "train.eval_freq": 0, "model.continuation_from": source}
    MBRLAgent(env_id, resolve_config(env_id, overrides, preset="debug"), run_dir=tmp_path).learn(
        120, progress_bar=False)
    assert continuation_check.main([str(tmp_path), "--before", "1", "3"]) == 0
    out = capsys.readouterr().out
    assert f"continuation read from the {source.replace('_', ' ')}" in out
    rows = [line.strip("| ").split(" | ") for line in out.splitlines() if line.startswith("| ") and "---" not in line]
    assert [row[0] for row in rows[1:]] == [
        "terminal transitions", "1 step before one", "3 steps before one",
        "all others (more than 3 steps before one, or none)"]
    counts = [int(row[1]) for row in rows[1:]]
    assert counts[0] > 0 and sum(counts) <= 120
    assert all(0.0 <= float(cell) <= 1.0 for row in rows[1:] if row[2] != "-" for cell in row[2:])


def test_a_run_without_terminations_or_checkpoint_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert continuation_check.main([str(tmp_path / "missing")]) == 2
    assert "not a directory" in capsys.readouterr().err
    config = resolve_config(POINT_MASS_ID, {"device": "cpu", "train.eval_freq": 0}, preset="debug")
    MBRLAgent(POINT_MASS_ID, config, run_dir=tmp_path).learn(60, progress_bar=False)
    assert continuation_check.main([str(tmp_path)]) == 2
    assert "ended an episode by termination" in capsys.readouterr().err

"""The value check: return-to-go per episode, a table of the learned value beside it, clear errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from agent import MBRLAgent, resolve_config
from benchmarks import value_check
from envs import POINT_MASS_ID


def test_returns_to_go_stop_at_each_episode_end() -> None:
    rewards = np.array([1.0, 1.0, 1.0, 2.0, 2.0])
    ends = np.array([False, False, True, False, True])
    expected = [1 + 0.5 + 0.25, 1 + 0.5, 1.0, 2 + 1.0, 2.0]
    np.testing.assert_allclose(value_check.returns_to_go(rewards, ends, 0.5), expected)


@pytest.mark.parametrize("kind", ["state", "policy"])
def test_table_shows_the_learned_value_beside_the_returns(
    kind: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    overrides = {"device": "cpu", "train.eval_freq": 0, "model.value_function": True, "model.value_kind": kind}
    config = resolve_config(POINT_MASS_ID, overrides, preset="debug")
    MBRLAgent(POINT_MASS_ID, config, run_dir=tmp_path).learn(110, progress_bar=False)
    assert value_check.main([str(tmp_path), "--blocks", "4"]) == 0
    out = capsys.readouterr().out
    header = "| stored steps | mean reward | return-to-go | " + (
        "Q(s, stored a) | Q(s, pi(s)) |" if kind == "policy" else "V(s) |")
    assert header in out
    rows = [line for line in out.splitlines() if line.startswith("| ") and line[2].isdigit()]
    assert len(rows) == 4 and rows[0].startswith("| 0-") and rows[-1].startswith(("| 82-110 |", "| 83-110 |"))
    assert all(np.isfinite(float(cell)) for row in rows for cell in row.strip("| ").split(" | ")[1:])


def test_a_run_without_a_value_or_checkpoint_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert value_check.main([str(tmp_path / "missing")]) == 2
    assert "not a directory" in capsys.readouterr().err
    config = resolve_config(POINT_MASS_ID, {"device": "cpu", "train.eval_freq": 0, "model.value_function": False},
                            preset="debug")
    MBRLAgent(POINT_MASS_ID, config, run_dir=tmp_path).learn(60, progress_bar=False)
    assert value_check.main([str(tmp_path)]) == 2
    assert "no learned terminal value" in capsys.readouterr().err

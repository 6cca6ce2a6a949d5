"""benchmarks.safety_head: a run's safety head judged on another run's stored transitions."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from agent import MBRLAgent, resolve_config
from agent.checkpoint import load_checkpoint
from benchmarks import safety_head

SPEED = "tests.dummy_envs:SpeedEnv"  # cost 1 on each step whose action is over 0.5


def _run(tmp_path: Path, name: str, seed: int, env_id: str = SPEED) -> Path:
    overrides = {"device": "cpu", "seed": seed, "planner.cost_limit": 25.0, "planner.cost_multiplier_min": -1.0,
                 "train.eval_freq": 1000}
    agent = MBRLAgent(env_id, resolve_config(env_id, overrides, preset="debug"), run_dir=tmp_path / name)
    agent.learn(100, progress_bar=False)
    path = tmp_path / f"{name}.pt"
    agent.save(path)
    return path


def test_judges_the_head_on_another_runs_transitions(tmp_path: Path) -> None:
    judged, other = _run(tmp_path, "a", 0), _run(tmp_path, "b", 1)
    safety_head.main(["--checkpoint", str(judged), "--transitions", str(other), "--env", SPEED,
                      "--out", str(tmp_path / "out")])
    (row,) = json.loads((tmp_path / "out" / "results.json").read_text())["rows"]
    costs = np.asarray(load_checkpoint(other)["buffer"]["costs"])[:100]
    assert (row["transitions"], row["costly"]) == (100, int((costs > 0).sum())) and row["costly"] > 0
    payload = load_checkpoint(judged)
    value = payload["cost_multiplier"]["value"]
    scale = 1 / (1 + value) if value >= 0 else np.exp(-value)
    assert row["planner"]["threshold"] == pytest.approx(25 / 1000 * scale)  # the checkpoint's multiplier
    assert row["nominal"]["threshold"] == pytest.approx(0.025) and row["half"]["threshold"] == 0.5
    for name in ("planner", "nominal", "half"):
        assert 0.0 <= row[name]["recall"] <= 1.0 and 0.0 <= row[name]["brier"] <= 1.0
    assert row["nominal"]["recall"] >= row["half"]["recall"]  # a lower threshold flags at least as much
    assert "| nominal 0.0250 |" in (tmp_path / "out" / "results.md").read_text()


@pytest.mark.filterwarnings("ignore:planner.cost_limit is 25.0")  # the foreign task reports no costs
def test_refuses_transitions_of_another_task(tmp_path: Path) -> None:
    judged, foreign = _run(tmp_path, "a", 0), _run(tmp_path, "c", 0, "tests.dummy_envs:EchoEnv")
    with pytest.raises(ValueError, match="not tests.dummy_envs:SpeedEnv"):
        safety_head.main(["--checkpoint", str(judged), "--transitions", str(foreign), "--env", SPEED,
                          "--out", str(tmp_path / "o")])

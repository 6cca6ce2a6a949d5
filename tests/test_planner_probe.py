"""The planner probe: one checkpoint evaluated under several planner settings, with clear errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from agent import MBRLAgent, resolve_config
from benchmarks import planner_probe
from benchmarks.world_model_report import ReportError
from envs import POINT_MASS_ID


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("probe_run")
    config = resolve_config(POINT_MASS_ID, {"device": "cpu", "train.eval_freq": 0}, preset="debug")
    MBRLAgent(POINT_MASS_ID, config, run_dir=path).learn(80, progress_bar=False)
    return path


def test_parse_variant_reads_planner_settings() -> None:
    assert planner_probe.parse_variant("wide:num_candidates=64, iterations=2") == (
        "wide", {"planner.num_candidates": "64", "planner.iterations": "2"})
    assert planner_probe.parse_variant("H16:planner.horizon=16") == ("H16", {"planner.horizon": "16"})
    for bad in ["H16", "H16:", ":horizon=16", "H16:horizon", "H16:horizon=", "a:horizon=4,"]:
        with pytest.raises(ReportError, match="NAME:key=value"):
            planner_probe.parse_variant(bad)


def _rows(out: str) -> dict[str, list[str]]:
    rows = [line.strip("| ").split(" | ") for line in out.splitlines() if line.startswith("| ")][1:]  # past the header
    return {row[0]: row[1:] for row in rows}


def test_variants_are_played_on_the_same_episodes(run_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = [str(run_dir), "--episodes", "2", "--seed", "5", "--variant", "same:horizon=4",
            "--variant", "short:horizon=2,num_candidates=16,num_elites=4"]
    assert planner_probe.main(argv) == 0
    rows = _rows(capsys.readouterr().out)
    assert list(rows) == ["as trained", "same", "short"]
    assert rows["as trained"][0].startswith("cem H=4 ") and rows["short"][0] == (
        "horizon=2, num_candidates=16, num_elites=4")
    # the debug preset plans 4 steps ahead: restating it plays exactly the same episodes
    assert rows["same"][1:-1] == rows["as trained"][1:-1]
    assert all(np.isfinite(float(cell)) for row in rows.values() for cell in row[1:])
    agent = MBRLAgent.load(run_dir / "checkpoints" / "latest.pt")
    expected = agent.evaluate(n_episodes=2, seed=5).returns.mean()
    assert float(rows["as trained"][1]) == pytest.approx(expected, abs=0.051)


def test_bad_variants_and_runs_are_refused(
    run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cases = [
        ([str(tmp_path / "missing")], "not a directory"),
        ([str(run_dir), "--variant", "x:depth=3"], "unknown config key 'planner.depth'"),
        ([str(run_dir), "--variant", "x:horizon=long"], "expected int"),
        ([str(run_dir), "--variant", "x:particles=3"], "--variant x:"),
        ([str(run_dir), "--variant", "x:num_elites=500", "--episodes", "1"], "--variant x:"),
        ([str(run_dir), "--variant", "x:momentum=1"],
         "--variant x: sampling settings: SamplingConfig: 0 <= momentum < 1"),
        ([str(run_dir), "--variant", "x:name=beam"],
         "--variant x: planner.name must be one of cem, mppi, random, got 'beam'"),
    ]
    for argv, message in cases:
        assert planner_probe.main(argv) == 2
        assert message in capsys.readouterr().err

"""agent.timing: exclusive per-phase seconds that add up to a run's wall-clock."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

import agent.timing as timing
from agent import MBRLAgent, resolve_config
from agent.timing import PHASES, PhaseClock, profile_summary


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_nested_phases_charge_each_second_once(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeClock()
    monkeypatch.setattr(timing.time, "perf_counter", fake)
    clock = PhaseClock()
    clock.start_session()
    fake.now = 1.0  # 1 s of bookkeeping
    with clock.phase("eval"):
        fake.now = 3.0  # 2 s evaluating
        with clock.phase("checkpoint"):
            fake.now = 7.0  # 4 s writing, not charged to eval
        fake.now = 8.0  # 1 s more evaluating
    fake.now = 8.5
    clock.stop_session()
    totals = clock.snapshot()
    assert totals["eval"] == 3.0 and totals["checkpoint"] == 4.0 and totals["other"] == 1.5
    assert sum(totals.values()) == 8.5
    assert profile_summary(totals).splitlines()[0].split()[0] == "checkpoint"  # largest first


def test_unknown_phase_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown phase 'plann'"):
        with PhaseClock().phase("plann"):
            pass


def test_a_runs_breakdown_adds_up_to_its_wall_clock_and_survives_resume(tmp_path: Path) -> None:
    config = resolve_config("InvertedPendulum-v5", preset="debug")
    config.train.eval_freq, config.train.log_interval, config.train.checkpoint_freq = 100, 100, 100
    agent = MBRLAgent("InvertedPendulum-v5", config, run_dir=tmp_path)
    start = time.perf_counter()
    agent.learn(250, progress_bar=False)
    wall = time.perf_counter() - start
    totals = agent.clock.snapshot()
    assert set(totals) == {*PHASES, "other"}
    assert sum(totals.values()) == pytest.approx(wall, rel=0.05)
    assert totals["other"] < 0.05 * wall  # the named phases account for the run's time
    assert min(totals[p] for p in ("setup", "env", "plan", "train", "eval", "log", "checkpoint")) > 0
    resumed = MBRLAgent("InvertedPendulum-v5", config, run_dir=tmp_path)
    assert resumed.clock.totals["train"] >= totals["train"] * 0.99  # restored from the checkpoint


def test_time_between_sessions_is_not_charged(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeClock()
    monkeypatch.setattr(timing.time, "perf_counter", fake)
    clock = PhaseClock()
    fake.now = 5.0  # built, not learning yet
    clock.start_session()
    fake.now = 6.0
    clock.stop_session()
    fake.now = 100.0  # an idle agent, then saved
    assert clock.snapshot() == {**dict.fromkeys((*PHASES, "other"), 0.0), "other": 1.0}

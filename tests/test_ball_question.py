"""benchmarks.ball_question (the ball-landing question set) and its place in benchmarks.physical_reasoning:
frozen digests, answers, the landing probe on a known function, the world-model methods end to end at a tiny
size, and results of earlier runs kept."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from benchmarks import physical_reasoning
from benchmarks.ball_question import (
    SEEN,
    STACK,
    BallQuestions,
    ball_questions,
    bins_of,
    fit_landing_probe,
    imagined_landings,
    seen_latents,
)
from world_models.config import LatentConfig
from world_models.latent import LatentWorldModel

RESULTS = Path(__file__).resolve().parent.parent / "benchmarks" / "results" / "physical_reasoning"


@pytest.fixture(scope="module")
def three() -> BallQuestions:
    return ball_questions(3, seed=1_000_000)


def test_questions_are_deterministic_and_answer_the_landing_bin(three: BallQuestions) -> None:
    again = ball_questions(3, seed=1_000_000)
    assert again.digest() == three.digest()
    assert ball_questions(3, seed=1_000_001).digest() != three.digest()
    throws = three.throws
    assert three.answers.tolist() == (throws.landing_bin + 1).tolist()
    assert bins_of(throws.landing_x).tolist() == three.answers.tolist()
    seen, after = three.seen_frames(), three.next_frames()
    assert seen.shape == (3, SEEN, 64, 64, 3 * STACK) and seen.dtype == np.uint8
    assert np.array_equal(seen[:, :, :, :, 3:], np.stack([f[:SEEN] for f in throws.frames]))  # latest frame last
    assert np.array_equal(after[:, :, :, 3:], np.stack([f[SEEN] for f in throws.frames]))
    assert np.array_equal(after[:, :, :, :3], np.stack([f[SEEN - 1] for f in throws.frames]))


def test_the_description_gives_the_seen_track_only(three: BallQuestions) -> None:
    text = three.describe(0)
    ball = three.throws.ball[0]
    assert text.count("), (") == SEEN - 1  # one pair per seen frame
    assert f"({ball[SEEN - 1, 0]:.2f}, {ball[SEEN - 1, 1]:.2f})" in text
    assert f"({ball[SEEN, 0]:.2f}, {ball[SEEN, 1]:.2f})" not in text


def test_the_frozen_ball_test_sets_are_unchanged(three: BallQuestions) -> None:
    assert physical_reasoning.FROZEN_BALL_SETS[(3, 1_000_000)] == three.digest()
    # the committed results' 1,000 throws: seconds to rebuild
    assert physical_reasoning.FROZEN_BALL_SETS[(1000, 1_000_000)] == ball_questions(1000, 1_000_000).digest()
    committed = json.loads((RESULTS / "results.json").read_text())["tasks"]
    if "ball" in committed:
        record = committed["ball"]
        assert physical_reasoning.FROZEN_BALL_SETS[(record["test_throws"], record["test_seed"])] == \
            record["test_sha256"]


def test_bins_clip_to_the_floor() -> None:
    assert bins_of(np.array([-3.0, 0.0, 2.49, 2.51, 7.6, 10.0, 14.0])).tolist() == [1, 1, 1, 2, 4, 4, 4]


def test_the_landing_probe_fits_a_known_function() -> None:
    rng = np.random.default_rng(0)
    latents = rng.normal(size=(1500, 3, 4))
    landing = 5.0 + 2.0 * np.tanh(latents[:, 0, 0] + 0.5 * latents[:, 2, 1])
    probe = fit_landing_probe(latents[:1000], landing[:1000], seed=0, steps=1500)
    predicted = probe(latents[1000:].reshape(500, -1))[:, 0]  # metres, not standardised units
    assert np.abs(predicted - landing[1000:]).mean() < 0.1


def _tiny_model() -> LatentWorldModel:
    config = LatentConfig(latent_dim=8, depth=4, hidden_dim=16, objective="jepa")
    return LatentWorldModel(1, config, channels=3 * STACK, safety_head=False).eval()


def test_world_model_methods_give_one_landing_per_throw(three: BallQuestions) -> None:
    model = _tiny_model()
    z = seen_latents(model, three)
    assert z.shape == (3, SEEN, 8) and np.isfinite(z).all()
    landings = imagined_landings(model, three, three, seed=0, probe_steps=5, horizon=10)
    assert landings.shape == (3,) and np.isfinite(landings).all()


def test_a_ball_run_keeps_the_tower_record_of_an_earlier_run(tmp_path: Path) -> None:
    earlier: dict[str, Any] = {"command": "python -m benchmarks.physical_reasoning --tasks tower", "threads": 1,
               "cost": {"world model (JEPA)": {"seconds": 1.0, "peak_rss_mib_so_far": 1.0}},
               "tasks": {"tower": json.loads((RESULTS / "results.json").read_text())["tasks"]["tower"]}}
    for key in ("command", "threads", "cost"):  # an older file kept these at the top
        earlier["tasks"]["tower"].pop(key, None)
    (tmp_path / "results.json").write_text(json.dumps(earlier))
    assert physical_reasoning.main(["--out", str(tmp_path), "--tasks", "ball", "--ball-train-throws", "6",
                                    "--ball-test-throws", "3", "--ball-updates", "2", "--ball-probe-steps", "5",
                                    "--ball-position-steps", "5", "--skip-language"]) == 0
    tasks = json.loads((tmp_path / "results.json").read_text())["tasks"]
    assert tasks["tower"]["command"] == earlier["command"] and tasks["tower"]["cost"] == earlier["cost"]
    ball = tasks["ball"]
    assert ball["test_sha256"] == physical_reasoning.FROZEN_BALL_SETS[(3, 1_000_000)]
    assert set(ball["methods"]) == {"chance / majority class", f"world-model probe (latents of the {SEEN} frames seen)",
                                    "world-model imagination (landing read off the imagined flight)"}
    assert ball["world_model_history"][-1]["update"] == 2 and "--tasks ball" in ball["command"]
    report = (tmp_path / "report.md").read_text()
    assert "## Will the tower fall?" in report and "## Where will the ball land?" in report
    assert (tmp_path / "models" / "ball_world_model.pt").is_file()
    # a later run that reuses the saved world model keeps its training history and cost, as the earlier run's
    assert physical_reasoning.main(["--out", str(tmp_path), "--tasks", "ball", "--ball-train-throws", "6",
                                    "--ball-test-throws", "3", "--reuse-world-model", "--ball-probe-steps", "5",
                                    "--ball-position-steps", "5", "--skip-language"]) == 0
    again = json.loads((tmp_path / "results.json").read_text())["tasks"]["ball"]
    assert again["world_model_history"] == ball["world_model_history"]
    assert again["cost"]["world model (JEPA; earlier run, 1 thread(s))"] == ball["cost"]["world model (JEPA)"]
    assert "world model (JEPA)" not in again["cost"]


def test_overlapping_ball_seeds_are_refused(tmp_path: Path) -> None:
    with pytest.raises(SystemExit):
        physical_reasoning.main(["--out", str(tmp_path), "--tasks", "ball", "--ball-test-seed", "5"])


def test_merge_gathers_task_records_of_separate_runs(tmp_path: Path) -> None:
    tower_run, ball_run = tmp_path / "tower", tmp_path / "ball"
    tower_run.mkdir()
    (tower_run / "results.json").write_text((RESULTS / "results.json").read_text())
    assert physical_reasoning.main(["--out", str(ball_run), "--tasks", "ball", "--ball-train-throws", "6",
                                    "--ball-test-throws", "3", "--ball-updates", "1", "--ball-probe-steps", "5",
                                    "--ball-position-steps", "5", "--skip-language"]) == 0
    merged = tmp_path / "merged"
    assert physical_reasoning.main(["--out", str(merged), "--merge", str(tower_run / "results.json"),
                                    str(ball_run / "results.json")]) == 0
    tasks = json.loads((merged / "results.json").read_text())["tasks"]
    assert set(tasks) == {"tower", "ball"} and tasks["ball"]["test_throws"] == 3
    with pytest.raises(SystemExit, match="no results file"):
        physical_reasoning.main(["--out", str(merged), "--merge", str(tmp_path / "none.json")])

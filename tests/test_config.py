"""Configuration sections and the keys of earlier versions: every preset and every committed run's
config.yaml resolves to the same settings it had in the one-section-per-kind layout."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

import train_agent
from agent.config import (
    RENAMED,
    SECTIONS,
    ConfigError,
    apply_overrides,
    config_from_dict,
    config_to_dict,
    resolve_config,
)
from agent.preset_files import PRESET_DIR

ROOT = Path(__file__).resolve().parents[1]
BEFORE = json.loads((Path(__file__).parent / "data" / "presets_before_sections.json").read_text())
"""Every preset resolved (``config_to_dict``) by the version before the robotics/latent/value/sampling sections;
changed since where a preset's settings changed on purpose (InvertedPendulum-v5: continuation from the next state,
16 candidates when acting)."""
RUN_CONFIGS = sorted(path for path in (ROOT / "benchmarks" / "results").rglob("config.yaml")
                     if "planner:" in path.read_text())  # Rehearse's runs (the baselines' hold SB3 settings)


def _flat(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"section.key": value}`` of a nested config dict (``env_kwargs`` kept whole)."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict) and key in SECTIONS:
            out.update(_flat(value, f"{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def _assert_same_meaning(old: dict[str, Any], new: dict[str, Any]) -> None:
    """Each old key's value is where :data:`RENAMED` says it is now."""
    old_flat, new_flat = _flat(old), _flat(new)
    for key, value in old_flat.items():
        for now in RENAMED.get(key, (key,)):
            assert new_flat[now] == value, (key, now)


ADDED_SINCE = {"planner.cost_limit", "planner.cost_multiplier_lr", "value.batch_size", "train.loop_threads",
               "planner.eval_iterations", "robotics.cost_head", "robotics.costly_weight", "planner.cost_multiplier_min",
               "planner.cost_target"}
"""Settings added after the snapshot (no earlier key holds them; their defaults keep the old behaviour, except
train.loop_threads, which runs state models' training loops on one thread)."""
NEW_SECTIONS = ("llm", "video")
"""Sections added after the snapshot (settings that did not exist then, off by default)."""


def test_every_new_key_holds_an_old_one() -> None:
    """The alias table covers the whole old layout: no setting of the new one is left to a new default."""
    old_keys = set(_flat(BEFORE["default"]["resolved"]))
    covered = {now for key in old_keys for now in RENAMED.get(key, (key,))}
    now = _flat(config_to_dict(resolve_config("InvertedPendulum-v5", preset="default")))
    assert covered == {key for key in now if key.split(".")[0] not in NEW_SECTIONS} - ADDED_SINCE


@pytest.mark.parametrize("preset", sorted(BEFORE))
def test_presets_resolve_as_before(preset: str) -> None:
    own = {p.stem for p in PRESET_DIR.glob("*.yaml") if "extends" not in yaml.safe_load(p.read_text())}
    assert own == set(BEFORE)  # a new preset of its own: add it to the snapshot
    before = BEFORE[preset]
    now = config_to_dict(resolve_config(before["env_id"], preset=preset))
    _assert_same_meaning(before["resolved"], now)


@pytest.mark.parametrize("path", RUN_CONFIGS, ids=lambda p: str(p.relative_to(ROOT / "benchmarks" / "results")))
def test_committed_run_configs_load_with_their_settings(path: Path) -> None:
    """The config.yaml of a committed run (read by --evaluate, resume and the report tools) keeps its values."""
    saved = yaml.safe_load(path.read_text())
    loaded = config_to_dict(config_from_dict(saved))
    _assert_same_meaning(saved, loaded)
    assert config_to_dict(config_from_dict(loaded)) == loaded  # the new layout reads back as itself


def test_old_and_new_keys_set_the_same_settings() -> None:
    old = apply_overrides(resolve_config("Pendulum-v1"), {
        "model.hidden_dim": 64, "model.value_kind": "policy", "planner.num_elites": 6, "planner.policy_noise": 0.3,
    })
    new = apply_overrides(resolve_config("Pendulum-v1"), {
        "robotics.hidden_dim": 64, "latent.hidden_dim": 64, "value.kind": "policy", "sampling.num_elites": 6,
        "value.policy_noise": 0.3,
    })
    assert old == new
    with pytest.raises(ConfigError, match="valid keys"):
        apply_overrides(old, {"robotics.latent_dim": 3})


def test_old_flags_still_work_and_are_hidden_from_help(capsys: pytest.CaptureFixture[str]) -> None:
    parser = train_agent.add_renamed_flags(train_agent.build_parser())
    args = parser.parse_args(["--model-hidden-dim", "32", "--planner-num-candidates", "8",
                              "--robotics-num-layers", "2"])
    config = resolve_config("Pendulum-v1", train_agent.overrides_from_args(args))
    assert (config.robotics.hidden_dim, config.latent.hidden_dim) == (32, 32)
    assert (config.sampling.num_candidates, config.robotics.num_layers) == (8, 2)
    parser.print_help()
    shown = capsys.readouterr().out
    assert "--robotics-hidden-dim" in shown and "--model-hidden-dim" not in shown


@pytest.mark.parametrize("path", sorted(p for p in PRESET_DIR.glob("*.yaml") if "extends:" in p.read_text()),
                         ids=lambda p: p.stem)
def test_an_extending_preset_is_its_base_and_its_own_values(path: Path) -> None:
    data = yaml.safe_load(path.read_text())
    base = config_to_dict(resolve_config("X-v0", preset=data.pop("extends")))
    now = config_to_dict(resolve_config("X-v0", preset=str(path)))
    changed = {key for key, value in _flat(now).items() if _flat(base)[key] != value}
    assert changed == set(_flat(data))


def test_extends_refuses_a_cycle(tmp_path: Path) -> None:
    looped = tmp_path / "looped.yaml"
    looped.write_text("extends: looped\n")
    with pytest.raises(ConfigError, match="extends must name another preset"):
        resolve_config("X-v0", preset=str(looped))

"""Each script in examples/ runs with a tiny budget and prints what its docstring promises."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.test_docs import ROOT, TINY_STEPS, run_command

EXAMPLES = sorted((ROOT / "examples").glob("*.py"))
EXPECTED = {  # a line each example prints, as evidence it got to its end
    "train_and_evaluate.py": "one episode with the reloaded agent: return",
    "custom_environment.py": "by entry point custom_environment:Target1D: mean return",
    "compare_with_sb3.py": "SAC      return",
}
TINY_ARGS = {  # InvertedPendulum's untrained episodes last a few steps (Pendulum's 200): a quick evaluation
    "compare_with_sb3.py": "--env InvertedPendulum-v5",
}


def test_the_three_examples_are_there() -> None:
    assert {p.name for p in EXAMPLES} == set(EXPECTED)


@pytest.mark.parametrize("script", EXAMPLES, ids=lambda p: p.name)
def test_example_documents_its_usage_and_budget(script: Path) -> None:
    doc = ast.get_docstring(ast.parse(script.read_text())) or ""
    assert f"python examples/{script.name} [BUDGET]" in doc, "the docstring shows how to run it"
    assert "BUDGET is the number of environment steps" in doc


@pytest.mark.parametrize("script", EXAMPLES, ids=lambda p: p.name)
def test_example_runs_with_a_tiny_budget(
    script: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)  # its run directories land here
    run_command(f"python examples/{script.name} {TINY_STEPS} {TINY_ARGS.get(script.name, '')}", monkeypatch,
                examples=True)
    out = capsys.readouterr().out
    assert EXPECTED[script.name] in out, out
    assert (tmp_path / "runs").is_dir(), "the example wrote its run directory under the working directory"

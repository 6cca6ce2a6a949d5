"""Every command and Python snippet of README.md and docs/ runs as written, with a tiny budget.

From each Markdown file, in order, the fenced blocks are read:

- ``bash``/``sh``/``console`` blocks: every line (``\\`` continuations joined, a ``$ `` prompt dropped)
  that starts with ``python``, ``.venv/bin/python`` or ``rehearse-train`` is run; ``make X`` lines are
  checked for an existing Makefile target instead of being run, and ``examples/`` scripts for existing
  (``tests/test_examples.py`` runs each).
- ``python`` blocks are executed.

A block right after an HTML comment ``<!-- no-test: why -->`` is skipped (multi-hour benchmarks,
installs); :data:`NO_TEST_LIMIT` keeps that list short. The blocks of one file run in order in one
temporary working directory, so a command may use the run directory an earlier one trained.

Tiny budgets, by rewriting the command (never the file): ``--total-timesteps`` becomes
:data:`TINY_STEPS` (added when missing), ``--preset debug`` is added to training commands without a
preset, ``--evaluate N``, ``--episodes N`` and ``n_eval_episodes=N`` become 1, an example's budget
argument becomes :data:`TINY_STEPS`, and ``benchmarks.compare`` evaluates once per 100 steps. In Python
snippets ``.learn(N`` becomes ``.learn(TINY_STEPS`` and ``.evaluate(N)`` ``.evaluate(1)``.
Everything runs in this process (``runpy``), which saves an interpreter and a torch import per command.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import re
import runpy
import shlex
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from agent.config import SECTIONS
from agent.config_docs import config_fields, format_default, reference_markdown
from train_agent import build_parser

ROOT = Path(__file__).resolve().parent.parent
DOC_FILES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
TINY_STEPS = 60
NO_TEST_LIMIT = 8  # skipped blocks over all files; each carries its reason in the comment
SLOW_FILES = {  # over 15 s each on two busy cores: rendering MuJoCo frames, SB3 training beside Rehearse
    "docs/guide/pixels.md", "docs/benchmarks/index.md",
}
SHELL_LANGS = ("bash", "sh", "console", "shell")
RUNNABLE = ("python", "python3", ".venv/bin/python", "rehearse-train")
_FENCE = re.compile(r"^(\s*)```([\w-]*)\s*$")


@dataclass(frozen=True)
class Block:
    """One fenced code block: where it is, its language, its text, and whether it is marked no-test."""

    path: Path
    line: int
    lang: str
    text: str
    skip: bool

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"


def read_blocks(path: Path) -> list[Block]:
    """The fenced blocks of ``path`` in order; ``skip`` when the last non-blank line before is a no-test comment."""
    lines = path.read_text().splitlines()
    blocks: list[Block] = []
    i = 0
    while i < len(lines):
        match = _FENCE.match(lines[i])
        if match is None:
            i += 1
            continue
        start, lang = i, match.group(2).lower()
        i += 1
        body: list[str] = []
        while i < len(lines) and not lines[i].strip().startswith("```"):
            body.append(lines[i])
            i += 1
        previous = next((line.strip() for line in reversed(lines[:start]) if line.strip()), "")
        blocks.append(Block(path, start + 1, lang, "\n".join(body), previous.startswith("<!-- no-test")))
        i += 1
    return blocks


def shell_lines(text: str) -> list[str]:
    """The block's commands: continuations joined, prompts dropped, blank lines left out."""
    joined = re.sub(r"\s*\\\n\s*", " ", text)
    out = []
    for line in joined.splitlines():
        line = line.strip()
        line = line[2:] if line.startswith("$ ") else line
        if line and not line.startswith("#"):
            out.append(line)
    return out


def _set_option(argv: list[str], flag: str, value: str, add: bool = True) -> list[str]:
    """``argv`` with ``flag``'s value replaced by ``value`` (appended when missing and ``add``)."""
    if flag in argv:
        i = argv.index(flag)
        return [*argv[: i + 1], value, *argv[i + 2 :]]
    return [*argv, flag, value] if add else argv


def tiny_train_args(args: list[str]) -> list[str]:
    """``train_agent.py``'s arguments with a tiny budget."""
    if "--help" in args or "-h" in args:
        return args
    if "--evaluate" in args:
        return _set_option(args, "--evaluate", "1")
    args = _set_option(args, "--total-timesteps", str(TINY_STEPS))
    if "--preset" not in args:
        args = [*args, "--preset", "debug"]
    return [*args, "--no-progress-bar"]


def tiny_module_args(module: str, args: list[str]) -> list[str]:
    """A ``python -m benchmarks.X`` command's arguments with a tiny budget."""
    if module == "benchmarks.compare":
        args = _set_option(args, "--total-timesteps", str(2 * TINY_STEPS + 80))
        args = _set_option(_set_option(args, "--eval-freq", "100"), "--eval-episodes", "1")
        return [*_set_option(args, "--workers", "1"), "--no-progress-bar"]
    return _set_option(args, "--episodes", "1", add=False)


def tiny_script_args(script: Path, args: list[str]) -> list[str]:
    """An example's arguments: its budget (the first positional argument) tiny, one evaluation episode."""
    if args and args[0].isdigit():
        args = [str(TINY_STEPS), *args[1:]]
    args = _set_option(args, "--episodes", "1")
    if script.name == "custom_environment.py":
        args = _set_option(args, "--episode-steps", "10")
    return args


def run_command(line: str, monkeypatch: pytest.MonkeyPatch, examples: bool = False) -> None:
    """Run one documented command line in this process, with a tiny budget; fail on a non-zero exit.
    ``examples``: run ``examples/`` scripts too (else only check that they exist)."""
    argv = shlex.split(line, comments=True)
    if argv[0] == "rehearse-train":
        argv = ["python", "train_agent.py", *argv[1:]]
    if argv[1] == "-m":
        module, args = argv[2], tiny_module_args(argv[2], argv[3:])
        monkeypatch.setattr(sys, "argv", [module, *args])
        with warnings.catch_warnings():  # the module may be imported already, by another test: harmless here
            warnings.filterwarnings("ignore", message=".*found in sys.modules", category=RuntimeWarning)
            _expect_success(lambda: runpy.run_module(module, run_name="__main__", alter_sys=True), line)
        return
    script = ROOT / argv[1]
    if script.parent.name == "examples" and not examples:  # tests/test_examples.py runs each example
        assert script.is_file(), f"`{line}`: no such example"
        return
    args = tiny_train_args(argv[2:]) if script.name == "train_agent.py" else tiny_script_args(script, argv[2:])
    monkeypatch.setattr(sys, "argv", [str(script), *args])
    monkeypatch.syspath_prepend(str(script.parent))  # as `python script.py` puts the script's folder first
    _expect_success(lambda: runpy.run_path(str(script), run_name="__main__"), line)


def _expect_success(run: object, line: str) -> None:
    try:
        run()  # type: ignore[operator]
    except SystemExit as stop:
        assert stop.code in (0, None), f"`{line}` exited with {stop.code}"


def tiny_python(code: str) -> str:
    """A Python snippet with tiny training budgets and one-episode evaluations."""
    code = re.sub(r"\.learn\(\s*[\d_]+", f".learn({TINY_STEPS}", code)
    code = re.sub(r"\.evaluate\(\s*[\d_]+\s*\)", ".evaluate(1)", code)
    return re.sub(r"n_eval_episodes=\s*\d+", "n_eval_episodes=1", code)


def make_targets() -> set[str]:
    return set(re.findall(r"^([A-Za-z][\w-]*)\s*:", (ROOT / "Makefile").read_text(), flags=re.M))


def run_block(block: Block, monkeypatch: pytest.MonkeyPatch) -> int:
    """Run or check one block; the number of commands and snippets it held."""
    if block.lang == "python":
        exec(compile(tiny_python(block.text), block.where, "exec"), {"__name__": "__main__"})
        return 1
    if block.lang not in SHELL_LANGS:
        return 0
    count = 0
    for line in shell_lines(block.text):
        words = line.split()
        if words[0] == "make":
            assert words[1] in make_targets(), f"{block.where}: `{line}` names no target of the Makefile"
            count += 1
        elif words[0] in RUNNABLE:
            run_command(line, monkeypatch)
            count += 1
    return count


def test_every_doc_file_is_found_and_few_blocks_are_skipped() -> None:
    names = {p.relative_to(ROOT).as_posix() for p in DOC_FILES}
    assert {"README.md", "docs/index.md", "docs/getting-started.md"} <= names
    skipped = [b.where for path in DOC_FILES for b in read_blocks(path) if b.skip]
    assert len(skipped) <= NO_TEST_LIMIT, f"too many no-test blocks, keep the list short: {skipped}"


def test_rewrites_give_tiny_budgets() -> None:
    assert tiny_train_args(["--env", "Hopper-v5", "--total-timesteps", "100000"]) == [
        "--env", "Hopper-v5", "--total-timesteps", str(TINY_STEPS), "--preset", "debug", "--no-progress-bar"]
    assert tiny_train_args(["--run-dir", "runs/x", "--evaluate", "10"]) == ["--run-dir", "runs/x", "--evaluate", "1"]
    assert tiny_python("agent.learn(5_000, progress_bar=True)\nagent.evaluate(10)") == (
        f"agent.learn({TINY_STEPS}, progress_bar=True)\nagent.evaluate(1)")
    assert shell_lines("$ python a.py \\\n    --x 1  # note\n# comment\n\nmake test") == [
        "python a.py --x 1  # note", "make test"]


def _doc_param(path: Path) -> object:
    name = path.relative_to(ROOT).as_posix()
    return pytest.param(path, id=name, marks=[pytest.mark.slow] if name in SLOW_FILES else [])


@pytest.mark.parametrize("path", [_doc_param(p) for p in DOC_FILES])
def test_commands_and_snippets_run_as_written(
    path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)  # run directories and outputs land here
    for block in read_blocks(path):
        if not block.skip:
            try:
                run_block(block, monkeypatch)
            except BaseException as exc:
                raise AssertionError(f"{block.where} ({block.lang} block) failed: {exc!r}") from exc


@dataclass
class _Inner:
    """Nested settings."""

    depth: int = 3
    """How deep.
    Second line."""


@dataclass
class _Outer:
    """Outer settings."""

    rate: float = 0.5
    """A rate."""
    undocumented: bool = False
    inner: _Inner = field(default_factory=_Inner)


def test_field_docs_come_from_the_source_nested_dataclasses_included() -> None:
    fields = {f.key: f for f in config_fields({"outer": _Outer})}
    assert list(fields) == ["outer.rate", "outer.undocumented", "outer.inner.depth"]
    assert fields["outer.inner.depth"].flag == "--outer-inner-depth"
    assert (fields["outer.inner.depth"].doc, fields["outer.inner.depth"].default) == ("How deep.\nSecond line.", 3)
    assert (fields["outer.rate"].type, fields["outer.undocumented"].doc) == ("float", "")
    page = reference_markdown({"outer": _Outer})
    assert "## `outer`" in page and "### `outer.inner`" in page and "Nested settings." in page
    assert "| `depth`<br>`--outer-inner-depth` | `3` (int) | How deep. Second line. |" in page


def test_every_config_field_has_a_docstring() -> None:
    missing = [f.key for f in config_fields(SECTIONS) if not f.doc]
    assert not missing, f"give these fields a docstring (the string on the line after the field): {missing}"


def test_help_shows_every_field_with_its_default_and_docstring() -> None:
    text = " ".join(build_parser().format_help().split())
    for f in config_fields(SECTIONS):
        assert f"{f.flag} {f.type.upper()}" in text, f.flag
        assert f"(default: {format_default(f.default)})" in text
        assert " ".join(f.doc.split()[:6]) in text, f"the docstring of {f.key} is not in --help"
    assert " V " not in text


def test_the_docs_hook_generates_the_configuration_reference() -> None:
    pytest.importorskip("mkdocs")
    spec = importlib.util.spec_from_file_location("config_reference", ROOT / "docs" / "hooks" / "config_reference.py")
    assert spec is not None and spec.loader is not None
    hook = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(hook)
    page = hook.configuration_page()
    for f in config_fields(SECTIONS):
        assert f"`{f.flag}`" in page
    for action in build_parser()._actions:
        if action.option_strings and "." not in action.dest and action.dest != "help":
            assert f"`{action.option_strings[0]}`" in page
    assert all(dataclasses.is_dataclass(cls) for cls in SECTIONS.values())

"""What the repository tracks: no checkpoints, no TensorBoard event files, no large files.

Every committed blob stays in every clone's history, so run outputs that are not evidence a report is
rebuilt from (checkpoints, event files) must never be added; ``.gitignore`` keeps them out of ``git add``
and this test catches a forced add. Skipped outside a git checkout (e.g. an unpacked source archive).
"""

from __future__ import annotations

import fnmatch
import shutil
import subprocess
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
FORBIDDEN_PATTERNS = ("*.pt", "*.pth", "*.ckpt", "events.out.tfevents.*")
# The largest legitimate tracked files are the benchmark plots (curves.png, about 200 KB); checkpoints of
# the presets' models are 10-15 MB. 1 MB leaves five times the largest plot and stops data dumps
# (replay buffers, videos, checkpoints under another name) from entering the history.
MAX_FILE_BYTES = 1_000_000


def _tracked_files() -> list[str]:
    """Paths (relative to the repository root) that ``git ls-files`` lists; skips the test without git."""
    git = shutil.which("git")
    if git is None:
        pytest.skip("git is not installed")
    top = subprocess.run([git, "rev-parse", "--show-toplevel"], cwd=REPO_ROOT, capture_output=True, text=True,
                         check=False)
    if top.returncode != 0 or Path(top.stdout.strip()).resolve() != REPO_ROOT:
        pytest.skip(f"{REPO_ROOT} is not the root of a git checkout")
    result = subprocess.run([git, "ls-files", "-z"], cwd=REPO_ROOT, capture_output=True, text=True, check=True)
    return [path for path in result.stdout.split("\0") if path]


def test_no_checkpoint_or_event_file_is_tracked() -> None:
    tracked = _tracked_files()
    forbidden = [p for p in tracked if any(fnmatch.fnmatch(Path(p).name, pat) for pat in FORBIDDEN_PATTERNS)]
    assert not forbidden, (f"tracked run outputs that must not be committed: {forbidden}; remove them with "
                           "`git rm --cached PATH` and keep checkpoints outside the repository")


def test_no_tracked_file_is_large() -> None:
    sizes = {p: (REPO_ROOT / p).stat().st_size for p in _tracked_files() if (REPO_ROOT / p).is_file()}
    large = {p: size for p, size in sizes.items() if size > MAX_FILE_BYTES}
    assert not large, (f"tracked files over {MAX_FILE_BYTES:,} bytes: {large}; commit a compact summary "
                       "(CSV, NPZ, markdown) instead")


def test_the_checks_see_the_repository() -> None:
    tracked = _tracked_files()
    assert "pyproject.toml" in tracked and "train_agent.py" in tracked

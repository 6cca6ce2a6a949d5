"""Writing a benchmark's reports: Markdown printed and saved where asked; results files written whole."""

from __future__ import annotations

from pathlib import Path
from typing import BinaryIO

from agent.atomic import atomic_write


def write_report(lines: list[str], out: Path | None) -> None:
    """Print the Markdown ``lines`` and write them to ``out`` (folders made) when given."""
    text = "\n".join(lines) + "\n"
    print(text)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text)


def write_text_atomic(path: Path, text: str) -> None:
    """``text`` into ``path``, whole or not at all: a torn results.json would stop the next invocation's resume."""
    def write(handle: BinaryIO) -> None:
        handle.write(text.encode())
    atomic_write(path, write)


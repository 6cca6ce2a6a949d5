"""Writing a benchmark's Markdown report: printed, and saved where asked."""

from __future__ import annotations

from pathlib import Path


def write_report(lines: list[str], out: Path | None) -> None:
    """Print the Markdown ``lines`` and write them to ``out`` (folders made) when given."""
    text = "\n".join(lines) + "\n"
    print(text)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text)

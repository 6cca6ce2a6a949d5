"""MkDocs hook: generates the configuration reference and brings in the result plots at build time.

``reference/configuration.md`` is written from the config dataclasses themselves
(:func:`agent.config_docs.reference_markdown` over ``agent.config.SECTIONS``, whatever sections it
holds) and from ``train_agent.build_parser()`` for the run options, so it cannot drift from the code
or from ``train_agent.py --help``. Each task's ``benchmarks/results/<task>/curves.png`` is served as
``results/<task>/curves.png``. Nothing is written into ``docs/``.
"""

from __future__ import annotations

import argparse
import html
import sys
from pathlib import Path
from typing import Any

from mkdocs.structure.files import File, Files

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # this repository's packages, not an installed copy; MkDocs restores
    sys.path.insert(0, str(ROOT))  # sys.path after loading the hook, so they are imported now

from agent.config import SECTIONS  # noqa: E402
from agent.config_docs import reference_markdown  # noqa: E402
from train_agent import build_parser  # noqa: E402

REFERENCE_PAGE = "reference/configuration.md"
PLOT_TASKS = ("InvertedPendulum-v5", "Pendulum-v1", "HalfCheetah-v5", "Hopper-v5")

INTRO = """# Configuration reference

*Generated at build time from the configuration dataclasses in `agent/config.py` (each field's
docstring) and from `train_agent.py`'s argument parser: `python train_agent.py --help` prints the same
text.*

A run's configuration is resolved as **built-in defaults <- preset <- flags**. The preset is
`agent/presets/<env id>.yaml` (with `/` and `:` replaced by `_`), else `default.yaml`, or the one named
by `--preset` (a name such as `debug`, or a YAML path). A preset holds any subset of the fields below,
nested by section:

```yaml
planner:
  horizon: 20
robotics:
  hidden_dim: 256
```

Every field has a flag `--<section>-<field>` (underscores become dashes). Booleans take
`true`/`false`. Unknown keys and values no run can use are refused before the run directory is touched,
with the key and the allowed range. The defaults below are the built-in ones; see each preset for the
values it sets.
"""


def _run_options() -> str:
    """A table of ``train_agent.py``'s own options (those that are not configuration fields)."""
    lines = ["## Run options", "", "| flag | meaning |", "|---|---|"]
    for action in build_parser()._actions:
        if not action.option_strings or "." in action.dest or isinstance(action, argparse._HelpAction):
            continue
        flags = ", ".join(f"`{flag}`" for flag in action.option_strings)
        text = html.escape(" ".join((action.help or "").split()), quote=False).replace("|", "\\|")
        lines.append(f"| {flags} | {text} |")
    return "\n".join(lines) + "\n"


def configuration_page() -> str:
    """The whole configuration reference page, as Markdown."""
    return "\n".join([INTRO, _run_options(), "## Configuration fields", "", reference_markdown(SECTIONS, level=3)])


def on_files(files: Files, config: Any) -> Files:
    """Add the generated reference page and the result plots to the site's files."""
    files.append(File.generated(config, REFERENCE_PAGE, content=configuration_page()))
    for task in PLOT_TASKS:
        plot = ROOT / "benchmarks" / "results" / task / "curves.png"
        if plot.exists():
            files.append(File.generated(config, f"results/{task}/curves.png", abs_src_path=str(plot)))
    return files

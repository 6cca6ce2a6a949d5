"""Descriptions of the configuration fields, read from the config dataclasses' own source.

Each field of a config dataclass is documented by the string literal written on the line after
it (an attribute docstring, as under ``horizon: int = 15`` in ``agent/config.py``).
:func:`config_fields` walks a mapping of section name -> dataclass (``agent.config.SECTIONS``),
nested dataclass fields included, and returns each field's dotted key, command-line flag, type,
default and docstring. ``train_agent.py --help`` and the generated configuration reference of the
docs site (``docs/hooks/config_reference.py``) both read it, so the two cannot drift apart.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import textwrap
import typing
from dataclasses import dataclass
from typing import Any, Iterator, Mapping

__all__ = ["FieldDoc", "config_fields", "field_docstrings", "format_default", "reference_markdown"]


@dataclass(frozen=True)
class FieldDoc:
    """One configuration field: where it lives, how to set it, what it means."""

    key: str
    """Dotted key as presets and ``apply_overrides`` name it, e.g. ``planner.horizon``."""
    flag: str
    """Command-line flag of ``train_agent.py``, e.g. ``--planner-horizon``."""
    type: str
    """The annotation as written in the source, e.g. ``int``."""
    default: Any
    """The dataclass default (presets may set another value)."""
    doc: str
    """The field's attribute docstring, dedented; empty when the field has none."""


def field_docstrings(cls: type) -> dict[str, str]:
    """``{field name: docstring}`` for the annotated fields of ``cls`` (and of its dataclass bases)
    that are followed by a string literal; fields without one are left out."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if klass is object or not dataclasses.is_dataclass(klass):
            continue
        try:
            source = textwrap.dedent(inspect.getsource(klass))
        except (OSError, TypeError):  # defined where no source is kept (an interactive session)
            continue
        node = ast.parse(source).body[0]
        if not isinstance(node, ast.ClassDef):
            continue
        for stmt, after in zip(node.body, node.body[1:], strict=False):
            if (
                isinstance(stmt, ast.AnnAssign)
                and isinstance(stmt.target, ast.Name)
                and isinstance(after, ast.Expr)
                and isinstance(after.value, ast.Constant)
                and isinstance(after.value.value, str)
            ):
                docs[stmt.target.id] = inspect.cleandoc(after.value.value)
    return docs


def _default(f: dataclasses.Field[Any]) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return dataclasses.MISSING


def _nested_dataclass(cls: type, f: dataclasses.Field[Any]) -> type | None:
    """The dataclass type of field ``f`` of ``cls`` when it holds a nested config section, else ``None``."""
    try:
        hint = typing.get_type_hints(cls).get(f.name)
    except (NameError, TypeError):  # an annotation that cannot be resolved here: judge by the default
        hint = None
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return hint
    default = _default(f)
    if dataclasses.is_dataclass(default) and not isinstance(default, type):
        return type(default)
    return None


def _walk(prefix: str, cls: type) -> Iterator[FieldDoc]:
    docs = field_docstrings(cls)
    for f in dataclasses.fields(cls):
        key = f"{prefix}.{f.name}" if prefix else f.name
        nested = _nested_dataclass(cls, f)
        if nested is not None:
            yield from _walk(key, nested)
            continue
        annotation = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
        flag = "--" + key.replace(".", "-").replace("_", "-")
        yield FieldDoc(key=key, flag=flag, type=annotation, default=_default(f), doc=docs.get(f.name, ""))


def config_fields(sections: Mapping[str, type]) -> list[FieldDoc]:
    """Every field of every section in ``sections`` (name -> config dataclass), in source order, with the
    fields of nested dataclasses flattened under dotted keys (``model.latent.depth``)."""
    out: list[FieldDoc] = []
    for name, cls in sections.items():
        if not dataclasses.is_dataclass(cls):
            raise TypeError(f"config section {name!r} must be a dataclass, got {cls!r}")
        out.extend(_walk(name, cls))
    return out


def format_default(value: Any) -> str:
    """A default as a preset would write it: ``true``/``false``, ``1000000``, ``0.001``, ``cem``, ``{}``."""
    if value is dataclasses.MISSING:
        return "(required)"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list, tuple)) and not value:
        return "{}" if isinstance(value, dict) else "[]"
    return str(value)


def _cell(text: str) -> str:
    """``text`` fit for one Markdown table cell (one line, pipes escaped)."""
    return " ".join(text.split()).replace("|", "\\|")


def _sections_in(prefix: str, cls: type) -> Iterator[tuple[str, type]]:
    """``(dotted prefix, dataclass)`` for ``cls`` and, depth first, each dataclass nested in it."""
    yield prefix, cls
    for f in dataclasses.fields(cls):
        nested = _nested_dataclass(cls, f)
        if nested is not None:
            yield from _sections_in(f"{prefix}.{f.name}", nested)


def reference_markdown(sections: Mapping[str, type], level: int = 2) -> str:
    """A Markdown section per config section (and per nested dataclass): its class docstring, then a table
    of name and flag, default and type, and description for each of its fields (the docs site's configuration
    reference). Sections get headings of ``level`` (``2``: ``##``), nested dataclasses one level deeper."""
    fields = config_fields(sections)
    lines: list[str] = []
    for name, top in sections.items():
        for prefix, cls in _sections_in(name, top):
            heading = "#" * min(level + prefix.count("."), 6)
            lines += [f"{heading} `{prefix}`", "", inspect.cleandoc(cls.__doc__ or ""), ""]
            own = [f for f in fields if f.key.rpartition(".")[0] == prefix]
            if not own:
                continue
            lines += ["| field and flag | default | description |", "|---|---|---|"]
            for f in own:
                name = f.key.rpartition(".")[2]
                lines.append(f"| `{name}`<br>`{f.flag}` | `{_cell(format_default(f.default))}` ({f.type}) "
                             f"| {_cell(f.doc)} |")
            lines.append("")
    return "\n".join(lines)

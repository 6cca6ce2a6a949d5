"""Checkpoints: plain tensors and builtins only, written atomically, loaded with weights_only."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from agent.atomic import atomic_write

FORMAT = "rehearse-checkpoint/1"


class CheckpointError(RuntimeError):
    """A checkpoint file is missing, truncated, corrupt or not a Rehearse checkpoint."""


def save_checkpoint(path: str | Path, payload: dict[str, Any]) -> None:
    """Write ``payload`` to ``path`` atomically: a temp file in the same folder, fsync, rename."""
    atomic_write(path, lambda handle: torch.save({"format": FORMAT, **payload}, handle))


def read_weights(path: Path, what: str, remedy: str) -> Any:
    """``torch.load`` onto the CPU that unpickles nothing but tensors and plain containers, or a
    CheckpointError naming the damaged file, what it should have been (``what``) and ``remedy``."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for damaged files
        raise CheckpointError(
            f"{path} is not a readable {what} (truncated, corrupt or written by something else): "
            f"{type(exc).__name__}: {str(exc)[:200]}. {remedy}"
        ) from exc


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint safely (no arbitrary unpickling) and check it is ours."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}")
    payload = read_weights(path, "checkpoint", "Nothing was changed; delete the file or point --run-dir "
                           "elsewhere to start fresh.")
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(
            f"{path} is not a Rehearse checkpoint (expected format {FORMAT!r}); "
            "load it with the tool that wrote it, or start a fresh run."
        )
    return payload


def load_module_state(module: torch.nn.Module, state: Mapping[str, Any], source: str | Path, remedy: str) -> None:
    """``module.load_state_dict(state)``, or a CheckpointError saying that ``source`` holds other
    networks (missing, unexpected or mis-shaped tensors) and what to do (``remedy``)."""
    try:
        module.load_state_dict(state)
    except RuntimeError as exc:
        raise CheckpointError(
            f"the {type(module).__name__} in {source} does not match this version of Rehearse's networks "
            f"(it was saved by an older version, with other settings, or edited): {str(exc).splitlines()[0]} ...; "
            f"{remedy}"
        ) from exc


def numpy_to_tensors(state: dict[str, Any]) -> dict[str, Any]:
    """Replace numpy arrays by tensors (so ``weights_only`` loading accepts them)."""
    return {k: torch.from_numpy(np.ascontiguousarray(v)) if isinstance(v, np.ndarray) else v for k, v in state.items()}


def tensors_to_numpy(state: dict[str, Any]) -> dict[str, Any]:
    """Inverse of :func:`numpy_to_tensors`."""
    return {k: v.numpy() if isinstance(v, torch.Tensor) else v for k, v in state.items()}

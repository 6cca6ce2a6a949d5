"""The replay buffer's contact with the machine: the memory it may take and its ``.npz`` files."""

from __future__ import annotations

import math
import os
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np


def available_memory_bytes() -> int | None:
    """Memory the OS can still give us, in bytes, or ``None`` if unknown.

    Reads ``MemAvailable`` from ``/proc/meminfo``; falls back to free physical
    pages times page size from ``os.sysconf``.
    """
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 2 and parts[0] == "MemAvailable:":
                    return int(parts[1]) * 1024  # reported in kB
    except (OSError, ValueError):
        pass
    try:
        pages = os.sysconf("SC_AVPHYS_PAGES")
        page_size = os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, AttributeError):
        return None
    if pages < 0 or page_size <= 0:
        return None
    return int(pages) * int(page_size)


_GIB = float(1 << 30)


def buffer_bytes(capacity: int, obs_shape: tuple[int, ...], action_dim: int,
                 obs_dtype: np.dtype[Any] | type = np.float32) -> int:
    """Bytes a replay buffer's arrays take once every slot has been touched."""
    obs_bytes = math.prod(obs_shape) * np.dtype(obs_dtype).itemsize
    # obs + next_obs, actions (float32), reward + cost (float32), two bool flags
    per_step = 2 * obs_bytes + 4 * action_dim + 4 + 4 + 1 + 1
    return int(capacity) * per_step


def check_buffer_memory(capacity: int, obs_shape: tuple[int, ...], action_dim: int,
                        obs_dtype: np.dtype[Any] | type = np.float32, max_memory_fraction: float = 0.8) -> None:
    """A MemoryError (naming ``--train-buffer-capacity``) when a replay buffer of this size would need
    more than ``max_memory_fraction`` of the available memory; nothing when it fits or the memory is unknown.
    Cheap: the agent calls it before building its networks."""
    needed = buffer_bytes(capacity, obs_shape, action_dim, obs_dtype)
    available = available_memory_bytes()
    if available is None:
        return
    allowed = max_memory_fraction * available
    if needed <= allowed:
        return
    hint = ""
    if np.dtype(obs_dtype) != np.uint8 and len(obs_shape) >= 2:
        hint = " or store image frames as uint8 (obs_dtype=np.uint8, 4x smaller)"
    fits = max(1, int(allowed // max(1, needed // max(1, capacity))))
    raise MemoryError(
        f"ReplayBuffer(capacity={capacity}, obs_shape={tuple(obs_shape)}, "
        f"action_dim={action_dim}, obs_dtype={np.dtype(obs_dtype)}) needs "
        f"{needed / _GIB:.2f} GiB, but only {allowed / _GIB:.2f} GiB may be used "
        f"({max_memory_fraction:.0%} of {available / _GIB:.2f} GiB available). "
        f"Use a smaller capacity: --train-buffer-capacity {fits} or less (train.buffer_capacity){hint}."
    )


def read_npz(path: Path) -> dict[str, np.ndarray]:
    """Every array of an ``.npz`` file, read eagerly so corruption shows up here."""
    try:
        data = np.load(path, allow_pickle=False)
        if not isinstance(data, np.lib.npyio.NpzFile):
            raise ValueError("holds one array, not an .npz archive")  # noqa: TRY004
        with data:
            return {k: data[k] for k in data.files}
    except (FileNotFoundError, IsADirectoryError, PermissionError):
        raise
    except (zipfile.BadZipFile, ValueError, EOFError, OSError, KeyError) as err:
        raise ValueError(
            f"cannot read ReplayBuffer file {path} (truncated, corrupt or not a ReplayBuffer .npz): {err}"
        ) from err


def as_int(state: Mapping[str, Any], key: str) -> int:
    """``state[key]`` as an int, or a ValueError when it is not an integer scalar."""
    value = np.asarray(state[key])
    if value.shape != () or not np.issubdtype(value.dtype, np.integer):
        raise ValueError(f"state[{key!r}] must be an integer scalar, got {value!r}")
    return int(value)

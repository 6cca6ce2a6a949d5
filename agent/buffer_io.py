"""The replay buffer's contact with the machine: the memory it may take and its ``.npz`` files."""

from __future__ import annotations

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

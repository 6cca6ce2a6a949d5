"""Safe writing of run directories: atomic file writes (a temp file in the same folder, fsync, then
``os.replace``) and the lock that lets one training process at a time write a run directory."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import BinaryIO, Callable

try:
    import fcntl
except ImportError:  # Windows: no advisory locks; RunDirLock then does nothing
    fcntl = None  # type: ignore[assignment]


def atomic_write(path: str | Path, write: Callable[[BinaryIO], None]) -> None:
    """Call ``write(handle)`` on a temp file, then replace ``path``: a crash never leaves half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class RunDirInUse(RuntimeError):
    """Another process is training into this run directory."""


class RunDirLock:
    """An exclusive advisory lock (``flock``) on a run directory itself, held while an agent trains into it.

    A second process that opens the same directory for training gets :class:`RunDirInUse` instead of
    interleaving its checkpoints and logs with the first one's. No file is left behind, and the
    operating system drops the lock when the process ends, however it ends. Where ``fcntl`` is
    missing (Windows), or the filesystem refuses ``flock``, it does nothing.
    """

    def __init__(self, run_dir: str | Path) -> None:
        self.run_dir = Path(run_dir)
        self._fd: int | None = None

    def acquire(self) -> None:
        if fcntl is None or self._fd is not None:
            return
        fd = os.open(self.run_dir, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise RunDirInUse(
                f"run directory {self.run_dir} is in use: another process is training into it. Wait for it "
                "to finish (or stop it) and run again to resume, or give another --run-dir"
            ) from None
        except OSError:  # a filesystem without flock (some network mounts): train unlocked, as before locks
            os.close(fd)
            return
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the only descriptor releases the flock
            self._fd = None

"""Safe writing of run directories: atomic file writes (a temp file in the same folder, fsync, then
``os.replace``) and the lock that lets one training process at a time write a run directory."""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import BinaryIO, Callable

try:
    import fcntl
except ImportError:  # Windows: no advisory locks; RunDirLock then does nothing
    fcntl = None  # type: ignore[assignment]


TMP_SUFFIX = ".tmp"
"""Temp files of :func:`atomic_write` are ``.<name>.<random>.tmp`` next to the file they replace."""


def atomic_write(path: str | Path, write: Callable[[BinaryIO], None]) -> None:
    """Call ``write(handle)`` on a temp file, then replace ``path``: a crash never leaves half a file.

    The file gets the mode a plain ``open`` gives (``0o666`` less the umask), like every other output.
    A process killed while writing leaves its temp file behind; :func:`remove_orphaned_tmp` removes it.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.{secrets.token_hex(4)}{TMP_SUFFIX}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # the umask applies, as for open()
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def remove_orphaned_tmp(run_dir: str | Path) -> list[Path]:
    """Remove the temp files that writes interrupted by a kill left in ``run_dir`` and its subfolders.

    Only names :func:`atomic_write` makes (``.<name>.<random>.tmp``) are removed; call it while holding the
    run directory's :class:`RunDirLock`, so that no write under way is touched. Returns the removed paths.
    """
    removed = []
    for tmp in sorted(Path(run_dir).rglob(f".*{TMP_SUFFIX}")):
        if tmp.is_file() and tmp.name.count(".") >= 3:
            tmp.unlink(missing_ok=True)
            removed.append(tmp)
    return removed


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

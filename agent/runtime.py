"""Process-wide settings that make planning cheaper; call once, at the start of a process.

Planning allocates the same few large tensors (one per layer and imagined step) thousands of
times per action, and training a pixel model does the same with its activations. glibc's
default allocator hands memory above its trim threshold back to the operating system when it is
freed, so every new tensor of that size starts on fresh pages that the kernel must fault in and
zero. Measured on the 2-core development machine:

- side-by-side evaluation on HalfCheetah's preset (10 problems per plan): 3,000 to 20,000 page
  faults per plan, about a tenth of its CPU time;
- BallCatch from pixels (its preset): about 60,000 page faults a second, a quarter of the
  process's CPU time in the kernel; resumed from the same checkpoint with this setting, none,
  and 4.0 environment steps a second instead of 2.4.

:func:`keep_freed_memory` keeps freed memory in the process for reuse instead.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

_M_TRIM_THRESHOLD = -1  # glibc's mallopt parameter numbers (malloc.h)
_M_MMAP_THRESHOLD = -3
TRIM_THRESHOLD = 1 << 30  # keep up to 1 GiB of freed heap memory for reuse
MMAP_THRESHOLD = 32 << 20  # blocks under 32 MiB come from the heap (glibc's largest allowed value)

_done = False


def keep_freed_memory() -> bool:
    """Ask glibc to keep freed memory for reuse instead of returning it to the system.

    Returns whether the setting took effect: ``False`` where the C library is not glibc
    (macOS, Windows, musl), which is harmless: planning is then only slower. Idempotent.
    Blocks of 32 MiB or more (replay buffers, frame stores) are still mapped and unmapped on
    their own; of the rest, the process keeps up to 1 GiB of freed memory for reuse.
    :class:`~agent.MBRLAgent` calls it when it is built.
    """
    global _done
    if _done:
        return True
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    _done = mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1 and mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1
    return _done

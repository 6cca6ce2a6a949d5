"""Run independent pieces of inference on worker threads, one core each.

A batched product over the whole batch makes every core wait for the others at every layer, and its
activations (several MiB at the PETS configuration) do not stay in any core's cache between layers.
When the work splits into independent pieces (imagination's row chunks: a row's rollout never reads
another row), each worker can instead run its pieces from start to end on its own core, with
single-threaded torch ops on activations small enough to stay in that core's cache.
The measurements are in the README ("Planning speed") and ``benchmarks/results/plan_speed.md``.

torch releases the GIL inside its operators and ctypes inside the SiLU kernel, so the threads run
in parallel wherever the pieces are large enough that the Python between operators is small beside
them. Each worker sets its own intra-op thread count to 1 (OpenMP's setting is per thread: the
caller's threads are untouched) and runs every piece under ``torch.inference_mode``, which is per
thread too.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import torch

T = TypeVar("T")
R = TypeVar("R")

_lock = threading.Lock()
_pool: tuple[int, int, ThreadPoolExecutor] | None = None  # (process id, workers, pool)


def _single_threaded() -> None:
    torch.set_num_threads(1)


def _workers(count: int) -> ThreadPoolExecutor:
    """The process's pool of ``count`` workers, made again after a fork or a change of ``count``."""
    global _pool
    with _lock:
        if _pool is None or _pool[0] != os.getpid() or _pool[1] != count:
            if _pool is not None and _pool[0] == os.getpid():
                _pool[2].shutdown(wait=False)
            _pool = (os.getpid(), count, ThreadPoolExecutor(count, thread_name_prefix="rehearse-inference",
                                                            initializer=_single_threaded))
        return _pool[2]


def _in_inference_mode(fn: Callable[[T], R], item: T) -> R:
    with torch.inference_mode():
        return fn(item)


def map_on_cores(fn: Callable[[T], R], items: Iterable[T], workers: int) -> list[R]:
    """``[fn(item) for item in items]``, the items shared among ``workers`` single-threaded workers.

    ``fn`` must be safe to run on several items at once (the items write disjoint memory) and its
    result must not depend on which worker runs it. Any exception of ``fn`` is raised here.
    """
    if workers < 2:
        with torch.inference_mode():
            return [fn(item) for item in items]
    pool = _workers(workers)
    return list(pool.map(lambda item: _in_inference_mode(fn, item), items))

"""Planning's speed machinery, in one place behind one switch.

The switch (:func:`fast_enabled`, :func:`set_fast`; ``REHEARSE_FAST=0`` in the environment turns it
off at start-up) chooses how :meth:`~world_models.robotics.RoboticsWorldModel.imagine` runs without
gradients, the planner's path, and whether :func:`configure_process` changes the allocator:

- off: the reference path, plain batched torch (:func:`~world_models.ensemble.imagine_reference`:
  per step and layer one ``baddbmm`` and ``F.silu`` over all members' rows, every step's tensors
  allocated anew); the allocator is left as it is;
- on (the default): :func:`imagine_in_place`, the same products into buffers allocated once per
  rollout (no concatenation, no per-step allocation), each member's rows cut into blocks that share
  the batched products evenly among torch's threads (:func:`row_blocks`), and, for batches that
  divide into chunks of :data:`CHUNK_ROWS`, each chunk imagined from start to end by one
  single-threaded worker thread (:func:`row_chunks`, :class:`ChunkSteps`, :func:`map_on_cores`);
  :func:`configure_process` also keeps freed memory in the process (:func:`keep_freed_memory`).

Both paths give the same rollout (``tests/test_fast.py``). Thread counts follow what the process is
given: :func:`available_threads` decides, from the affinity mask and ``OMP_NUM_THREADS``. What each
piece buys is measured in ``benchmarks/results/speed_switches.md``.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import math
import os
import sys
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import torch
import torch.nn.functional as F

from world_models.ensemble import Layers, to_members

T = TypeVar("T")
R = TypeVar("R")


def _switch_from_environment() -> bool:
    value = os.environ.get("REHEARSE_FAST", "1").strip()
    if value not in ("0", "1"):
        raise ValueError(f"REHEARSE_FAST must be 0 (reference path) or 1 (fast path), got {value!r}")
    return value == "1"


_fast = _switch_from_environment()


def fast_enabled() -> bool:
    """Whether planning uses the fast path (see the module's docstring)."""
    return _fast


def set_fast(on: bool) -> bool:
    """Turn the fast path on or off for this process; returns the previous setting."""
    global _fast
    before, _fast = _fast, bool(on)
    return before


# ----------------------------------------------------------------- threads and process settings
def available_threads() -> int:
    """Threads this process may use: the CPUs in its affinity mask, or ``OMP_NUM_THREADS`` where that
    is lower (its first value, when it lists one per nesting level); at least 1."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    setting = os.environ.get("OMP_NUM_THREADS", "").split(",")[0].strip()
    limit = int(setting) if setting.isdigit() and int(setting) > 0 else cores
    return max(1, min(cores, limit))


def configure_process() -> None:
    """Process-wide settings for planning; call once, at the start of a process (idempotent).

    torch's intra-op threads are lowered to :func:`available_threads` where they exceed it (never
    raised: a lower count set by the user stays); with the fast path on, freed memory is kept for
    reuse (:func:`keep_freed_memory`).
    """
    if torch.get_num_threads() > available_threads():
        torch.set_num_threads(available_threads())
    if fast_enabled():
        keep_freed_memory()


def spare_cores() -> float:
    """Cores of this process's mask that the rest of the machine leaves idle, from the one-minute load
    average less this process's own running thread (0 where the load average cannot be read)."""
    try:
        load = os.getloadavg()[0]
    except OSError:
        return 0.0
    return max(0.0, available_threads() - max(load - 1.0, 0.0) - 1.0)


def wide_threads(n: int, fallback: int) -> int:
    """Threads for a large batched computation: ``n`` when the machine has a spare core for the second and
    later ones (:func:`spare_cores` at least 0.5), else ``fallback``. On a busy machine idle OpenMP threads
    must be woken for every operation and may wait for a core each time, so they cost more than they give."""
    return n if n <= fallback or spare_cores() >= 0.5 else fallback


@contextlib.contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run the block on ``n`` torch intra-op threads (at most :func:`available_threads`; ``n <= 0``: leave
    the count as it is), and restore the count afterwards."""
    before = torch.get_num_threads()
    if n > 0:
        torch.set_num_threads(min(n, available_threads()))
    try:
        yield
    finally:
        if torch.get_num_threads() != before:
            torch.set_num_threads(before)


_M_TRIM_THRESHOLD = -1  # glibc's mallopt parameter numbers (malloc.h)
_M_MMAP_THRESHOLD = -3
TRIM_THRESHOLD = 1 << 30  # keep up to 1 GiB of freed heap memory for reuse
MMAP_THRESHOLD = 32 << 20  # blocks under 32 MiB come from the heap (glibc's largest allowed value)
_memory_kept = False


def keep_freed_memory() -> bool:
    """Ask glibc to keep freed memory for reuse instead of returning it to the system, so that the
    same large tensors allocated again and again (planning's activations, a pixel model's) reuse
    their pages instead of faulting in fresh ones.

    Returns whether the setting took effect: ``False`` where the C library is not glibc (macOS,
    Windows, musl), which is harmless. Idempotent. Blocks of 32 MiB or more (replay buffers, frame
    stores) are still mapped and unmapped on their own; of the rest, the process keeps up to 1 GiB.
    """
    global _memory_kept
    if _memory_kept:
        return True
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    _memory_kept = mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1 and mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1
    return _memory_kept


# ----------------------------------------------------------------- worker threads
_pool_lock = threading.Lock()
_pool: tuple[int, int, ThreadPoolExecutor] | None = None  # (process id, workers, pool)


def _single_threaded() -> None:
    torch.set_num_threads(1)


def _workers(count: int) -> ThreadPoolExecutor:
    """The process's pool of ``count`` workers, made again after a fork or a change of ``count``."""
    global _pool
    with _pool_lock:
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
    """``[fn(item) for item in items]``, the items shared among ``workers`` single-threaded workers
    (at most :func:`available_threads`; idle workers block, they do not spin), each item run under
    ``torch.inference_mode``. With fewer than 2 workers the items run here, in order.

    ``fn`` must be safe to run on several items at once (the items write disjoint memory) and its
    result must not depend on which worker runs it. Any exception of ``fn`` is raised here.
    """
    workers = min(workers, available_threads())
    if workers < 2:
        with torch.inference_mode():
            return [fn(item) for item in items]
    return list(_workers(workers).map(lambda item: _in_inference_mode(fn, item), items))


# ----------------------------------------------------------------- in-place imagination
def row_blocks(ensemble_size: int, rows_per_member: int, min_rows: int = 64) -> int:
    """Blocks ``k`` to cut each member's rows into: the smallest ``k`` that makes ``ensemble_size * k``
    a multiple of torch's thread count (so a batched product over the members splits evenly over the
    threads), or 1 where the rows do not divide into blocks of ``min_rows``."""
    threads = torch.get_num_threads()
    k = threads // math.gcd(ensemble_size, threads)
    return k if k > 1 and rows_per_member % k == 0 and rows_per_member // k >= min_rows else 1


CHUNK_ROWS = (640, 1024)  # least and most rows in one chunk of threaded imagination (see row_chunks)


def row_chunks(ensemble_size: int, rows_per_member: int, threads: int) -> int:
    """Equal chunks ``n`` to cut each member's rows into for threaded imagination (each of the
    ``ensemble_size * n`` chunks imagined from start to end by one single-threaded worker), or 0
    where the batch does not suit it and the batched products over all threads run instead.

    ``n`` is the smallest that divides ``rows_per_member``, shares the chunks evenly among
    ``threads``, and keeps each chunk within :data:`CHUNK_ROWS` rows, so that a chunk's activations
    (1,024 rows of 200 floats: 800 KiB) stay in a core's cache from layer to layer.
    """
    least, most = CHUNK_ROWS
    if threads < 2:
        return 0
    for n in range(max(1, -(-rows_per_member // most)), rows_per_member // least + 1):
        if rows_per_member % n == 0 and ensemble_size * n % threads == 0:
            return n
    return 0


class ChunkSteps:
    """Imagination of one block of rows from the first step to the last: what each worker of threaded
    imagination runs (:func:`map_on_cores`, one call per block).

    ``inputs (H+1, G, rows, Z + A)`` and ``outputs (H, G, Z + 3, rows)`` are :func:`imagine_in_place`'s
    buffers, cut into ``G = E * chunks`` blocks of ``rows``; block ``g`` is member ``g // chunks``'s.
    ``hidden`` holds the hidden layers' ``(weight (E, in, out), bias (E, 1, out))`` and ``output`` the
    transposed output layer's ``(weight (E, Z + 3, hidden), bias (E, Z + 3, 1))``. Each call writes
    only its own block: ``outputs[:, g]`` and ``inputs[1:, g, :, :Z]``.
    """

    def __init__(self, inputs: torch.Tensor, outputs: torch.Tensor, hidden: Layers,
                 output: tuple[torch.Tensor, torch.Tensor], chunks: int, width: int) -> None:
        self.inputs, self.outputs, self.hidden, self.output = inputs, outputs, hidden, output
        self.chunks, self.width = chunks, width

    def run(self, g: int) -> None:
        m, width = g // self.chunks, self.width
        rows = self.outputs.shape[-1]
        buffers = [self.inputs.new_empty(rows, self.hidden[0][0].shape[-1]) for _ in range(2)]  # (rows, hidden)
        # layer i: its weight (in, hidden), its bias (1, hidden) and the buffer it writes (i % 2)
        layers = [(w[m], b[m], buffers[i % 2]) for i, (w, b) in enumerate(self.hidden)]
        w_out, b_out = self.output[0][m], self.output[1][m]
        last = layers[-1][2].t()  # (hidden, rows): the last hidden layer's output, as the output layer reads it
        for t in range(self.outputs.shape[0]):
            h, out = self.inputs[t, g], self.outputs[t, g]  # (rows, Z + A), (Z + 3, rows)
            for weight, bias, written in layers:
                F.silu(torch.addmm(bias, h, weight, out=written), inplace=True)
                h = written
            torch.addmm(b_out, w_out, last, out=out)
            torch.add(self.inputs[t, g, :, :width], out[:width].t(), out=self.inputs[t + 1, g, :, :width])


def imagine_in_place(z0: torch.Tensor, actions: torch.Tensor, layers: Layers) -> tuple[torch.Tensor, torch.Tensor]:
    """Imagination without gradients into preallocated buffers -> heads ``(H, B, 3)`` and latents
    ``(H+1, B, Z)``, what :func:`~world_models.ensemble.imagine_reference` computes.

    ``z0 (B, Z)``, ``actions (H, B, A)``; ``layers`` of ``E`` members, the last one's outputs ``[delta z
    (Z), three heads]`` (the robotics model's reward, continuation and cost logits). Row ``b = i * E + m``
    is member ``m``'s row ``i``, the rows of each member in one contiguous run of ``inputs[t]``; the
    batched products see each run as ``k`` blocks of ``rows``
    (:func:`row_blocks`), or, where :func:`row_chunks` finds chunks, block ``g`` is imagined from start
    to end by one single-threaded worker (:class:`ChunkSteps`). ``inputs[t]`` holds every row's
    ``[z_t, a_t]``: the actions are written once and each step writes ``z_{t+1}`` into the next slot.
    """
    horizon, batch, _ = actions.shape
    e, width = layers[0][0].shape[0], z0.shape[1]
    per_member = batch // e
    threads = min(torch.get_num_threads(), available_threads())
    threaded = z0.device.type == "cpu" and all(w.dtype == torch.float32 for w, _ in layers)
    chunks = row_chunks(e, per_member, threads) if threaded else 0
    k = chunks or row_blocks(e, per_member)
    rows = per_member // k
    inputs = z0.new_empty(horizon + 1, e, per_member, width + actions.shape[2])
    inputs[0, ..., :width] = to_members(z0, e)
    inputs[:horizon, ..., width:] = actions.reshape(horizon, per_member, e, -1).transpose(1, 2)
    if k > 1 and not chunks:
        layers = [(w.repeat_interleave(k, dim=0), b.repeat_interleave(k, dim=0)) for w, b in layers]
    # the output layer runs transposed, out^T = W^T h^T: Z + 3 (about 20) rows rather than columns
    w_out, b_out = layers[-1]
    w_out_t, b_out_t = w_out.transpose(1, 2).contiguous(), b_out.transpose(1, 2)  # (G, Z+3, hidden), (G, Z+3, 1)
    outputs = z0.new_empty(horizon, e * k, width + 3, rows)  # [delta z, reward, continuation, cost logits]^T
    groups = (e * k, rows, -1)  # (E * k, rows, ...): member m's block j is group m * k + j
    if chunks:
        steps = ChunkSteps(inputs.view(horizon + 1, *groups), outputs, layers[:-1], (w_out_t, b_out_t), chunks, width)
        map_on_cores(steps.run, range(e * k), threads)
    else:
        for t in range(horizon):
            h = inputs[t].view(groups)
            for weight, bias in layers[:-1]:
                h = F.silu(torch.baddbmm(bias, h.to(weight.dtype), weight), inplace=True)  # (G, rows, hidden)
            torch.baddbmm(b_out_t, w_out_t, h.to(w_out_t.dtype).transpose(1, 2), out=outputs[t])
            z, z_next = inputs[t].view(groups)[..., :width], inputs[t + 1].view(groups)[..., :width]
            torch.add(z, outputs[t, :, :width].transpose(1, 2), out=z_next)
    # (H, E * k, 3, rows) -> (H, E, B / E, 3): member m's rows in order
    heads = outputs[:, :, width:].transpose(2, 3).reshape(horizon, e, per_member, 3)

    def in_rows(x: torch.Tensor) -> torch.Tensor:  # (T, E, B / E, D) -> (T, B, D)
        return x.transpose(1, 2).reshape(x.shape[0], batch, x.shape[-1])

    return in_rows(heads), in_rows(inputs[..., :width])

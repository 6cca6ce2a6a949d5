"""In-place SiLU for inference: a vectorised CPU kernel where it can be built, torch's otherwise.

Planning is matrix products and SiLU: the products run near the machine's peak, and SiLU (one
``exp`` per hidden unit) took about a sixth of a plan's time with torch's kernel
(``benchmarks/results/plan_speed.md``). ``silu.c`` does the same in about half the time on one
thread (AVX2 and FMA, a polynomial ``exp``, within 3e-7 relative of the exact value as torch's
is) and splits large tensors over torch's threads through the OpenMP runtime torch itself uses.
Where the CPU has AVX-512F its loops take 16 floats a step instead of 8, with bit-identical
results (:func:`silu_vector_width` compares the two).

It is compiled on first use with the system C compiler (``$CC``, else ``cc`` or ``gcc``) into
``$XDG_CACHE_HOME/rehearse`` (default ``~/.cache/rehearse``), named by a hash of the source and
flags, written atomically. Where that is not possible (no compiler, a CPU without AVX2/FMA, or
``REHEARSE_FAST_SILU=0``) :func:`silu_` is ``F.silu(x, inplace=True)``; :func:`fast_silu_status`
says which is in use and why. Only inference uses it: training's forward passes keep torch's
SiLU, whose backward autograd needs.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.autograd.graph import increment_version

_SOURCE = Path(__file__).with_name("silu.c")
_FLAGS = ("-O3", "-mavx2", "-mfma", "-fopenmp", "-shared", "-fPIC")
_state: dict[str, object] = {}
_load_lock = threading.Lock()  # threaded imagination's workers may be the first callers, together


def _cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "rehearse"


def _compile(compiler: str, target: Path) -> None:
    """Build the kernel into ``target`` atomically (a temporary file in the same folder, then renamed)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".so", dir=target.parent)
    os.close(fd)
    try:
        subprocess.run([compiler, *_FLAGS, str(_SOURCE), "-o", tmp, "-lm"], check=True, capture_output=True,
                       text=True, timeout=120)
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _load() -> tuple[ctypes.CDLL | None, str]:
    """The kernel's library, or ``None`` and the reason it is not used."""
    if os.environ.get("REHEARSE_FAST_SILU", "1") == "0":
        return None, "off (REHEARSE_FAST_SILU=0)"
    if torch.backends.cpu.get_cpu_capability() not in ("AVX2", "AVX512"):
        return None, f"off (this CPU's capability is {torch.backends.cpu.get_cpu_capability()}, not AVX2)"
    compiler = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        return None, "off (no C compiler: set CC or install gcc)"
    digest = hashlib.sha256(_SOURCE.read_bytes() + " ".join((compiler, *_FLAGS)).encode()).hexdigest()[:16]
    target = _cache_dir() / f"silu-{digest}.so"
    try:
        if not target.exists():
            _compile(compiler, target)
        try:
            lib = ctypes.CDLL(str(target))
        except OSError:  # a damaged cached build: build it again, once
            _compile(compiler, target)
            lib = ctypes.CDLL(str(target))
    except (OSError, subprocess.SubprocessError) as exc:
        detail = getattr(exc, "stderr", None) or exc
        return None, f"off (building {target.name} with {compiler} failed: {str(detail).strip()[:300]})"
    lib.rehearse_silu_.argtypes = [ctypes.c_void_p, ctypes.c_int64, ctypes.c_int]
    lib.rehearse_silu_.restype = None
    lib.rehearse_bias_silu_.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64,
                                        ctypes.c_int64, ctypes.c_int]
    lib.rehearse_bias_silu_.restype = None
    lib.rehearse_silu_isa.argtypes, lib.rehearse_silu_isa.restype = [], ctypes.c_int
    lib.rehearse_silu_set_isa.argtypes, lib.rehearse_silu_set_isa.restype = [ctypes.c_int], ctypes.c_int
    bits = lib.rehearse_silu_isa()  # chosen here, once, before any parallel region reads it
    return lib, f"on ({'AVX-512' if bits == 512 else 'AVX2'}, {target})"


def _kernel() -> ctypes.CDLL | None:
    if "lib" not in _state:
        with _load_lock:
            if "lib" not in _state:
                _state["lib"], _state["status"] = _load()
    lib = _state["lib"]
    return lib if isinstance(lib, ctypes.CDLL) else None


def fast_silu_on() -> bool:
    """Whether :func:`silu_` and :func:`bias_silu_` use the vectorised kernel."""
    return _kernel() is not None


def fast_silu_status() -> str:
    """Whether :func:`silu_` uses the vectorised kernel (``on (path)``) or torch's (``off (why)``)."""
    _kernel()
    return str(_state["status"])


@contextmanager
def torch_silu() -> Iterator[None]:
    """Within it, :func:`silu_` uses torch's SiLU (to time or compare the kernel against it)."""
    lib = _kernel()
    _state["lib"] = None
    try:
        yield
    finally:
        _state["lib"] = lib


def silu_vector_bits() -> int:
    """The kernel's vector width in bits: ``512`` (AVX-512F), ``256`` (AVX2), or ``0`` without the kernel."""
    lib = _kernel()
    return 0 if lib is None else int(lib.rehearse_silu_isa())


@contextmanager
def silu_vector_width(bits: int) -> Iterator[int]:
    """Within it, the kernel's loops use ``bits``-wide vectors (``256``: AVX2; ``512``: AVX-512F, taken
    only where the CPU has it); yields the width in use. Without the kernel it yields ``0``."""
    lib = _kernel()
    if lib is None:
        yield 0
        return
    before = lib.rehearse_silu_isa()
    try:
        yield lib.rehearse_silu_set_isa(bits)
    finally:
        lib.rehearse_silu_set_isa(before)


def _usable(x: torch.Tensor) -> bool:
    """Whether the kernel may overwrite ``x``: contiguous CPU float32 that no gradient flows through."""
    return (x.device.type == "cpu" and x.dtype == torch.float32 and x.is_contiguous()
            and not (x.requires_grad and torch.is_grad_enabled()))


def _written(x: torch.Tensor) -> torch.Tensor:
    if not x.is_inference():
        increment_version(x)  # as an in-place torch op would: autograd then refuses a stale saved tensor
    return x


def _bias_kernel(x: torch.Tensor, bias: torch.Tensor) -> ctypes.CDLL | None:
    """The kernel, where it takes ``x (G, M, N)`` with ``bias (G, 1, N)``; ``None`` where torch's SiLU must."""
    lib = _kernel()
    groups, _, width = x.shape
    if lib is None or not _usable(x) or bias.shape != (groups, 1, width) or bias.dtype != torch.float32 \
            or bias.device != x.device:
        return None
    return lib


def bias_silu_(x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """``F.silu(x.add_(bias), inplace=True)`` in one pass for inference: ``x (G, M, N)`` (a batched
    linear layer's product), ``bias (G, 1, N)``. Returns ``x``."""
    lib = _bias_kernel(x, bias)
    if lib is None:
        return F.silu(x.add_(bias), inplace=True)
    groups, rows, width = x.shape
    b = bias.contiguous()
    lib.rehearse_bias_silu_(x.data_ptr(), b.data_ptr(), groups, rows, width, torch.get_num_threads())
    return _written(x)


def prepared_bias_silu_(x: torch.Tensor, bias: torch.Tensor) -> Callable[[], None]:
    """:func:`bias_silu_` on the same ``x (G, M, N)`` and ``bias (G, 1, N)`` as a call with no arguments,
    the checks made once: for a loop that runs it on one buffer many times (threaded imagination's
    workers). Uses the kernel in the state it is in now (:func:`torch_silu` applies to calls prepared
    within it) and torch's intra-op thread count now. ``x`` must be an inference tensor or need no
    version counting (its version is not bumped)."""
    lib = _bias_kernel(x, bias)
    if lib is None or not bias.is_contiguous():  # the prepared call keeps bias's address: no copy to hold

        def with_torch() -> None:
            F.silu(x.add_(bias), inplace=True)

        return with_torch
    return _KernelCall(lib, x, bias)


class _KernelCall:
    """The kernel's bias-and-SiLU pass on fixed tensors, which it holds (their memory must outlive it)."""

    def __init__(self, lib: ctypes.CDLL, x: torch.Tensor, bias: torch.Tensor) -> None:
        self._tensors = (x, bias)
        self._run = lib.rehearse_bias_silu_
        self._args = (x.data_ptr(), bias.data_ptr(), *x.shape, torch.get_num_threads())

    def __call__(self) -> None:
        self._run(*self._args)


def silu_(x: torch.Tensor) -> torch.Tensor:
    """``F.silu(x, inplace=True)`` for inference: the vectorised kernel on contiguous CPU float32 tensors
    that need no gradient, torch's SiLU otherwise. Returns ``x``."""
    lib = _kernel()
    if lib is None or not _usable(x):
        return F.silu(x, inplace=True)
    lib.rehearse_silu_(x.data_ptr(), x.numel(), torch.get_num_threads())
    return _written(x)

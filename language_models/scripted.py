"""A scripted OpenAI-compatible server on the loopback interface (standard library only), for tests and
benchmarks: each POST is answered by a Python function of the request body.

:func:`garbage_script` answers every malformed kind in turn (the "never worse" check), :func:`swing_script`
answers MountainCarContinuous prompts with the back-swing a proposer that knows the task would give.
"""

from __future__ import annotations

import http.server
import itertools
import json
import re
import threading
import time
from typing import Any, Callable

Script = Callable[[dict[str, Any]], tuple[int, bytes, float]]
"""``request body -> (HTTP status, response bytes, seconds to sleep before answering)``."""


def completion(content: str) -> bytes:
    """A chat-completion response whose message is ``content``."""
    return json.dumps({"choices": [{"message": {"role": "assistant", "content": content}}]}).encode()


class ScriptedServer:
    """``http://127.0.0.1:<free port>/v1``; answers each POST with ``script(body)`` and keeps the request
    bodies and headers (``bodies``, ``headers``). :meth:`close` stops it."""

    def __init__(self, script: Script) -> None:
        self.script = script
        self.bodies: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                outer.bodies.append(body)
                outer.headers.append(dict(self.headers))
                status, payload, delay = outer.script(body)
                time.sleep(delay)
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except OSError:  # the client gave up (timeout)
                    pass

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def _schema(body: dict[str, Any]) -> dict[str, Any]:
    form = body.get("response_format", {})
    return dict(form.get("schema") or form.get("json_schema", {}).get("schema", {}))


def asked_shape(body: dict[str, Any]) -> tuple[int, int, int]:
    """``(n, H, A)`` a proposer request asks for, read from its schema."""
    sequences = _schema(body)["properties"]["sequences"]
    step = sequences["items"]["items"]
    return int(sequences["maxItems"]), int(sequences["items"]["maxItems"]), int(step["maxItems"])


def garbage_script(delay_s: float = 30.0) -> Script:
    """Answers in turn: malformed JSON, wrong lengths, NaN, out-of-range numbers (usable after clipping),
    an empty reply, HTTP 500, and a reply after ``delay_s`` seconds."""
    kinds = itertools.cycle(["malformed", "lengths", "nan", "range", "empty", "http500", "slow"])

    def script(body: dict[str, Any]) -> tuple[int, bytes, float]:
        kind = next(kinds)
        n, horizon, action_dim = asked_shape(body)
        good = json.dumps({"sequences": [[[0.5] * action_dim] * horizon] * n})
        replies = {
            "malformed": (200, completion('{"sequences": [[[0.1, '), 0.0),
            "lengths": (200, completion(json.dumps({"sequences": [[[0.0] * action_dim] * (horizon + 3)] * n})), 0.0),
            "nan": (200, completion(good.replace("0.5", "NaN")), 0.0),
            "range": (200, completion(good.replace("0.5", "1e6")), 0.0),
            "empty": (200, completion(""), 0.0),
            "http500": (500, b'{"error": "internal"}', 0.0),
            "slow": (200, completion(good), delay_s),
        }
        return replies[kind]

    return script


_VELOCITY = re.compile(r"car velocity = (-?[\d.eE+-]+)")


def swing_script(body: dict[str, Any]) -> tuple[int, bytes, float]:
    """MountainCarContinuous: push with the car's velocity (left first when at rest), the energy-pumping
    back-swing; one sequence per asked one, all alike."""
    n, horizon, action_dim = asked_shape(body)
    match = _VELOCITY.search(body["messages"][-1]["content"])
    velocity = float(match.group(1)) if match else 0.0
    push = 100 if velocity > 0 else -100  # percent of the action range: the bounds
    return 200, completion(json.dumps({"sequences": [[[push] * action_dim] * horizon] * n})), 0.0

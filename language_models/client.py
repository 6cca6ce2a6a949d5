"""A plain-HTTP client for OpenAI-compatible ``/v1/chat/completions`` servers (standard library only).

Nothing here touches the network at import. Each :meth:`ChatClient.chat` sends one request whose reply is
constrained by a JSON schema (``response_format``), with a timeout and one retry; every failure comes back as
an :class:`LLMError` naming its kind, never as another exception, so a caller can plan on without the model.
"""

from __future__ import annotations

import http.client
import json
import os
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any

FAILURE_KINDS = ("http", "timeout", "connection", "reply")


class LLMError(RuntimeError):
    """A call that gave no usable reply; ``kind`` is one of :data:`FAILURE_KINDS`."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


@dataclass
class Reply:
    """A chat completion's text and how long the call took (both attempts, when retried)."""

    text: str
    latency_ms: float
    attempts: int


RESPONSE_FORMATS = ("json_schema", "json_object")


def response_format(name: str, schema: dict[str, Any], style: str = "json_schema") -> dict[str, Any]:
    """``response_format`` of a request constrained by ``schema``: ``json_schema``, OpenAI's form (llama.cpp's
    llama-server, vLLM, Ollama), or ``json_object`` with the schema beside it (llama-cpp-python's server, which
    accepts no other); both become a grammar on those servers."""
    if style == "json_object":
        return {"type": "json_object", "schema": schema}
    return {"type": "json_schema", "json_schema": {"name": name, "schema": schema, "strict": True}}


class ChatClient:
    """``POST {base_url}/chat/completions``; the API key is read from ``os.environ[api_key_env]`` at each call."""

    def __init__(self, base_url: str, model: str = "", api_key_env: str = "", timeout_s: float = 30.0,
                 retries: int = 1, style: str = "json_schema") -> None:
        """``style``: the ``response_format`` form the server reads (:func:`response_format`)."""
        self.url = base_url.rstrip("/") + "/chat/completions"
        self.model, self.api_key_env, self.timeout_s, self.retries = model, api_key_env, timeout_s, retries
        self.style = style

    def body(self, messages: list[dict[str, str]], schema: dict[str, Any], name: str, max_tokens: int,
             temperature: float) -> dict[str, Any]:
        """The request's JSON body (no key in it: the key travels in a header only)."""
        return {"model": self.model or "default", "messages": messages, "temperature": temperature,
                "max_tokens": max_tokens, "stream": False, "response_format": response_format(name, schema, self.style)}

    def _headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json"}
        if self.api_key_env:
            key = os.environ.get(self.api_key_env, "")
            if key:
                headers["Authorization"] = f"Bearer {key}"
        return headers

    def chat(self, body: dict[str, Any], deadline_s: float | None = None) -> Reply:
        """Send ``body``; the reply's message text, or :class:`LLMError`. One retry after a failure (not after a
        reply that came but could not be read); ``deadline_s``: seconds both attempts may take together."""
        start = time.perf_counter()
        data = json.dumps(body).encode()
        error = LLMError("connection", "no attempt made")
        for attempt in range(1 + self.retries):
            left = self.timeout_s if deadline_s is None else deadline_s - (time.perf_counter() - start)
            if left <= 0:
                break
            try:
                raw = self._post(data, min(self.timeout_s, left))
            except LLMError as exc:
                error = exc
                continue
            return Reply(message_text(raw), 1000 * (time.perf_counter() - start), attempt + 1)
        raise error

    def _post(self, data: bytes, timeout: float) -> bytes:
        request = urllib.request.Request(self.url, data=data, headers=self._headers(), method="POST")
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 (http(s) only)
                return bytes(response.read())
        except urllib.error.HTTPError as exc:
            detail = exc.read()[:200].decode(errors="replace") if exc.fp is not None else ""
            raise LLMError("http", f"HTTP {exc.code} from {self.url}: {detail}") from None
        except TimeoutError:
            raise LLMError("timeout", f"no reply from {self.url} within {timeout:.1f} s") from None
        except urllib.error.URLError as exc:
            if isinstance(exc.reason, TimeoutError):
                raise LLMError("timeout", f"no reply from {self.url} within {timeout:.1f} s") from None
            raise LLMError("connection", f"cannot reach {self.url}: {exc.reason}") from None
        except (OSError, http.client.HTTPException) as exc:  # reset, refused, cut short, not HTTP
            raise LLMError("connection", f"connection to {self.url} failed: {exc!r}") from None


def message_text(raw: bytes) -> str:
    """The first choice's message content of a chat-completion response, or :class:`LLMError` (kind reply)."""
    try:
        payload = json.loads(raw)
        content = payload["choices"][0]["message"]["content"]
    except (ValueError, KeyError, IndexError, TypeError):
        raise LLMError("reply", f"not a chat completion: {raw[:200]!r}") from None
    if not isinstance(content, str) or not content.strip():
        raise LLMError("reply", "the reply's message content is empty")
    return content

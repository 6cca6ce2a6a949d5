"""The language model as a :class:`planners.base.Proposer`, asked in the background.

:class:`LLMProposer` sends one request at a time on a worker thread; the control loop never blocks on it
longer than ``llm.wait_s``. Each plan gets the latest finished proposals, shifted by the planning steps since
they were asked for (their first actions are past). A failed, timed-out or rejected call leaves the plan to
the planner alone: it is counted, logged and traced, never raised.

With the judge role, the proposals' imagined final states are rated 0..10 against the goal (another
background call); a rated proposal's score is raised by ``judge_weight`` times its rating in the plans that
use it.
"""

from __future__ import annotations

import collections
import json
import logging
import threading
import time
from concurrent import futures
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from language_models.bundled import BundledServer, LLMSetupError, check_bundled
from language_models.client import ChatClient, LLMError
from language_models.config import BUNDLED, LLMConfig, roles, schema_style
from language_models.prompts import (
    ReplyRejected,
    TaskSpec,
    judge_messages,
    judge_schema,
    parse_proposals,
    parse_ratings,
    proposal_messages,
    proposal_schema,
)
from planners.base import Objective
from planners.objective import add_to_scores

log = logging.getLogger("rehearse.llm")
TRACE_NAME = "llm_trace.jsonl"
COUNTERS = ("calls", "calls_failed", "calls_timed_out", "replies_rejected", "proposals_made", "proposals_parsed",
            "proposals_rejected", "numbers_clipped", "plans_with_proposals", "chosen_best", "judge_ratings",
            "skipped_batched", "explored_episodes", "explored_steps")
"""Cumulative counts reported as ``llm/<name>`` (see docs/llm.md)."""



@dataclass
class _Batch:
    """Proposals of one call: ``actions (k, H, A)`` in ``[-1, 1]``, asked for at planning step ``step``;
    ``ratings (k,)`` once judged."""

    actions: torch.Tensor
    step: int
    ratings: torch.Tensor | None = None
    judging: bool = False


class LLMProposer:
    """Proposes ``llm.num_proposals`` action sequences per call (``propose`` returns at most ``n``; none
    while no call has finished). ``open_run(run_dir)`` starts the trace, ``close()`` stops the worker and the
    bundled server, ``metrics()`` gives the ``llm/*`` values."""

    def __init__(self, config: LLMConfig, spec: TaskSpec, client: ChatClient | None = None,
                 server: BundledServer | None = None) -> None:
        self.config, self.spec, self.server = config, spec, server
        self.client = client or ChatClient(config.base_url, config.model, config.api_key_env, config.timeout_s,
                                           style=schema_style(config))
        self.num_proposals = config.num_proposals
        self.judge = "judge" in roles(config)
        self.counts: collections.Counter[str] = collections.Counter({name: 0 for name in COUNTERS})
        self._latencies: list[float] = []
        self._lock = threading.Lock()
        self._executor: ThreadPoolExecutor | None = None
        self._pending: Future[Callable[[], None]] | None = None
        self._latest: _Batch | None = None
        self._step = 0
        self._asked_at = -(10**9)
        self._episode = 0
        self._due = True
        self._trace: Path | None = None
        self._warned: collections.Counter[str] = collections.Counter()

    # ----------------------------------------------------------------- the control loop's side
    def propose(self, context: dict[str, object], n: int, horizon: int) -> torch.Tensor:
        """``(k, H, A)`` proposals in ``[-1, 1]``, ``0 <= k <= n``, for ``context["obs"]`` (one problem; a batch
        of several gets none, counted as ``skipped_batched``). Asks for new ones when due (episode start,
        ``llm.every``) and no call is under way."""
        obs = np.asarray(context["obs"], dtype=np.float64)
        empty = torch.zeros((0, horizon, self.spec.action_dim))
        if obs.ndim == 2 and len(obs) != 1:
            self.counts["skipped_batched"] += 1
            return empty
        obs = obs.reshape(-1)
        self._step += 1
        if context.get("episode_start", False):
            self._episode += 1
            self._latest, self._due = None, True
        if self.config.every and self._step - self._asked_at >= self.config.every:
            self._due = True
        self._collect()
        if self._due and self._pending is None:
            step, episode = self._step, self._episode
            self._ask(lambda: self._ask_proposals(obs, horizon, step, episode))
            self._due, self._asked_at = False, self._step
            self._collect()
        self._maybe_judge(context, horizon)
        return self._current(horizon, n) if self._latest is not None else empty

    def _current(self, horizon: int, n: int) -> torch.Tensor:
        """The latest proposals shifted by the steps since they were asked for, zero-padded to ``horizon``."""
        assert self._latest is not None
        shift = self._step - self._latest.step
        actions = self._latest.actions[:n, shift:horizon + shift]
        if actions.shape[1] == 0:
            self._latest = None
            return torch.zeros((0, horizon, self.spec.action_dim))
        pad = torch.zeros((actions.shape[0], horizon - actions.shape[1], actions.shape[2]))
        return torch.cat([actions, pad], dim=1)

    def _ask(self, job: Callable[[], Callable[[], None]]) -> None:
        """Run ``job`` on the worker unless a call is under way; ``job`` returns what to apply on collection."""
        if self._pending is not None:
            return
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="rehearse-llm")
        self._pending = self._executor.submit(job)

    def _collect(self) -> None:
        """Apply the call under way if it has finished (waiting at most ``llm.wait_s`` for it). A job that
        raised (a bug: the jobs catch every failure they expect) is logged and counted as a failed call."""
        pending = self._pending
        if pending is None:
            return
        if self.config.wait_s > 0:
            futures.wait([pending], timeout=self.config.wait_s)
        if not pending.done():
            return
        self._pending = None
        try:
            pending.result()()
        except Exception:  # the run never fails because of the language model
            log.exception("the language-model call failed unexpectedly; planning goes on without it")
            with self._lock:
                self.counts["calls_failed"] += 1

    def rescore(self, objective: Objective, proposals: torch.Tensor) -> Objective:
        """``objective`` with ``judge_weight * rating`` added to the candidates equal to a rated proposal
        (``proposals (k, H, A)``, as passed to the planner); ``objective`` itself when none is rated."""
        batch = self._latest
        if not self.judge or batch is None or batch.ratings is None or len(proposals) == 0:
            return objective
        bonus = self.config.judge_weight * batch.ratings[: len(proposals)]  # (k,)
        flat = proposals.reshape(len(proposals), -1)

        def judged(candidates: torch.Tensor) -> torch.Tensor:
            same = (candidates.reshape(len(candidates), 1, -1) == flat.to(candidates)).all(dim=-1)  # (N, k)
            return same.to(bonus.dtype) @ bonus  # (N,): the rating's bonus where a candidate is a rated proposal

        return add_to_scores(objective, judged)  # a cost budget, where there is one, still holds

    def record_plan(self, best: torch.Tensor | None, proposals: torch.Tensor | None, before: int = 0) -> None:
        """Count a plan that had ``proposals`` (``(k, H, A)``, these proposals) and whether its best candidate was
        one: ``best`` is the planner's ``last_best_proposal`` (which of all its proposals was the best candidate,
        -1 for none; ``None`` where the planner does not say), ``before`` how many other proposals (the learned
        policy's) came ahead of these."""
        if proposals is None or len(proposals) == 0:
            return
        self.counts["plans_with_proposals"] += 1
        if best is not None and best.numel():
            self.counts["chosen_best"] += int(before <= int(best.reshape(-1)[0]) < before + len(proposals))

    def record_explored(self, episodes: int = 0, steps: int = 0) -> None:
        """Count training episodes led by the proposals and steps that executed one (``llm.explore``)."""
        self.counts.update(explored_episodes=episodes, explored_steps=steps)

    def _maybe_judge(self, context: dict[str, object], horizon: int) -> None:
        """Ask the judge about the latest proposals' imagined final states (once per batch)."""
        batch = self._latest
        if not self.judge or batch is None or batch.judging or self._pending is not None:
            return
        imagine, z0 = context.get("imagine"), context.get("z0")
        if not callable(imagine) or not isinstance(z0, torch.Tensor) or z0.shape[-1] != len(self.spec.obs_low):
            return  # the judge reads states: a latent that is not the observation cannot be described
        particles = int(context.get("particles", 1))  # type: ignore[call-overload]
        actions = self._current(horizon, len(batch.actions))  # (k, H, A)
        k = len(actions)
        with torch.inference_mode():
            rollout = imagine(z0.reshape(1, -1).expand(k * particles, -1),
                              actions.repeat_interleave(particles, dim=0).transpose(0, 1).to(z0))
        final = rollout.latents[-1].reshape(k, particles, -1).mean(dim=1).cpu().numpy()  # (k, S)
        batch.judging = True
        self._ask(lambda: self._ask_judge(batch, final))

    # ----------------------------------------------------------------- the worker's side
    def _ask_proposals(self, obs: np.ndarray, horizon: int, step: int, episode: int) -> Callable[[], None]:
        n = self.num_proposals
        text = self._call("proposer", proposal_messages(self.spec, obs, n, horizon),
                          proposal_schema(self.spec, n, horizon), "action_sequences")
        if text is None:
            return lambda: None
        try:
            parsed = parse_proposals(text, self.spec, n, horizon)
        except ReplyRejected as exc:
            self._reject("proposer", str(exc))
            return lambda: None
        with self._lock:
            self.counts.update(proposals_made=parsed.made, proposals_parsed=len(parsed.actions),
                               proposals_rejected=parsed.rejected, numbers_clipped=parsed.clipped)
        if parsed.rejected:
            self._warn("proposals_rejected", f"{parsed.rejected} proposal(s) rejected: {'; '.join(parsed.reasons)}")
        batch = _Batch(torch.as_tensor(parsed.actions, dtype=torch.float32), step)

        def apply() -> None:
            if episode == self._episode:  # else the episode it was for has ended
                self._latest = batch

        return apply

    def rate(self, final_states: np.ndarray) -> np.ndarray | None:
        """The judge's ratings ``(k,)`` in ``[0, 10]`` of ``final_states (k, S)`` (observation units), asked now
        and waited for; ``None`` when the call failed or the reply was rejected (counted, logged, traced)."""
        states = np.asarray(final_states, dtype=np.float64)
        text = self._call("judge", judge_messages(self.spec, states), judge_schema(len(states)), "ratings")
        if text is None:
            return None
        try:
            ratings = parse_ratings(text, len(states))
        except ReplyRejected as exc:
            self._reject("judge", str(exc))
            return None
        with self._lock:
            self.counts["judge_ratings"] += len(ratings)
        return ratings

    def _ask_judge(self, batch: _Batch, final: np.ndarray) -> Callable[[], None]:
        ratings = self.rate(final)

        def apply() -> None:
            if ratings is not None:
                batch.ratings = torch.as_tensor(ratings, dtype=torch.float32)

        return apply

    def _call(self, role: str, messages: list[dict[str, str]], schema: dict[str, Any], name: str) -> str | None:
        """One chat call; its text, or ``None`` (counted, logged, traced) when it failed."""
        with self._lock:
            self.counts["calls"] += 1
        body: dict[str, Any] = {"messages": messages}
        start = time.perf_counter()
        try:
            if self.server is not None:
                self.client.url = self.server.start() + "/chat/completions"
            body = self.client.body(messages, schema, name, self.config.max_tokens, self.config.temperature)
            reply = self.client.chat(body)
        except (LLMError, LLMSetupError) as exc:
            kind = getattr(exc, "kind", "setup")
            with self._lock:
                self.counts["calls_timed_out" if kind == "timeout" else "calls_failed"] += 1
            self._warn(f"call_{kind}", f"{role} call failed ({kind}): {exc}; planning goes on without it")
            self._write_trace(role, body, None, f"failed: {kind}: {exc}", 1000 * (time.perf_counter() - start))
            return None
        with self._lock:
            self._latencies.append(reply.latency_ms)
        self._write_trace(role, body, reply.text, "replied", reply.latency_ms)
        return reply.text

    def _reject(self, role: str, reason: str) -> None:
        with self._lock:
            self.counts["replies_rejected"] += 1
        self._warn("reply_rejected", f"{role} reply rejected: {reason}; planning goes on without it")
        self._write_trace(role, {}, None, f"rejected: {reason}", 0.0)

    def _warn(self, kind: str, message: str) -> None:
        """Log ``message``: the first 5 of each kind as warnings, then every 100th (the rest at debug level)."""
        with self._lock:
            self._warned[kind] += 1
            count = self._warned[kind]
        level = logging.WARNING if count <= 5 or count % 100 == 0 else logging.DEBUG
        log.log(level, "%s (%s #%d)", message, kind, count)

    def _write_trace(self, role: str, body: dict[str, Any], reply: str | None, outcome: str,
                     latency_ms: float) -> None:
        if self._trace is None:
            return
        line = {"time": time.time(), "role": role, "messages": body.get("messages"),
                "response_format": body.get("response_format"), "reply": reply, "outcome": outcome,
                "latency_ms": round(latency_ms, 1)}
        with self._lock, self._trace.open("a") as f:
            f.write(json.dumps(line) + "\n")

    # ----------------------------------------------------------------- run lifetime, metrics
    def open_run(self, run_dir: Path) -> None:
        """Trace to ``run_dir/llm_trace.jsonl`` when ``llm.trace`` is on."""
        self._trace = run_dir / TRACE_NAME if self.config.trace else None

    def close(self) -> None:
        """Drop the call under way, stop the worker thread and the bundled server (a later call restarts them)."""
        executor, self._executor, self._pending = self._executor, None, None
        if executor is not None:
            executor.shutdown(wait=False, cancel_futures=True)
        if self.server is not None:
            self.server.stop()

    def metrics(self) -> dict[str, float]:
        """``{name: value}`` of the counters (cumulative) and ``latency_ms`` (mean since the last call)."""
        with self._lock:
            out = {name: float(value) for name, value in self.counts.items()}
            if self._latencies:
                out["latency_ms"] = float(np.mean(self._latencies))
                self._latencies = []
        return out


def make_llm_proposer(config: LLMConfig, env_id: str, obs_bounds: tuple[np.ndarray, np.ndarray],
                      act_bounds: tuple[np.ndarray, np.ndarray]) -> LLMProposer:
    """The proposer for ``config`` on a task with these observation and action bounds (environment units);
    with ``base_url`` bundled, checks the bundled server's packages and model now (:class:`LLMSetupError`)."""
    act_low, act_high = (np.asarray(b, dtype=np.float64).reshape(-1) for b in act_bounds)
    if not (np.isfinite(act_low).all() and np.isfinite(act_high).all()):
        raise LLMSetupError(f"the language model proposes within the action bounds, but {env_id}'s are not finite "
                            f"({act_low}, {act_high}); set llm.base_url empty for this task")
    obs_low, obs_high = (np.asarray(b, dtype=np.float64).reshape(-1) for b in obs_bounds)
    spec = TaskSpec(env_id, obs_low, obs_high, act_low, act_high, config.goal)
    server = None
    if config.base_url == BUNDLED:
        server = BundledServer(check_bundled(config.model_path), config.startup_timeout_s, threads=config.threads)
    return LLMProposer(config, spec, server=server)

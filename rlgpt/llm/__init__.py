"""Model backends: any OpenAI-compatible endpoint and the embedded local model."""

from rlgpt.llm.backend import LLMBackend, resolve_backend
from rlgpt.llm.client import (
    StructuredResult,
    add_usage,
    ask_code,
    ask_structured,
    check_code,
    empty_usage,
    restrict_schema,
)
from rlgpt.llm.errors import LLMError
from rlgpt.llm.grammar import CodeGrammarLimits, code_grammar
from rlgpt.llm.prompts import (
    coder_code_messages,
    coder_rl_messages,
    critic_messages,
    planner_messages,
    planner_schema,
    rl_setup_schema,
    skills_doc,
    verdict_schema,
)
from rlgpt.llm.settings import LLMSettings, split_model

__all__ = [
    "CodeGrammarLimits",
    "LLMBackend",
    "LLMError",
    "LLMSettings",
    "StructuredResult",
    "add_usage",
    "ask_code",
    "ask_structured",
    "check_code",
    "code_grammar",
    "coder_code_messages",
    "coder_rl_messages",
    "critic_messages",
    "empty_usage",
    "planner_messages",
    "planner_schema",
    "resolve_backend",
    "restrict_schema",
    "rl_setup_schema",
    "skills_doc",
    "split_model",
    "verdict_schema",
]

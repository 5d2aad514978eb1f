"""Model backends: any OpenAI-compatible endpoint and the embedded local model."""

from rlgpt.llm.backend import LLMBackend, resolve_backend
from rlgpt.llm.client import StructuredResult, ask_code, ask_structured, restrict_schema
from rlgpt.llm.errors import LLMError
from rlgpt.llm.parsing import CodeActionAnswer, clean_code_answer
from rlgpt.llm.settings import LLMSettings, split_model
from rlgpt.llm.usage import Usage, add_usage, empty_usage

__all__ = [
    "CodeActionAnswer",
    "LLMBackend",
    "LLMError",
    "LLMSettings",
    "StructuredResult",
    "Usage",
    "add_usage",
    "ask_code",
    "ask_structured",
    "clean_code_answer",
    "empty_usage",
    "resolve_backend",
    "restrict_schema",
    "split_model",
]

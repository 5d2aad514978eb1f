"""The model-backend plugin protocol and lookup of a backend from a model string."""

from __future__ import annotations

import threading
from typing import Any, Protocol, runtime_checkable

from langchain_core.language_models import BaseChatModel

from rlgpt import plugins
from rlgpt.llm.settings import LLMSettings, split_model


@runtime_checkable
class LLMBackend(Protocol):
    """A model backend (entry point group `rlgpt.llms`).

    A backend builds the chat model for a model name and says how a call is constrained.
    The keyword arguments it returns are passed to `chat_model.invoke(messages, **kwargs)`.
    The chat model retries transient errors itself (`settings.max_retries` times, as the
    OpenAI client does): `ask_structured` only asks again after a rejected answer.
    """

    supports_grammar: bool

    def chat_model(self, model_name: str, settings: LLMSettings) -> BaseChatModel:
        """A chat model for `model_name` (the part of the model string after the backend)."""
        ...

    def structured_kwargs(
        self, model_name: str, name: str, schema: dict[str, Any], settings: LLMSettings
    ) -> dict[str, Any]:
        """Invoke kwargs that constrain the answer to JSON matching `schema` (named `name`)."""
        ...

    def grammar_kwargs(
        self, model_name: str, grammar: str, settings: LLMSettings
    ) -> dict[str, Any]:
        """Invoke kwargs that constrain the answer with a GBNF grammar (if supported)."""
        ...


# (name, id(plugin)) -> (plugin, backend); holding the plugin keeps its id from being reused.
_instances: dict[tuple[str, int], tuple[Any, LLMBackend]] = {}
_lock = threading.Lock()


def resolve_backend(model: str) -> tuple[LLMBackend, str]:
    """The backend object and its model name for a model string such as `local:qwen2.5-coder-1.5b`.

    The plugin may be a backend instance or a class / factory taking no arguments.
    """
    name, model_name = split_model(model)
    plugin = plugins.llms.load(name)
    key = (name, id(plugin))
    with _lock:
        if key in _instances:
            return _instances[key][1], model_name
        backend = plugin() if isinstance(plugin, type) else plugin
        if not isinstance(backend, LLMBackend):
            raise TypeError(f"plugin {name!r} in rlgpt.llms is not an LLM backend")
        # One instance per plugin object: backends keep their chat models and servers.
        _instances[key] = (plugin, backend)
    return backend, model_name

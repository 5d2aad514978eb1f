"""Backend for the embedded local models (`local:qwen2.5-coder-1.5b`, `local:smollm2`), served
on 127.0.0.1 by rlgpt's own endpoint (`rlgpt.llm.engine_server`)."""

from __future__ import annotations

import copy
import importlib.util
import threading
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_openai import ChatOpenAI
from pydantic import SecretStr

from rlgpt.llm.errors import LLMError
from rlgpt.llm.local_server import shared_base_url
from rlgpt.llm.model_files import check_installed
from rlgpt.llm.settings import LLMSettings

#: Bounds on JSON answers of the local model: a tiny model otherwise tends to run on in
#: one string or repeat list items until the token budget is gone and the JSON is cut off.
LOCAL_MAX_STRING = 160
LOCAL_MAX_NAME = 40
LOCAL_MAX_ITEMS = 5
_NAME_FIELDS = ("id", "name", "item", "route")


#: Extra sampling for JSON answers, per model. Without a repetition penalty the 135M model
#: fills lists to their maximum with copies of one item (a Plan: 8 identical steps, ~540
#: tokens, 30-40 s here); with 1.2 it answers in a few dozen tokens. The 1.5B model needs
#: none, and a penalty on JSON's repeated punctuation only hurts it.
JSON_SAMPLING: dict[str, dict[str, float]] = {"smollm2": {"repeat_penalty": 1.2}}


def bounded_json_schema(
    schema: dict[str, Any],
    max_string: int = LOCAL_MAX_STRING,
    max_name: int = LOCAL_MAX_NAME,
    max_items: int = LOCAL_MAX_ITEMS,
) -> dict[str, Any]:
    """A copy of `schema` where every string without a `maxLength` gets one (`max_name` for
    identifier-like fields and list entries, else `max_string`) and every list without a
    `maxItems` at most `max_items` entries."""

    def fix(node: Any, short: bool) -> Any:
        if isinstance(node, dict):
            # Bounds the schema sets itself are kept; the defaults fill in where it has none.
            if node.get("type") == "string" and "enum" not in node and "const" not in node:
                node.setdefault("maxLength", max_name if short else max_string)
            if node.get("type") == "array":
                node.setdefault("maxItems", max_items)
                node["minItems"] = min(int(node.get("minItems", 0)), node["maxItems"])
            for key, value in node.items():
                if key == "properties" and isinstance(value, dict):
                    for name, prop in value.items():
                        fix(prop, name in _NAME_FIELDS or name.endswith("_id"))
                elif key == "items":
                    fix(value, True)
                else:
                    fix(value, short)
        elif isinstance(node, list):
            for value in node:
                fix(value, short)
        return node

    result: dict[str, Any] = fix(copy.deepcopy(schema), False)
    return result


class LocalBackend:
    """The local model endpoint, started on first use (or reused from RLGPT_LOCAL_LLM_URL).

    JSON answers are constrained with `response_format={"type": "json_object", "schema": ...}`
    and code answers with a GBNF grammar, both sent in the request body and enforced by a
    grammar sampler. The budget goes as `max_tokens` and the run's seed as `seed`.
    """

    supports_grammar = True

    def __init__(self) -> None:
        self._models: dict[tuple[str, LLMSettings], BaseChatModel] = {}
        self._lock = threading.Lock()

    def chat_model(self, model_name: str, settings: LLMSettings) -> BaseChatModel:
        """A `ChatOpenAI` talking to the local server of `model_name` (started if needed)."""
        base_url = shared_base_url(model_name)
        key = (base_url, settings)
        with self._lock:
            chat = self._models.get(key)
            if chat is None:
                chat = ChatOpenAI(
                    model=model_name,
                    base_url=base_url,
                    api_key=SecretStr("none"),
                    temperature=settings.temperature,
                    timeout=settings.timeout,
                    # The OpenAI client retries transient errors with backoff.
                    max_retries=settings.max_retries,
                    seed=settings.seed,
                    extra_body={"max_tokens": settings.max_tokens},
                )
                self._models[key] = chat
        return chat

    def preflight(self, model_name: str, settings: LLMSettings) -> str | None:
        """What the embedded model lacks here (its files, its engine), or None; nothing is
        joined or loaded."""
        try:
            check_installed(model_name)
        except LLMError as exc:
            return exc.message
        if importlib.util.find_spec("cyllama") is None:
            return "the embedded engine needs the `cyllama` package: pip install 'rlgpt[local-llm]'"
        return None

    def structured_kwargs(
        self, model_name: str, name: str, schema: dict[str, Any], settings: LLMSettings
    ) -> dict[str, Any]:
        """JSON mode with a schema (the server turns it into a grammar)."""
        fmt = {"type": "json_object", "schema": bounded_json_schema(schema)}
        body = {
            "max_tokens": settings.max_tokens,
            "response_format": fmt,
            **JSON_SAMPLING.get(model_name, {}),
        }
        return {"extra_body": body}

    def grammar_kwargs(
        self, model_name: str, grammar: str, settings: LLMSettings
    ) -> dict[str, Any]:
        """A raw GBNF grammar."""
        return {"extra_body": {"max_tokens": settings.max_tokens, "grammar": grammar}}

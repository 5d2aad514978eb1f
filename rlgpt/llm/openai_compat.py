"""Backend for OpenAI and any OpenAI-compatible endpoint (vLLM, Ollama, llama.cpp ...)."""

from __future__ import annotations

import copy
import os
import threading
from typing import Any

import openai
from langchain_core.language_models import BaseChatModel
from langchain_openai import ChatOpenAI
from pydantic import SecretStr

from rlgpt.llm.errors import LLMError
from rlgpt.llm.settings import LLMSettings

#: Seconds a preflight models-list request may take.
PREFLIGHT_TIMEOUT = 5.0


def make_chat_openai(
    model: str, base_url: str | None, api_key: str, settings: LLMSettings
) -> ChatOpenAI:
    """A `ChatOpenAI` with the settings' temperature, timeout and retries.

    The OpenAI client retries transient errors (timeouts, connection errors, HTTP
    408/409/429/5xx) `settings.max_retries` times with backoff, honouring Retry-After;
    answers that arrive but are rejected are asked for again by `ask_structured`.
    """
    return ChatOpenAI(
        model=model,
        base_url=base_url,
        api_key=SecretStr(api_key),
        temperature=settings.temperature,
        timeout=settings.timeout,
        max_retries=settings.max_retries,
        max_completion_tokens=settings.max_tokens,
    )


def strict_json_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """A copy of a pydantic JSON schema in the form OpenAI's strict mode accepts.

    Every object lists all its properties as required and forbids others; defaults are
    dropped (strict mode rejects them; the model fills every field instead).
    """

    def fix(node: Any) -> Any:
        if isinstance(node, dict):
            node.pop("default", None)
            if node.get("type") == "object" and "properties" in node:
                node["required"] = list(node["properties"])
                node["additionalProperties"] = False
            for value in node.values():
                fix(value)
        elif isinstance(node, list):
            for value in node:
                fix(value)
        return node

    result: dict[str, Any] = fix(copy.deepcopy(schema))
    return result


class OpenAIBackend:
    """OpenAI (`openai:<model>`) or any OpenAI-compatible URL (`<base URL>#<model>`).

    `openai:` reads OPENAI_API_KEY (and OPENAI_BASE_URL when set) and asks for strict
    `json_schema` answers. A URL reads RLGPT_API_KEY (default "none") and asks for
    non-strict `json_schema` answers, which vLLM and Ollama understand; it also sends the
    legacy `max_tokens` field, which some servers need. Grammars are not supported.
    """

    supports_grammar = False

    def __init__(self) -> None:
        self._models: dict[tuple[str, LLMSettings], BaseChatModel] = {}
        self._lock = threading.Lock()

    @staticmethod
    def _is_url(model_name: str) -> bool:
        return model_name.startswith(("http://", "https://"))

    def chat_model(self, model_name: str, settings: LLMSettings) -> BaseChatModel:
        """A `ChatOpenAI` for `gpt-...` (OpenAI) or `http://host/v1#model`."""
        key = (model_name, settings)
        with self._lock:
            if key in self._models:
                return self._models[key]
        if self._is_url(model_name):
            base_url, sep, model = model_name.partition("#")
            if not sep or not model:
                raise LLMError("server", f"model URL {model_name!r} must end with `#<model name>`")
            api_key = os.environ.get("RLGPT_API_KEY", "") or "none"
            chat = make_chat_openai(model, base_url.rstrip("/"), api_key, settings)
        else:
            api_key = os.environ.get("OPENAI_API_KEY", "")
            if not api_key:
                raise LLMError("auth", "OPENAI_API_KEY is not set")
            chat = make_chat_openai(
                model_name, os.environ.get("OPENAI_BASE_URL") or None, api_key, settings
            )
        with self._lock:
            self._models[key] = chat
        return chat

    def preflight(self, model_name: str, settings: LLMSettings) -> str | None:
        """What keeps `model_name` from answering (missing key, endpoint down), or None.

        One models-list request with a short timeout: it costs no tokens. A server without
        that route (404) still answered, so it passes.
        """
        if self._is_url(model_name):
            base_url, sep, model = model_name.partition("#")
            if not sep or not model:
                return f"the model URL must end with `#<model name>` (e.g. {base_url}#my-model)"
            api_key, key_name = os.environ.get("RLGPT_API_KEY", "") or "none", "RLGPT_API_KEY"
            where: str | None = base_url.rstrip("/")
        else:
            api_key, key_name = os.environ.get("OPENAI_API_KEY", ""), "OPENAI_API_KEY"
            if not api_key:
                return "OPENAI_API_KEY is not set: export it"
            where = os.environ.get("OPENAI_BASE_URL") or None
        client = openai.OpenAI(
            api_key=api_key,
            base_url=where,
            timeout=min(PREFLIGHT_TIMEOUT, settings.timeout),
            max_retries=0,
        )
        shown = where or "the OpenAI API"
        try:
            client.models.list()
        except (openai.AuthenticationError, openai.PermissionDeniedError) as exc:
            return f"{shown} rejected the key in {key_name} (HTTP {exc.status_code}): check it"
        except openai.NotFoundError:
            return None
        except openai.APIStatusError as exc:
            return f"{shown} answered HTTP {exc.status_code} to a models-list request: retry later"
        except openai.APITimeoutError:
            return (
                f"{shown} did not answer a models-list request within "
                f"{min(PREFLIGHT_TIMEOUT, settings.timeout):g} s: check that it is up"
            )
        except openai.APIConnectionError as exc:  # refused or unresolvable
            cause = exc.__cause__ or exc
            return f"cannot connect to {shown} ({cause}): start it or fix the URL"
        finally:
            client.close()
        return None

    def structured_kwargs(
        self, model_name: str, name: str, schema: dict[str, Any], settings: LLMSettings
    ) -> dict[str, Any]:
        """Invoke kwargs asking for JSON that matches `schema` (strict on OpenAI itself)."""
        body: dict[str, Any] = {}
        if self._is_url(model_name):
            body["max_tokens"] = settings.max_tokens
            fmt: dict[str, Any] = {"name": name, "schema": schema}
        else:
            fmt = {"name": name, "schema": strict_json_schema(schema), "strict": True}
        # Sent as part of the request body so the answer is read as plain text and parsed
        # and validated in one place, whatever the server.
        body["response_format"] = {"type": "json_schema", "json_schema": fmt}
        return {"extra_body": body}

    def grammar_kwargs(
        self, model_name: str, grammar: str, settings: LLMSettings
    ) -> dict[str, Any]:
        """Grammars are not part of the OpenAI API."""
        raise LLMError("server", "this backend does not support grammar-constrained answers")

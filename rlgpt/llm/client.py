"""Structured model calls: constrained decoding, validation, re-asking, caching and accounting."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage
from pydantic import BaseModel

from rlgpt.llm.backend import LLMBackend, resolve_backend
from rlgpt.llm.cache import ResponseCache, cache_key
from rlgpt.llm.errors import ErrorKind, LLMError, classify_error
from rlgpt.llm.parsing import (
    CodeActionAnswer,
    describe_invalid,
    message_text,
    parse_code_json,
    parse_code_text,
    parse_json_answer,
)
from rlgpt.llm.settings import LLMSettings
from rlgpt.llm.usage import Usage, empty_usage
from rlgpt.logging import get_logger
from rlgpt.plugins import PluginNotFoundError
from rlgpt.stream_events import emit

log = get_logger("rlgpt.llm")

T = TypeVar("T", bound=BaseModel)


@dataclass
class StructuredResult(Generic[T]):
    """A validated answer with its raw text and the cost of getting it.

    Attributes:
        value: The answer as a pydantic model instance.
        usage: Calls and tokens spent (a replay from the cache counts one cached call and
            no tokens).
        raw: The answer text the value was parsed from.
        cached: True when replayed from the on-disk cache.
    """

    value: T
    usage: Usage
    raw: str
    cached: bool


def _resolve(settings: LLMSettings) -> tuple[LLMBackend, str]:
    try:
        return resolve_backend(settings.model)
    except (PluginNotFoundError, ValueError, TypeError) as exc:
        raise LLMError("unreachable", str(exc), retryable=False) from exc


def _retry_message(error: LLMError, grammar: bool) -> HumanMessage:
    if error.kind == "truncated":
        hint = "Your answer was cut off. Answer again, much shorter."
    else:
        hint = f"Your answer was rejected: {error.message}. Answer again"
        hint += ", correcting this." if grammar else " with only the corrected JSON."
    return HumanMessage(content=hint)


def _ask(
    role: str,
    settings: LLMSettings,
    schema: type[T],
    messages: Sequence[BaseMessage],
    *,
    grammar: str | None,
    parse: Callable[[str], T],
    json_schema: dict[str, Any] | None = None,
) -> StructuredResult[T]:
    backend, model_name = _resolve(settings)
    use_grammar = grammar is not None and backend.supports_grammar
    if use_grammar:
        json_schema = None
    elif json_schema is None:
        json_schema = schema.model_json_schema()
    messages = list(messages)
    usage = empty_usage()
    started = time.monotonic()

    cache = ResponseCache(settings.cache_dir) if settings.cache_dir else None
    key = cache_key(
        settings.model,
        messages,
        schema=json_schema,
        grammar=grammar if use_grammar else None,
        temperature=settings.temperature,
        max_tokens=settings.max_tokens,
    )
    if cache is not None:
        raw = cache.get(key)
        if raw is not None:
            try:
                value = parse(raw)
            except ValueError:
                value = None  # stale entry (e.g. the schema changed): ask again
            if value is not None:
                usage["cached_calls"] = 1
                usage["seconds"] = time.monotonic() - started
                log.debug("llm_cache_hit", role=role, model=settings.model, key=key[:12])
                return StructuredResult(value=value, usage=usage, raw=raw, cached=True)

    try:
        chat = backend.chat_model(model_name, settings)
        if use_grammar and grammar is not None:
            kwargs = backend.grammar_kwargs(model_name, grammar, settings)
        else:
            kwargs = backend.structured_kwargs(
                model_name, schema.__name__, json_schema or {}, settings
            )
    except Exception as exc:
        raise classify_error(exc) from exc

    conversation = list(messages)
    last: LLMError | None = None
    prompt_chars = sum(len(str(m.content)) for m in messages)
    for attempt in range(settings.max_retries + 1):
        call_start = time.monotonic()
        # For a live display: which role is waiting, on how long a prompt (about four
        # characters a token; the exact count arrives with the answer).
        emit(
            {
                "event": "llm_call_started",
                "role": role,
                "model": settings.model,
                "attempt": attempt,
                "prompt_tokens_estimate": prompt_chars // 4,
            }
        )
        try:
            # The chat model's client retries transient errors itself (with backoff and
            # Retry-After); what reaches here is final, and one invoke is one call for us.
            reply = chat.invoke(conversation, **kwargs)
        except Exception as exc:
            usage["calls"] += 1
            usage["seconds"] += time.monotonic() - call_start
            error = classify_error(exc)
            log.warning(
                "llm_call_failed", role=role, model=settings.model, attempt=attempt,
                kind=error.kind, error=error.message[:300],
            )  # fmt: skip
            error.usage = dict(usage)
            raise error from exc
        usage["calls"] += 1
        usage["seconds"] += time.monotonic() - call_start
        # Read from the reply itself: LangChain's UsageMetadataCallbackHandler sums tokens
        # only, per model name, and skips replies whose metadata lacks a model name.
        meta = getattr(reply, "usage_metadata", None) or {}
        usage["input_tokens"] += int(meta.get("input_tokens", 0) or 0)
        usage["output_tokens"] += int(meta.get("output_tokens", 0) or 0)
        emit(
            {
                "event": "llm_call_finished",
                "role": role,
                "model": settings.model,
                "input_tokens": int(meta.get("input_tokens", 0) or 0),
                "output_tokens": int(meta.get("output_tokens", 0) or 0),
                "seconds": round(time.monotonic() - call_start, 3),
            }
        )
        if not isinstance(reply, AIMessage):
            reply = AIMessage(content=str(getattr(reply, "content", reply)))
        raw = message_text(reply)
        finish = str(reply.response_metadata.get("finish_reason", "") or "")
        try:
            value = parse(raw)
        except ValueError as exc:
            kind: ErrorKind = "truncated" if finish == "length" else "invalid"
            last = LLMError(kind, describe_invalid(exc), raw)
            log.warning(
                "llm_answer_rejected", role=role, model=settings.model, attempt=attempt,
                kind=kind, error=last.message[:300],
            )  # fmt: skip
            # Feed the rejected answer back (shortened: small context windows) with the reason.
            conversation = [
                *messages,
                AIMessage(content=raw[:800]),
                _retry_message(last, use_grammar),
            ]
            continue
        if cache is not None:
            try:
                cache.put(key, raw, {"model": settings.model, "role": role})
            except OSError as exc:
                # A cache that cannot be written costs a later call, not this answer.
                log.warning("llm_cache_write_failed", error=str(exc))
        log.info(
            "llm_call", role=role, model=settings.model, calls=usage["calls"],
            input_tokens=usage["input_tokens"], output_tokens=usage["output_tokens"],
            seconds=round(usage["seconds"], 2),
        )  # fmt: skip
        return StructuredResult(value=value, usage=usage, raw=raw, cached=False)
    if last is None:
        raise LLMError("server", "no attempt was made")
    last.usage = dict(usage)
    raise last


def ask_structured(
    role: str,
    settings: LLMSettings,
    schema: type[T],
    messages: Sequence[BaseMessage],
    *,
    grammar: str | None = None,
    json_schema: dict[str, Any] | None = None,
) -> StructuredResult[T]:
    """Ask `role`'s model for an answer of type `schema`.

    The answer is constrained to the schema's JSON on backends that support it (or to
    `json_schema`, a tighter form of it such as `restrict_schema` makes; or to `grammar`,
    which must produce that JSON, on backends with grammar support), then validated with
    pydantic on every backend. An answer that does not parse or validate, or is cut off,
    is asked for again with the reason fed back, up to `settings.max_retries` times.
    Transient errors (timeouts, connection errors, HTTP 408/409/429/5xx) are retried by
    the chat model's client, up to `settings.max_retries` times per request; once those
    are spent the error is raised. `usage["calls"]` counts requests as this function sees
    them: a retry inside the client is not a call of its own, though its time is counted.

    Raises:
        LLMError: kind unreachable, timeout, rate_limit, auth, truncated, invalid or server.
    """
    return _ask(
        role,
        settings,
        schema,
        messages,
        grammar=grammar,
        parse=lambda raw: parse_json_answer(raw, schema),
        json_schema=json_schema,
    )


def ask_code(
    role: str,
    settings: LLMSettings,
    messages: Sequence[BaseMessage],
    *,
    grammar: str | None = None,
) -> StructuredResult[CodeActionAnswer]:
    """Ask for a code action `def run(api): ...`.

    With grammar support (the local backend) and a `grammar` (a GBNF of the code the env's
    skill API allows) the answer is Python constrained by it. Elsewhere the model answers
    `CodeActionAnswer` JSON. Either way the code must compile and define `run(api)`.

    Raises:
        LLMError: as `ask_structured`.
    """
    backend, _ = _resolve(settings)
    if grammar is not None and backend.supports_grammar:
        return _ask(
            role, settings, CodeActionAnswer, messages, grammar=grammar, parse=parse_code_text
        )
    return _ask(role, settings, CodeActionAnswer, messages, grammar=None, parse=parse_code_json)


def restrict_schema(schema: type[BaseModel], choices: dict[str, Sequence[str]]) -> dict[str, Any]:
    """The JSON schema of `schema` with some string fields limited to given values.

    Keys are `<Model>.<field>` for the model or any model nested in it, e.g.
    `{"Predicate.name": achievements + items, "RLSetup.code_actions": library}`; a list
    field gets its items limited. An empty list of values leaves the field free. Small
    models then cannot invent names, and answers stay valid for the pydantic model.
    """
    result = schema.model_json_schema()
    models = {schema.__name__: result, **result.get("$defs", {})}
    for key, values in choices.items():
        model_name, _, field_name = key.partition(".")
        words = list(dict.fromkeys(values))
        prop = models.get(model_name, {}).get("properties", {}).get(field_name)
        if prop is None:
            raise KeyError(f"{key!r} is not a field of {schema.__name__} or its parts")
        if not words:
            continue
        target = prop["items"] if prop.get("type") == "array" else prop
        target.pop("anyOf", None)
        target["type"] = "string"
        target["enum"] = words
    return result


__all__ = ["StructuredResult", "ask_code", "ask_structured", "restrict_schema"]

"""Structured model calls: constrained decoding, validation, retries, caching and accounting."""

from __future__ import annotations

import ast
import contextlib
import json
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import httpx
import openai
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage
from pydantic import BaseModel, Field, ValidationError

from rlgpt.llm.backend import LLMBackend, resolve_backend
from rlgpt.llm.cache import ResponseCache, cache_key
from rlgpt.llm.errors import ErrorKind, LLMError
from rlgpt.llm.settings import LLMSettings
from rlgpt.llm.usage import Usage, add_usage, empty_usage
from rlgpt.logging import get_logger
from rlgpt.plugins import PluginNotFoundError

log = get_logger("rlgpt.llm")

# The OpenAI client is built on `httpx2` in recent releases and on `httpx` before; errors of
# either can surface, so both are classified.
_TIMEOUT_ERRORS: tuple[type[BaseException], ...] = (httpx.TimeoutException, TimeoutError)
_TRANSPORT_ERRORS: tuple[type[BaseException], ...] = (httpx.TransportError, ConnectionError)
_HTTP_ERRORS: tuple[type[BaseException], ...] = (httpx.HTTPError,)
try:
    import httpx2

    _TIMEOUT_ERRORS += (httpx2.TimeoutException,)
    _TRANSPORT_ERRORS += (httpx2.TransportError,)
    _HTTP_ERRORS += (httpx2.HTTPError,)
except ImportError:  # pragma: no cover - depends on the installed OpenAI client
    pass

T = TypeVar("T", bound=BaseModel)

#: Longest pause between two attempts, in seconds.
MAX_BACKOFF = 20.0


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


class CodeActionAnswer(BaseModel):
    """A code action as the model writes it: Python source defining `run(api) -> bool`."""

    code: str = Field(
        description="Python source defining `def run(api):` that returns True on success."
    )
    explanation: str = Field(default="", description="One or two sentences on how it works.")


# --------------------------------------------------------------------------- parsing

_FENCE = re.compile(r"```[a-zA-Z0-9_+-]*[ \t]*\n(.*?)(?:```|\Z)", re.DOTALL)


def strip_fences(text: str) -> str:
    """The body of the first Markdown code fence in `text` (an unclosed one too), else `text`."""
    match = _FENCE.search(text)
    return match.group(1) if match else text


def parse_json_answer(raw: str, schema: type[T]) -> T:
    """Parse and validate a JSON answer; tolerates fences, prose around the object and raw
    control characters inside strings.

    Raises:
        ValueError: no JSON object in the text (pydantic's ValidationError is a ValueError).
    """
    text = strip_fences(raw).strip()
    try:
        data = json.loads(text, strict=False)
    except json.JSONDecodeError:
        start, end = text.find("{"), text.rfind("}")
        if start < 0 or end <= start:
            raise ValueError("the answer holds no JSON object") from None
        try:
            data = json.loads(text[start : end + 1], strict=False)
        except json.JSONDecodeError as exc:
            raise ValueError(f"the answer is not valid JSON: {exc}") from None
    return schema.model_validate(data)


def clean_code_answer(code: str) -> str:
    """Normalise a code action and check it compiles and defines `run(api)` at top level.

    Raises:
        ValueError: syntax error, or no top-level `def run(api)`.
    """
    code = strip_fences(code).strip("\n")
    start = code.find("def run(")
    if start > 0 and code[:start].strip() and not code[:start].lstrip().startswith(("import", "#")):
        # Prose before the function (a chatty model): keep only the code.
        code = code[start:]
    code = code.rstrip() + "\n"
    try:
        tree = ast.parse(code)
        compile(tree, "<code_action>", "exec")
    except SyntaxError as exc:
        raise ValueError(f"syntax error at line {exc.lineno}: {exc.msg}") from None
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name == "run" and node.args.args:
            return code
    raise ValueError("the code must define a top-level function `def run(api):`")


def _message_text(message: AIMessage) -> str:
    if message.tool_calls:
        return json.dumps(message.tool_calls[0]["args"])
    if message.invalid_tool_calls:
        return str(message.invalid_tool_calls[0].get("args") or "")
    content = message.content
    if isinstance(content, str):
        return content
    parts = [
        part if isinstance(part, str) else str(part.get("text", ""))
        for part in content
        if isinstance(part, str) or (isinstance(part, dict) and part.get("type") == "text")
    ]
    return "".join(parts)


def _describe_invalid(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        items = [
            f"{'.'.join(str(p) for p in err['loc']) or 'answer'}: {err['msg']}"
            for err in exc.errors()[:6]
        ]
        return "; ".join(items)
    return str(exc)[:500]


# --------------------------------------------------------------------------- errors


def classify_error(exc: BaseException) -> LLMError:
    """Map an exception of the client libraries to an LLMError with a kind."""
    if isinstance(exc, LLMError):
        return exc
    name = type(exc).__name__
    if isinstance(exc, (openai.APITimeoutError, *_TIMEOUT_ERRORS)):
        return LLMError("timeout", f"the model did not answer in time ({name})")
    if isinstance(exc, (openai.APIConnectionError, *_TRANSPORT_ERRORS)):
        cause = exc.__cause__ or exc
        return LLMError("unreachable", f"cannot reach the model endpoint: {cause}")
    if isinstance(exc, openai.LengthFinishReasonError):
        return LLMError("truncated", "the answer hit the token limit")
    if isinstance(exc, openai.RateLimitError):
        return LLMError("rate_limit", f"rate limited: {exc.message}")
    if isinstance(exc, openai.AuthenticationError | openai.PermissionDeniedError):
        return LLMError("auth", f"the endpoint refused the credentials: {exc.message}")
    if isinstance(exc, openai.APIStatusError):
        status = exc.status_code
        text = exc.message.lower()
        if status == 408:
            return LLMError("timeout", f"HTTP 408: {exc.message}")
        if status >= 500:
            return LLMError("server", f"HTTP {status}: {exc.message}")
        if "context" in text and ("exceed" in text or "length" in text or "window" in text):
            return LLMError(
                "truncated", f"the prompt does not fit the context window: {exc.message}",
                retryable=False,
            )  # fmt: skip
        return LLMError("server", f"HTTP {status}: {exc.message}", retryable=False)
    if isinstance(exc, (openai.OpenAIError, *_HTTP_ERRORS)):
        return LLMError("server", f"{name}: {exc}", retryable=False)
    return LLMError("server", f"unexpected {name}: {exc}", retryable=False)


def _backoff(attempt: int, error: LLMError, cause: BaseException | None) -> float:
    delay = min(0.5 * 2**attempt, MAX_BACKOFF)
    if error.kind == "rate_limit" and isinstance(cause, openai.APIStatusError):
        header = cause.response.headers.get("retry-after", "")
        with contextlib.suppress(ValueError):
            delay = min(max(delay, float(header)), MAX_BACKOFF)
    return delay


# --------------------------------------------------------------------------- calls


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
    for attempt in range(settings.max_retries + 1):
        call_start = time.monotonic()
        try:
            reply = chat.invoke(conversation, **kwargs)
        except Exception as exc:
            usage["calls"] += 1
            usage["seconds"] += time.monotonic() - call_start
            last = classify_error(exc)
            log.warning(
                "llm_call_failed", role=role, model=settings.model, attempt=attempt,
                kind=last.kind, error=last.message[:300],
            )  # fmt: skip
            if not last.retryable or attempt == settings.max_retries:
                last.usage = dict(usage)
                raise last from exc
            time.sleep(_backoff(attempt, last, exc))
            continue
        usage["calls"] += 1
        usage["seconds"] += time.monotonic() - call_start
        meta = getattr(reply, "usage_metadata", None) or {}
        usage["input_tokens"] += int(meta.get("input_tokens", 0) or 0)
        usage["output_tokens"] += int(meta.get("output_tokens", 0) or 0)
        if not isinstance(reply, AIMessage):
            reply = AIMessage(content=str(getattr(reply, "content", reply)))
        raw = _message_text(reply)
        finish = str(reply.response_metadata.get("finish_reason", "") or "")
        try:
            value = parse(raw)
        except ValueError as exc:
            kind: ErrorKind = "truncated" if finish == "length" else "invalid"
            last = LLMError(kind, _describe_invalid(exc), raw)
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
    pydantic on every backend. Transient errors are retried with backoff
    and invalid or cut-off answers are retried with the reason fed back, up to
    `settings.max_retries` times in all.

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


def _parse_code_text(raw: str) -> CodeActionAnswer:
    return CodeActionAnswer(code=clean_code_answer(raw))


def _parse_code_json(raw: str) -> CodeActionAnswer:
    answer = parse_json_answer(raw, CodeActionAnswer)
    return CodeActionAnswer(code=clean_code_answer(answer.code), explanation=answer.explanation)


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
            role, settings, CodeActionAnswer, messages, grammar=grammar, parse=_parse_code_text
        )
    return _ask(role, settings, CodeActionAnswer, messages, grammar=None, parse=_parse_code_json)


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


__all__ = [
    "CodeActionAnswer",
    "StructuredResult",
    "add_usage",
    "ask_code",
    "ask_structured",
    "classify_error",
    "clean_code_answer",
    "empty_usage",
    "parse_json_answer",
    "restrict_schema",
    "strip_fences",
]

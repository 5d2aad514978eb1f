"""What model calls cost: calls, cached replays, tokens and seconds, per role."""

from __future__ import annotations

from typing_extensions import TypedDict


class Usage(TypedDict):
    """LLM calls and tokens of one role.

    `calls` counts model invocations as `ask_structured` sees them. A retry the OpenAI client
    makes inside one invocation (after a timeout, a connection error, HTTP 408/409/429/5xx)
    is not a call of its own: it is not visible outside the client; its time is in `seconds`.
    Tokens are those each reply reports in its `usage_metadata`.
    """

    calls: int
    cached_calls: int
    input_tokens: int
    output_tokens: int
    seconds: float


def empty_usage() -> Usage:
    """A Usage with every counter at zero."""
    return Usage(calls=0, cached_calls=0, input_tokens=0, output_tokens=0, seconds=0.0)


def add_usage(total: Usage, more: Usage) -> Usage:
    """The sum of two Usage records."""
    return Usage(
        calls=total["calls"] + more["calls"],
        cached_calls=total["cached_calls"] + more["cached_calls"],
        input_tokens=total["input_tokens"] + more["input_tokens"],
        output_tokens=total["output_tokens"] + more["output_tokens"],
        seconds=total["seconds"] + more["seconds"],
    )

"""Per-role model settings and the parsing of model strings into (backend, model)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

LLMRole = Literal["planner", "coder", "critic"]
ROLES: tuple[LLMRole, ...] = ("planner", "coder", "critic")


class LLMSettings(BaseModel):
    """How one role talks to its model."""

    model_config = ConfigDict(frozen=True)

    model: str = Field(
        default="local:qwen2.5-coder-1.5b",
        description="`local:qwen2.5-coder-1.5b`, `local:smollm2`, `openai:<model>`, "
        "`<http(s) base URL>#<model>`, or "
        "`<plugin>:<model>` for any backend registered in `rlgpt.llms`.",
    )
    temperature: float = Field(default=0.0, ge=0.0, le=2.0, description="Sampling temperature.")
    max_tokens: int = Field(default=768, ge=1, description="Upper bound on tokens per answer.")
    timeout: float = Field(
        default=180.0, gt=0.0, description="Seconds before one request (or retry) times out."
    )
    max_retries: int = Field(
        default=2,
        ge=0,
        description="Retries of one request after a transient error (timeout, connection "
        "error, HTTP 408/409/429/5xx), made by the OpenAI client with backoff and Retry-After; "
        "and, separately, how many times an answer that does not parse or validate is asked "
        "for again with the reason.",
    )
    cache_dir: str = Field(default="", description="On-disk response cache directory; empty = off.")
    seed: int = Field(default=0, ge=0, description="Sampling seed (matters when temperature > 0).")


def split_model(model: str) -> tuple[str, str]:
    """Split a model string into (backend plugin name, model name for that backend).

    An http(s) URL goes to the `openai` backend whole (it parses `<base>#<model>` itself);
    anything else is `<backend>:<model>`.
    """
    text = model.strip()
    if text.startswith(("http://", "https://")):
        return "openai", text
    backend, sep, name = text.partition(":")
    if not sep or not backend or not name:
        raise ValueError(
            f"malformed model string {model!r}; expected `local:<model>`, `openai:<model>` "
            "or `<http(s) base URL>#<model>`"
        )
    return backend, name

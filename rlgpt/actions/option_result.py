"""What one library-action call did (a primitive, a code action or a policy as an option)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class OptionResult:
    """What one library-action call did."""

    name: str
    success: bool
    env_steps: int
    reward: float
    errors: list[dict[str, Any]] = field(default_factory=list)
    interrupted: str | None = None
    trace: list[str] = field(default_factory=list)

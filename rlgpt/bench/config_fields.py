"""Fields of the suites' config dataclasses: a default and the description shown for it."""

from __future__ import annotations

from dataclasses import field
from typing import Any


def described(default: Any, description: str) -> Any:
    """A dataclass field with an immutable `default` and its `description` in the metadata."""
    return field(default=default, metadata={"description": description})

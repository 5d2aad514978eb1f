"""On-disk cache of model answers, keyed by a hash of everything that shapes the answer."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from langchain_core.messages import BaseMessage, messages_to_dict

from rlgpt.files import atomic_write_text


def cache_key(
    model: str,
    messages: list[BaseMessage],
    *,
    schema: dict[str, Any] | None,
    grammar: str | None,
    temperature: float,
    max_tokens: int,
) -> str:
    """A hex SHA-256 of the model, messages, constraint and sampling settings."""
    payload = {
        "model": model,
        "messages": messages_to_dict(messages),
        "schema": schema,
        "grammar": grammar,
        "temperature": temperature,
        "max_tokens": max_tokens,
    }
    blob = json.dumps(payload, sort_keys=True, default=str, ensure_ascii=False)
    return hashlib.sha256(blob.encode()).hexdigest()


class ResponseCache:
    """Raw answers stored as one JSON file per key (`<dir>/<key[:2]>/<key>.json`)."""

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)

    def _path(self, key: str) -> Path:
        return self.directory / key[:2] / f"{key}.json"

    def get(self, key: str) -> str | None:
        """The stored raw answer, or None (also for an unreadable entry)."""
        try:
            data = json.loads(self._path(key).read_text())
        except (OSError, ValueError):
            return None
        raw = data.get("raw") if isinstance(data, dict) else None
        return raw if isinstance(raw, str) else None

    def put(self, key: str, raw: str, meta: dict[str, Any] | None = None) -> None:
        """Store an answer atomically: readers see the old file or the new one, never half."""
        record = {"raw": raw, **(meta or {})}
        atomic_write_text(self._path(key), json.dumps(record, ensure_ascii=False))

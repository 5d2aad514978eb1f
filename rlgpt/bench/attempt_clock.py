"""Wall time of a resumable run over all its attempts, killed ones included.

A killed process cannot write its time when it ends, so the clock writes it every few
seconds while the run lives; the next attempt reads what the earlier ones had taken.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import Any

from rlgpt.files import atomic_write_text


class AttemptClock:
    """Context manager timing one attempt of a run and keeping every attempt's seconds in
    `path` (a JSON list, rewritten atomically every `every` seconds and at exit)."""

    def __init__(self, path: Path, every: float = 30.0) -> None:
        self.path = path
        self.every = every
        self._attempts: list[dict[str, Any]] = []
        self._started = 0.0
        self._stop = threading.Event()
        self._beat: threading.Thread | None = None
        self._lock = threading.Lock()

    def __enter__(self) -> AttemptClock:
        self._attempts = json.loads(self.path.read_text()) if self.path.exists() else []
        self._started = time.monotonic()
        self._attempts.append({"started": time.time(), "seconds": 0.0})
        self._write()
        self._beat = threading.Thread(target=self._beat_loop, name="attempt-clock", daemon=True)
        self._beat.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self._stop.set()
        if self._beat is not None:
            self._beat.join()
        self._write()

    @property
    def earlier_attempts(self) -> int:
        """How many attempts before this one left their time."""
        return len(self._attempts) - 1

    @property
    def total_seconds(self) -> float:
        """Seconds of every attempt so far, this one up to now."""
        earlier = sum(float(a["seconds"]) for a in self._attempts[:-1])
        return earlier + time.monotonic() - self._started

    def _beat_loop(self) -> None:
        while not self._stop.wait(self.every):
            self._write()

    def _write(self) -> None:
        with self._lock:
            self._attempts[-1]["seconds"] = round(time.monotonic() - self._started, 1)
            self.path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_text(self.path, json.dumps(self._attempts) + "\n")

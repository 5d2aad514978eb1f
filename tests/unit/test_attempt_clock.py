"""The attempt clock: a resumed run's wall time includes its killed attempts."""

from __future__ import annotations

import json
import time
from pathlib import Path

from rlgpt.bench.attempt_clock import AttemptClock


def test_a_running_attempt_writes_its_time_before_it_ends(tmp_path: Path) -> None:
    path = tmp_path / "run" / "attempts.json"
    with AttemptClock(path, every=0.01) as clock:
        assert clock.earlier_attempts == 0
        deadline = time.monotonic() + 10.0
        while json.loads(path.read_text())[-1]["seconds"] <= 0 and time.monotonic() < deadline:
            time.sleep(0.02)
        # What a kill at this moment would leave for the next attempt.
        assert json.loads(path.read_text())[-1]["seconds"] > 0
    assert len(json.loads(path.read_text())) == 1


def test_the_next_attempt_counts_the_time_a_killed_one_left(tmp_path: Path) -> None:
    path = tmp_path / "attempts.json"
    path.write_text(json.dumps([{"started": time.time() - 100, "seconds": 42.5}]))
    with AttemptClock(path) as clock:
        assert clock.earlier_attempts == 1
        assert 42.5 <= clock.total_seconds < 42.5 + 60
    attempts = json.loads(path.read_text())
    assert len(attempts) == 2 and attempts[0]["seconds"] == 42.5
    assert attempts[0]["started"] < attempts[1]["started"]

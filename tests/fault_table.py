"""The table of every fault the suite tried and how it ended, written after a test session.

Each test marked `faults` is one row: the fault (its docstring's first line, or its name,
and its parameters), its outcome and duration. The table goes to
`runs/test_results/faults.md`, and to the path in RLGPT_FAULTS_TABLE when set
(`make faults-table` writes docs/faults.md that way).
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from tests.helpers import TEST_RESULTS

TABLE_ENV = "RLGPT_FAULTS_TABLE"


def _git(*args: str) -> str:
    """The output of a git command in the working directory ('' when git fails)."""
    done = subprocess.run(["git", *args], capture_output=True, text=True, check=False)
    return done.stdout.strip() if done.returncode == 0 else ""


@dataclass
class FaultTable:
    """Rows collected while the tests run."""

    rows: list[tuple[str, str, str, float]] = field(default_factory=list)

    def add(self, test: str, fault: str, outcome: str, seconds: float) -> None:
        """One finished fault test."""
        self.rows.append((test, fault, outcome, seconds))

    def markdown(self) -> str:
        """The table, with the commit it ran on."""
        commit = _git("rev-parse", "--short", "HEAD") or "?"
        dirty = " (uncommitted changes in the tree)" if _git("status", "--porcelain") else ""
        kills = os.environ.get("RLGPT_KILLS", "").strip()
        command = " ".join(["pytest", *sys.argv[1:]]) + (
            f" with RLGPT_KILLS={kills}" if kills else ""
        )
        passed = sum(outcome == "passed" for _, _, outcome, _ in self.rows)
        lines = [
            "# Faults tried",
            "",
            f"Produced by the test suite (`{command}`) at commit `{commit}`{dirty}: "
            f"{passed} of {len(self.rows)} fault tests passed. Each test asserts the outcome "
            "its line states; the test id says where it lives.",
            "",
            "| fault and expected outcome | test | result | seconds |",
            "| --- | --- | --- | ---: |",
        ]
        for test, fault, outcome, seconds in sorted(self.rows):
            lines.append(f"| {fault} | `{test}` | {outcome} | {seconds:.1f} |")
        return "\n".join(lines) + "\n"

    def write(self) -> None:
        """Write the table where it belongs (nothing when no fault test ran)."""
        if not self.rows:
            return
        TEST_RESULTS.mkdir(parents=True, exist_ok=True)
        text = self.markdown()
        (TEST_RESULTS / "faults.md").write_text(text)
        target = os.environ.get(TABLE_ENV, "").strip()
        if target:
            Path(target).write_text(text)


def describe(doc: str | None, name: str, params: str) -> str:
    """A row's fault: the docstring's first sentence (or the name), with the parameters."""
    text = (doc or "").strip().split("\n\n")[0].replace("\n", " ")
    text = " ".join(text.split()) or name.removeprefix("test_").replace("_", " ")
    return f"{text} [{params}]" if params else text

"""The README's table of exit codes is the one `rlgpt run` uses."""

from __future__ import annotations

import re
from pathlib import Path

from rlgpt.exit_codes import ExitCode

README = Path(__file__).resolve().parents[2] / "README.md"


def test_the_readme_lists_every_exit_code_once() -> None:
    text = README.read_text()
    table = text[text.index("| exit code | `rlgpt run` ended because |") :].split("\n\n")[0]
    listed = [int(code) for code in re.findall(r"^\| (\d+) \|", table, flags=re.MULTILINE)]
    assert listed == sorted(int(code) for code in ExitCode)

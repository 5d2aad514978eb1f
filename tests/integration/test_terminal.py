"""`rlgpt run` in a pseudo-terminal: the live panel and the log lines do not tear each other.

The run is real (grid-world env plugin, code checks in the sandbox, an SB3 job, the critic's
rollouts, the report) with the scripted models; its bytes are replayed on a terminal
emulator (pyte) and the screen, scrollback included, is read back.
"""

from __future__ import annotations

import fcntl
import os
import pty
import select
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

import pyte
import pytest

from rlgpt.exit_codes import ExitCode
from tests.helpers import finished_exit_code

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
COLUMNS, ROWS = 140, 40

#: Registers the scripted models for this process, then runs the real CLI.
DRIVER = """
import json, sys
from rlgpt.cli import main
from tests.fakes import scripted_backend
from tests.helpers import GRIDWORLD_PLAN, code, fetch_code
from tests.integration.test_gridworld_graph import SETUP
with scripted_backend("scripted") as model:
    model.answers = [
        json.dumps(GRIDWORLD_PLAN), code(fetch_code("key")), code(fetch_code("gem")),
        json.dumps(SETUP),
    ]
    sys.exit(main(sys.argv[1:]))
"""

SETTINGS = {
    "env": "gridworld",
    "planner-model": "scripted:planner",
    "coder-model": "scripted:coder",
    "critic-model": "scripted:critic",
    "critic": "rules",
    "plan-revisions": 0,
    "code-repairs": 0,
    "code-check-episodes": 2,
    "code-action-max-steps": 60,
    "subaction-max-steps": 60,
    "rl-timesteps": 4096,
    "rl-n-steps": 128,
    "eval-episodes": 3,
    "max-inner-loops": 0,
    "max-outer-loops": 0,
    "llm-max-retries": 0,
}


def run_in_terminal(argv: list[str], cwd: Path, timeout: float = 600) -> tuple[int, bytes]:
    """Run `argv` with a pseudo-terminal as its standard streams; (exit code, bytes shown)."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", ROWS, COLUMNS, 0, 0))
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES", "NO_COLOR")}
    # The repository for the driver's imports; the test plugins' directory is already there.
    env.update(TERM="xterm-256color", PYTHONPATH=os.pathsep.join([str(ROOT), env["PYTHONPATH"]]))
    proc = subprocess.Popen(
        argv, stdin=slave, stdout=slave, stderr=slave, cwd=cwd, env=env, start_new_session=True
    )
    os.close(slave)
    shown = bytearray()
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.5)
            if ready:
                try:
                    data = os.read(master, 65536)
                except OSError:  # the last writer closed the terminal
                    break
                if not data:
                    break
                shown += data
            elif proc.poll() is not None:
                break
        else:
            raise AssertionError(f"the run did not end in {timeout:.0f} s")
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(master)
    return proc.wait(timeout=30), bytes(shown)


def screen_lines(shown: bytes) -> list[str]:
    """Every line the terminal ends up showing, scrollback first, trailing blanks dropped."""
    screen = pyte.HistoryScreen(COLUMNS, ROWS, history=10_000)
    pyte.ByteStream(screen).feed(shown)
    scrolled = ["".join(line[x].data for x in range(COLUMNS)) for line in screen.history.top]
    lines = [line.rstrip() for line in [*scrolled, *screen.display]]
    while lines and not lines[-1]:
        lines.pop()
    return lines


@pytest.mark.parametrize("loudness", ["--verbose", "default", "--quiet"])
def test_the_panel_and_the_logs_stay_whole(tmp_path: Path, loudness: str) -> None:
    runs = tmp_path / "runs"
    flags = [f"--{key}={value}" for key, value in SETTINGS.items()]
    argv = [sys.executable, "-c", DRIVER]
    argv += [] if loudness == "default" else [loudness]
    argv += ["run", "--task", "gridworld:collect_gem", "--runs-dir", str(runs), *flags]
    code, shown = run_in_terminal(argv, tmp_path)
    lines = screen_lines(shown)
    text = "\n".join(lines)
    (run_dir,) = [p.parent for p in runs.glob("*/context.json")]
    assert code == finished_exit_code(run_dir), text
    assert "Traceback" not in text
    # The final line, wrapped where the terminal is narrower than the report's path.
    tail = "".join(lines[lines.index(next(x for x in lines if x.startswith("task success"))) :])
    assert tail.endswith(f"report: {run_dir / 'report.md'}"), text

    panel = [line for line in lines if line.startswith(("node ", "RL ", "verdict ", "elapsed "))]
    logs = [line for line in lines if "[info" in line or "[warning" in line]
    if loudness == "--quiet":
        assert not panel and not logs, text
        return
    # One panel on the screen: its earlier frames were erased, not left in the scrollback.
    assert sum(line.startswith("elapsed ") for line in lines) == 1, text
    assert sum(line.startswith("node ") for line in lines) == 1, text
    (rl_row,) = [line for line in panel if line.startswith("RL ")]
    assert "open_door_policy" in rl_row
    assert "━" in rl_row and "env steps" in rl_row and "steps/s" in rl_row, rl_row
    assert "done" in rl_row
    (verdict,) = [line for line in panel if line.startswith("verdict ")]
    assert "task success" in verdict
    last_call = [line for line in lines if line.startswith("last call ")]
    assert len(last_call) == 1 and "tokens/s" in last_call[0], text
    # Log lines are lines of their own, above the panel, never inside it.
    for line in logs:
        assert "━" not in line and "env steps ·" not in line, line
    for line in panel:
        assert "[info" not in line, line
    if loudness == "default":
        assert not [line for line in logs if "[info" in line], text
    else:
        events = " ".join(logs)
        for event in ("run_started", "llm_call", "code_checked", "rl_progress", "verdict"):
            assert event in events, event
        first_panel = lines.index(panel[0])
        assert all(lines.index(line) < first_panel for line in logs), text
    if code == ExitCode.BELOW_BAR:
        assert "below the critic's bar" in text

"""Fixtures of every test: the test plugins installed on the import path, the scripted model.

`tests/plugins` holds env plugins written for the tests, each with a `*.dist-info`
directory declaring its entry point, so `importlib.metadata` finds them as it finds any
installed plugin. The directory goes on `sys.path` (this process) and on PYTHONPATH, so
that forkserver workers (code checks, evaluations, SB3 env workers) and subprocesses
(the CLI, the graph server) load the plugins through their entry points too.

`scripted` is the scripted chat model (tests/fakes.py) behind every `scripted:<name>`
model string.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fakes import ScriptedChatModel, scripted_backend
from tests.fault_table import FaultTable, describe

PLUGINS_DIR = Path(__file__).resolve().parent / "plugins"


def _install_test_plugins() -> None:
    path = str(PLUGINS_DIR)
    if path not in sys.path:
        sys.path.insert(0, path)
    parts = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    if path not in parts:
        os.environ["PYTHONPATH"] = os.pathsep.join([path, *parts])


# At import, before any test starts a forkserver: the forkserver copies this sys.path.
_install_test_plugins()


@pytest.fixture
def scripted() -> Iterator[ScriptedChatModel]:
    """A scripted model behind every `scripted:<name>` model string; set `.answers`."""
    with scripted_backend("scripted") as model:
        yield model


# ------------------------------------------------------------------ the faults table
FAULTS = FaultTable()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """Note each finished test marked `faults` for the faults table."""
    outcome = yield
    report = outcome.get_result()
    if item.get_closest_marker("faults") is None:
        return
    if report.when == "call" or (report.when == "setup" and not report.passed):
        function = getattr(item, "function", None)
        params = item.callspec.id if hasattr(item, "callspec") else ""
        fault = describe(getattr(function, "__doc__", None), item.name.split("[")[0], params)
        FAULTS.add(item.nodeid.split("::")[0], fault, report.outcome, report.duration)


def pytest_sessionfinish(session: pytest.Session) -> None:
    """Write the faults table of this session."""
    FAULTS.write()

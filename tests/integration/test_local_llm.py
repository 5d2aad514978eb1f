"""The model layer against the real embedded llama.cpp server with the bundled small model."""

from __future__ import annotations

import ast
import multiprocessing
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from rlgpt.actions.grammar import code_grammar
from rlgpt.graph.schemas import Plan, RLSetup, Verdict
from rlgpt.llm import LLMError, LLMSettings, ask_code, ask_structured
from rlgpt.llm.local_server import (
    URL_ENV,
    LocalServer,
    free_port,
    server_answers,
    shared_base_url,
    stop_shared_servers,
)
from rlgpt.nodes import prompts
from tests.helpers import SPECS

pytestmark = pytest.mark.integration

VOCAB = {"targets": ["tree", "water", "stone"], "items": ["wood", "stone"]}
MANUAL = (
    "Facing a tree and interacting gives 1 wood (achievement collect_wood). "
    "A table is placed with 1 wood (achievement place_table)."
)
STEP = {
    "id": "get_wood",
    "description": "Collect 2 wood from trees.",
    "predicate": {"kind": "inventory", "name": "wood", "at_least": 2},
    "method": "code",
}


#: The small model: these tests need a working endpoint, not good answers.
FAST = "smollm2"


def local_settings(max_tokens: int) -> LLMSettings:
    return LLMSettings(model=f"local:{FAST}", max_tokens=max_tokens, max_retries=1, timeout=120)


def test_plan_is_schema_constrained(local_server: LocalServer) -> None:
    messages = prompts.planner_messages(
        "collect_wood", "Collect one wood.", MANUAL, prompts.skills_doc(SPECS), None, None
    )
    vocabulary = {"achievements": ["collect_wood", "place_table"], "items": ["wood", "stone"]}
    names = [*vocabulary["achievements"], *vocabulary["items"]]
    schema = prompts.planner_schema(vocabulary)
    # Room for a long plan (the schema admits a rationale and up to 8 steps), not only a
    # short one: this model fills lists.
    result = ask_structured("planner", local_settings(1200), Plan, messages, json_schema=schema)
    assert isinstance(result.value, Plan) and 1 <= len(result.value.sub_actions) <= 8
    assert all(step.predicate.name in names for step in result.value.sub_actions)
    assert result.value.sub_actions[0].method in ("code", "rl")
    assert result.usage["calls"] >= 1 and result.usage["output_tokens"] > 0
    assert result.usage["input_tokens"] > 100 and not result.cached


def test_rl_setup_and_verdict(local_server: LocalServer) -> None:
    setup = ask_structured(
        "coder",
        local_settings(200),
        RLSetup,
        prompts.coder_rl_messages(STEP, ["find_tree"], None),
        json_schema=prompts.rl_setup_schema(["find_tree"], ["wood", "stone"]),
    )
    assert 10 <= setup.value.episode_length <= 10000
    assert set(setup.value.code_actions) <= {"find_tree"}
    evaluation = {
        "task_success_rate": 0.2,
        "episodes": 5,
        "subaction_success": {"get_wood": 0.2},
        "failures": [{"subaction": "get_wood", "reason": "no tree in view"}],
    }
    verdict = ask_structured(
        "critic",
        local_settings(200),
        Verdict,
        prompts.critic_messages("collect_wood", {"sub_actions": [STEP]}, evaluation, []),
        json_schema=prompts.verdict_schema(["get_wood"]),
    )
    assert verdict.value.route in ("coder", "planner", "end")
    assert set(verdict.value.subaction_ids) <= {"get_wood"}


def test_code_action_through_the_grammar(local_server: LocalServer) -> None:
    messages = prompts.coder_code_messages(STEP, MANUAL, prompts.skills_doc(SPECS), None, None)
    result = ask_code("coder", local_settings(300), messages, grammar=code_grammar(SPECS, VOCAB))
    code = result.value.code
    tree = ast.parse(code)
    compile(tree, "<code_action>", "exec")
    assert [type(n) for n in tree.body] == [ast.FunctionDef]
    calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call)]
    assert calls
    names = {s.name for s in SPECS}
    for call in calls:
        func = call.func
        if isinstance(func, ast.Name):
            assert func.id == "range"
            continue
        assert isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name)
        assert func.value.id == "api" and func.attr in names
        assert all(isinstance(arg, ast.Constant) for arg in call.args)


def test_unreachable_endpoint_fails_fast() -> None:
    port = free_port()
    settings = LLMSettings(model=f"http://127.0.0.1:{port}/v1#m", max_retries=1, timeout=5)
    started = time.monotonic()
    with pytest.raises(LLMError) as info:
        ask_structured("critic", settings, Verdict, prompts.critic_messages("t", {}, {}, []))
    assert info.value.kind == "unreachable"
    assert time.monotonic() - started < 5


def test_shared_server_starts_once_and_stops(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(URL_ENV, raising=False)
    urls: list[str] = []
    threads = [
        threading.Thread(target=lambda: urls.append(shared_base_url(FAST))) for _ in range(3)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    try:
        assert len(urls) == 3 and len(set(urls)) == 1
        assert server_answers(urls[0])
    finally:
        stop_shared_servers()
    assert not server_answers(urls[0], timeout=1.0)


def _stop_in_child(server: LocalServer) -> None:
    server.stop()


def test_forked_copy_never_stops_the_server(local_server: LocalServer) -> None:
    url = local_server.base_url
    child = multiprocessing.get_context("fork").Process(target=_stop_in_child, args=(local_server,))
    child.start()
    child.join(timeout=30)
    assert child.exitcode == 0
    assert local_server.running and server_answers(url)


# A host as a terminal starts it: SIGINT raises KeyboardInterrupt even when the suite itself
# was started in the background, where the shell leaves SIGINT ignored for its children.
_CHILD = """
import os, signal, sys, time
signal.signal(signal.SIGINT, signal.default_int_handler)
from rlgpt.llm.local_server import shared_base_url
from rlgpt.llm.local_server import _shared
url = shared_base_url("smollm2")
print(_shared["smollm2"].process.pid, url, flush=True)
time.sleep(120)
"""


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGKILL])
def test_server_dies_with_its_host(sig: signal.Signals, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != URL_ENV}
    host = subprocess.Popen(
        [sys.executable, "-c", _CHILD], stdout=subprocess.PIPE, env=env, cwd=tmp_path
    )
    try:
        assert host.stdout is not None
        pid_text, url = host.stdout.readline().decode().split()
        server_pid = int(pid_text)
        assert server_answers(url)
        host.send_signal(sig)
        # Generous: on a loaded machine a signalled host once took over 30 s to be reaped.
        code = _reaped(host, timeout=120)
        assert code == -sig, f"host not reaped: {_process_state(host.pid)}"
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and _alive(server_pid):
            time.sleep(0.2)
        assert not _alive(server_pid)
    finally:
        if host.poll() is None:
            host.kill()
            host.wait()


def _reaped(process: subprocess.Popen[bytes], timeout: float) -> int | None:
    """The exit code, polled until `timeout`; unlike `Popen.wait`, a poll always follows
    the last sleep, so a test process that was itself descheduled does not time out early."""
    deadline = time.monotonic() + timeout
    while (code := process.poll()) is None and time.monotonic() < deadline:
        time.sleep(0.2)
    return process.poll() if code is None else code


def _process_state(pid: int) -> str:
    """The state and kernel wait channel of each thread of `pid`, for a failure message."""
    states = []
    for task in sorted(Path(f"/proc/{pid}/task").glob("*")):
        try:
            stat = (task / "stat").read_text().rsplit(")", 1)[1].split()[0]
            states.append(f"{task.name}:{stat}:{(task / 'wchan').read_text() or '-'}")
        except OSError as exc:
            states.append(f"{task.name}:{exc.strerror}")
    return ", ".join(states) or "no /proc entry"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is gone for good; it only waits for its (dead) parent to be reaped.
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().split()[2] != "Z"
    except OSError:
        return False

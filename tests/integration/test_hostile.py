"""Hostile code actions: each is refused statically or stopped at run time, the host unharmed."""

from __future__ import annotations

import hashlib
import os
import sqlite3
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from rlgpt.actions.build import OptionsEnvFactory
from rlgpt.actions.library import ActionLibrary
from rlgpt.actions.sandbox import CodeActionRejected, check_code, worker_death_error
from rlgpt.actions.vec_workers import SupervisedSubprocVecEnv
from rlgpt.envs.base import EnvSettings
from rlgpt.envs.crafter.adapter import CrafterAdapter
from rlgpt.tools.code_check import check_code_action
from tests.helpers import CPU_LIMITS

pytestmark = pytest.mark.integration

SKILLS = [s.name for s in CrafterAdapter().skill_specs()]
SCORE = CrafterAdapter().task("crafter:score")
MARKER = "/tmp/rlgpt_hostile_marker"
LIMITS = replace(CPU_LIMITS, memory_mb=512, max_steps=30, recursion_depth=100)

# (name, source, expected static-check message)
STATIC_CASES: list[tuple[str, str, str]] = [
    ("import_os", "import os\ndef run(api):\n    return os.fork() > 0\n", "import"),
    ("import_socket", "def run(api):\n    import socket\n    return True\n", "import"),
    (
        "from_subprocess",
        "from subprocess import run as r\ndef run(api):\n    return True\n",
        "import",
    ),
    ("dunder_import", "def run(api):\n    return __import__('os').fork() > 0\n", "'_'"),
    ("open_write", f"def run(api):\n    open('{MARKER}', 'w').write('x')\n", "`open`"),
    ("eval", "def run(api):\n    return eval('1 + 1') == 2\n", "`eval`"),
    ("exec", "def run(api):\n    exec('x = 1')\n", "`exec`"),
    ("compile", "def run(api):\n    return compile('1', 'f', 'eval')\n", "`compile`"),
    ("globals", "def run(api):\n    return globals() is None\n", "`globals`"),
    ("subclasses", "def run(api):\n    return ().__class__.__bases__[0].__subclasses__()\n", "'_'"),
    ("api_env", "def run(api):\n    return api._env.step(0)\n", "'_'"),
    ("api_dict", "def run(api):\n    return api.__dict__\n", "'_'"),
    ("closure_walk", "def run(api):\n    return api.noop.__closure__[0]\n", "'_'"),
    ("bound_self", "def run(api):\n    return api.noop.__self__\n", "'_'"),
    (
        "cell_contents",
        "def run(api):\n    c = api.noop\n    return c.cell_contents\n",
        "cell_contents",
    ),
    ("func_globals", "def run(api):\n    return run.__globals__\n", "'_'"),
    (
        "gen_frame",
        "def run(api):\n    g = (x for x in [1])\n    return g.gi_frame.f_back\n",
        "frame",
    ),
    ("format_walk", "def run(api):\n    return '{0._env}'.format(api)\n", "`.format`"),
    ("getattr", "def run(api):\n    return getattr(api, 'noop')\n", "`getattr`"),
    ("vars", "def run(api):\n    return vars(api)\n", "`vars`"),
    ("type", "def run(api):\n    return type(api)\n", "`type`"),
    ("privileged_map", "def run(api):\n    return api.full_map()\n", "not a skill"),
    ("step_env", "def run(api):\n    return api.step(0)\n", "not a skill"),
    ("patch_proxy", "def run(api):\n    api.noop = None\n    return True\n", "assigning"),
    ("numpy_file", f"def run(api):\n    v = api.nearby()\n    v.tofile('{MARKER}')\n", "tofile"),
    ("decorator", "@staticmethod\ndef run(api):\n    return True\n", "decorators"),
    (
        "default_bomb",
        "def run(api, n=sum(range(10 ** 12))):\n    return True\n",
        "default values",
    ),
    ("module_bomb", "X = [0] * 10 ** 9\ndef run(api):\n    return True\n", "literal"),
    ("module_loop", "while True:\n    pass\ndef run(api):\n    return True\n", "module level"),
    ("power_bomb", "def run(api):\n    return 10 ** 10 ** 10 > 0\n", "`**`"),
    (
        "try_swallow",
        "def run(api):\n    try:\n        pass\n    except Exception:\n        pass\n",
        "try",
    ),
    ("lambda", "def run(api):\n    f = lambda: 1\n    return f() == 1\n", "lambda"),
    ("class", "class X:\n    pass\ndef run(api):\n    return True\n", "class"),
    ("breakpoint", "def run(api):\n    breakpoint()\n", "`breakpoint`"),
    ("print_flood", "def run(api):\n    print('x' * 10 ** 6)\n", "`print`"),
    ("global", "N = 0\ndef run(api):\n    global N\n    N = 1\n", "global"),
    ("yield", "def run(api):\n    yield 1\n", "yield"),
    (
        "match_walk",
        "def run(api):\n    match ():\n        case tuple(__class__=c):\n            return c\n",
        "class patterns",
    ),
    ("no_run", "def helper(api):\n    return True\n", "def run(api)"),
    ("huge_source", "def run(api):\n    return True\n" + "#" * 30_000, "limit"),
]


@pytest.mark.parametrize(
    ("name", "source", "message"), STATIC_CASES, ids=[c[0] for c in STATIC_CASES]
)
def test_refused_statically(name: str, source: str, message: str) -> None:
    with pytest.raises(CodeActionRejected) as info:
        check_code(source, SKILLS)
    assert info.value.kind == "static"
    assert message in str(info.value)


# (name, source, kind or None for no error, line, extra check)
RUNTIME_CASES: list[tuple[str, str, str | None, int | None, str]] = [
    ("busy_loop", "def run(api):\n    x = 0\n    while True:\n        x += 1\n", "cpu", None, ""),
    (
        "c_level_loop",
        "def run(api):\n    api.noop()\n    return sum(range(10 ** 18)) > 0\n",
        "cpu",
        3,
        "replaced",
    ),
    (
        "bigint_bomb",
        "def run(api):\n    x = 10 ** 60\n    while True:\n        x = x * x\n",
        "cpu",
        None,
        "",
    ),
    (
        "list_bomb",
        "def run(api):\n    x = [0] * (10 ** 9)\n    return len(x) > 0\n",
        "memory",
        2,
        "",
    ),
    (
        "growth_bomb",
        "def run(api):\n    x = []\n    while True:\n        x.append('y' * 10 ** 8)\n",
        # Whichever limit comes first: on a fresh VM the first touch of never-used memory is
        # ~10x slower, and filling 512 MB then takes more than the 1 s of CPU.
        "memory|cpu",
        4,
        "",
    ),
    (
        "recursion_bomb",
        "def f(n):\n    return f(n + 1)\n\ndef run(api):\n    return f(0)\n",
        "recursion",
        2,
        "",
    ),
    ("huge_return", "def run(api):\n    return 'x' * 10 ** 7\n", "return_type", None, "short"),
    ("huge_error", "def run(api):\n    return {}['k' * 10 ** 7]\n", "runtime", 2, "short"),
    ("wrong_type", "def run(api):\n    return [1, 2]\n", "return_type", None, ""),
    ("exception", "def run(api):\n    api.noop()\n    return 1 / 0\n", "runtime", 3, "step1"),
    (
        "step_flood",
        "def run(api):\n    while True:\n        api.noop()\n",
        "step_budget",
        3,
        "step30",
    ),
    ("fork_no_os", "def run(api):\n    return os.fork() > 0\n", "runtime", 2, "NameError"),
    ("socket_no_module", "def run(api):\n    s = socket.socket()\n", "runtime", 2, "NameError"),
    ("alias_walk", "def run(api):\n    a = api\n    return a.memory\n", "runtime", 3, "memory"),
    (
        "module_state",
        "SEEN = [1]\n\ndef run(api):\n    SEEN.append(2)\n    return True\n",
        "runtime",
        4,
        "append",
    ),
    (
        "tamper_inventory",
        "def run(api):\n    inv = api.inventory()\n    inv['diamond'] = 99\n"
        "    return api.has('diamond')\n",
        None,
        None,
        "false",
    ),
    (
        "slow_but_fine",
        "def run(api):\n    t = 0\n    for i in range(200000):\n        t += i\n    return t > 0\n",
        None,
        None,
        "true",
    ),
]
RUNTIME_NAMES = [c[0] for c in RUNTIME_CASES]


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _tree(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): _digest(p) for p in sorted(root.rglob("*")) if p.is_file()}


def _children(pid: int) -> set[int]:
    """Live (non-zombie) processes whose parent is `pid`."""
    found = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[1]) == pid and fields[0] != "Z":
            found.add(int(entry))
    return found


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _make_checkpoint(path: Path) -> None:
    """A real LangGraph SQLite checkpoint, standing for the run's saved state."""
    from langgraph.checkpoint.base import empty_checkpoint
    from langgraph.checkpoint.sqlite import SqliteSaver

    conn = sqlite3.connect(path, check_same_thread=False)
    saver = SqliteSaver(conn)
    saver.setup()
    config: Any = {"configurable": {"thread_id": "run-1", "checkpoint_ns": ""}}
    saver.put(config, empty_checkpoint(), {"source": "input", "step": 0}, {})
    conn.close()


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """One supervised env worker whose action space holds every runtime case."""
    root = tmp_path_factory.mktemp("hostile")
    library = ActionLibrary(root / "library")
    for name, source, *_ in RUNTIME_CASES:
        library.add_code(name, source, max_steps=30)
    checkpoint = root / "checkpoints.sqlite"
    _make_checkpoint(checkpoint)
    before = {
        "library": _tree(root / "library"),
        "checkpoint": _digest(checkpoint),
        "cwd": sorted(os.listdir(Path.cwd())),
        "children": _children(os.getpid()),
    }
    factory = OptionsEnvFactory(
        adapter="crafter",
        task=CrafterAdapter().task("crafter:score"),
        settings=EnvSettings(episode_length=400),
        library_dir=str(library.root),
        action_names=RUNTIME_NAMES,
        limits=LIMITS,
    )
    vec = SupervisedSubprocVecEnv([factory], limits=LIMITS)
    vec.reset()
    pids = {vec.processes[0].pid}
    yield {"vec": vec, "root": root, "before": before, "pids": pids, "checkpoint": checkpoint}
    vec.close()


def _run_case(hostile: dict[str, Any], name: str) -> dict[str, Any]:
    vec = hostile["vec"]
    vec.step_async(np.array([17 + RUNTIME_NAMES.index(name)]))
    _, _, dones, infos = vec.step_wait()
    hostile["pids"].add(vec.processes[0].pid)
    return {"done": bool(dones[0]), **infos[0]}


@pytest.mark.parametrize(
    ("name", "source", "kind", "line", "extra"), RUNTIME_CASES, ids=RUNTIME_NAMES
)
def test_stopped_at_run_time(
    hostile: dict[str, Any], name: str, source: str, kind: str | None, line: int | None, extra: str
) -> None:
    info = _run_case(hostile, name)
    error = info.get("code_action_error")
    if kind is None:
        assert error is None
        assert info["option_success"] is (extra == "true")
        return
    assert error is not None, info
    assert error["kind"] in kind.split("|"), error
    kind = error["kind"]
    assert error["action"] == name
    if line is not None:
        assert error["line"] == line, error
    assert len(error["message"]) <= LIMITS.max_message_chars
    if kind in ("cpu", "memory", "recursion"):
        # A breach ends the episode as a failure.
        assert info["done"]
    if extra == "replaced":
        assert info["worker_replaced"] is True
        assert "cannot be interrupted" in error["message"] and error["step"] is None
    elif kind in ("cpu", "memory", "recursion", "runtime", "step_budget", "return_type"):
        assert isinstance(error["step"], int)
    if extra == "step1":
        assert error["step"] == 1 and "ZeroDivisionError" in error["message"]
    if extra == "step30":
        assert error["step"] == LIMITS.max_steps and info["env_steps"] == LIMITS.max_steps
    if extra in ("NameError", "memory", "append"):
        assert extra in error["message"]
    if extra == "short":
        assert "more characters" in error["message"] or "got str" in error["message"]


def test_worker_survives_and_host_is_unharmed(hostile: dict[str, Any]) -> None:
    """After every case: the env still steps, nothing was written, no process is left."""
    vec = hostile["vec"]
    for _ in range(3):
        vec.step_async(np.array([0]))
        _, _, _, infos = vec.step_wait()
        assert "code_action_error" not in infos[0]
    assert any(r["kind"] == "cpu" for r in vec.replaced)
    before = hostile["before"]
    root = hostile["root"]
    assert _tree(root / "library") == before["library"]
    assert _digest(hostile["checkpoint"]) == before["checkpoint"]
    assert sorted(os.listdir(Path.cwd())) == before["cwd"]
    assert not Path(MARKER).exists()
    live_worker = vec.processes[0].pid
    for pid in hostile["pids"] - {live_worker}:
        assert not _alive(pid), f"replaced worker {pid} is still running"
    for pid in hostile["pids"]:
        assert not _children(pid), f"worker {pid} has child processes"
    vec.close()
    assert not _alive(live_worker)
    new = _children(os.getpid()) - before["children"]
    # Only multiprocessing's own helpers (forkserver, resource tracker) may remain.
    for pid in new:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
        assert "multiprocessing" in cmdline, cmdline


@pytest.mark.faults
def test_check_worker_killed_by_c_level_loop_reports_line_and_seed() -> None:
    """The coder's check: a stuck C-level call ends its worker; the error names line and seed."""
    source = "def run(api):\n    api.noop()\n    return max(range(10 ** 18)) > 0\n"
    result = check_code_action(
        source, "stuck", None, SCORE, None, [], [4], LIMITS, EnvSettings(episode_length=100)
    )
    assert result["success_rate"] == 0.0
    (error,) = result["errors"]
    assert error["kind"] == "cpu" and error["line"] == 3 and error["seed"] == 4
    assert error["action"] == "stuck"
    assert error["last_call"] == "api.noop()"


@pytest.mark.faults
def test_segfault_in_c_code_names_its_line_and_last_skill_call() -> None:
    """Iterating a million nested zips overflows the C stack: SIGSEGV, no Python exception.

    The worker's fault handler reports the running line, and its black box the last skill
    call, so the coder learns where its code crashed.
    """
    source = (
        "def run(api):\n"
        "    api.noop()\n"
        "    z = []\n"
        "    for i in range(1000000):\n"
        "        z = zip(z)\n"
        "    return len(list(z)) > 0\n"
    )
    limits = replace(LIMITS, cpu_seconds=10.0, wall_seconds=20.0)
    result = check_code_action(
        source, "deep", None, SCORE, None, [], [3], limits, EnvSettings(episode_length=100)
    )
    (error,) = result["errors"]
    assert error["kind"] == "killed" and "SIGSEGV" in error["message"]
    assert error["line"] == 6 and error["action"] == "deep" and error["seed"] == 3
    assert error["last_call"] == "api.noop()" and "api.noop()" in error["message"]


def test_crash_after_the_call_returned_says_so() -> None:
    # What the supervisor builds when the fault handler saw no code-action line, but the
    # black box says the call had returned (e.g. a crash freeing an object it built).
    error = worker_death_error(
        "Fatal Python error: Segmentation fault\n", -11, LIMITS,
        {"state": "returned", "action": "deep", "line": 6, "call": "api.noop()"},
    )  # fmt: skip
    assert error["kind"] == "killed" and error["action"] == "deep" and error["line"] is None
    assert "after the code action had returned" in error["message"]
    assert error["last_call"] == "api.noop()"

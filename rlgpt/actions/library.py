"""The action library on disk: code actions, trained policies and their manifest."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Literal, NotRequired

from pydantic import BaseModel, Field
from typing_extensions import TypedDict

from rlgpt.actions.sandbox import defines_available
from rlgpt.envs.base import Predicate
from rlgpt.files import atomic_copy, atomic_write_text

MANIFEST = "library.json"
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


class LibraryError(ValueError):
    """A bad library operation: unknown action, invalid name, wrong kind, unreadable manifest."""


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
    ) -> tuple[dict[str, LibraryEntry], int]:
        """The manifest and the version a new `kind` entry `name` gets (an older one of the
        same kind is archived; one of the other kind is an error)."""
        self._check_name(name)
        entries = self._load()
        previous = entries.get(name)
        if previous is None:
            return entries, 1
        if previous.kind != kind:
            noun = "code action" if kind == "code" else "policy"
            raise LibraryError(f"{name!r} is a {previous.kind}, not a {noun}")
        self._archive(previous)
        return entries, previous.version + 1

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
        """
        entries, version = self._previous(name, "code")
        entry = LibraryEntry(
            name=name,
            kind="code",
            path=f"code/{name}.py",
            subaction=subaction,
            description=description,
            version=version,
            predicate=predicate,
            max_steps=max_steps,
            has_available=defines_available(source),
            check=check,
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
        """
        src = Path(policy_file)
        if not src.exists():
            raise LibraryError(f"policy file {src} does not exist")
        if name in action_names:
            raise LibraryError(f"policy {name!r} cannot call itself")
        entries, version = self._previous(name, "policy")
        entry = LibraryEntry(
            name=name,
            kind="policy",
            path=f"policies/{name}.zip",
            subaction=subaction,
            description=description,
            version=version,
            predicate=predicate,
            action_names=list(action_names),
            max_steps=max_steps,
            algo=algo,
            observation=observation,
        )
        atomic_copy(src, self.root / entry.path)
        return self._store(entries, entry)

    def get(self, name: str) -> LibraryEntry:
        """The entry of that name; raises LibraryError listing the known names."""
        entries = self._load()
        if name not in entries:
            known = ", ".join(sorted(entries)) or "none"
            raise LibraryError(f"unknown library action {name!r}; known: {known}")
        return entries[name]

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
        return record


class SharedLibrary:
    """Code actions that passed their checks, kept across runs and found by what they do.

    Each entry is named after the predicate it reaches (`inventory_wood_3`,
    `achievement_place_table_1`); a better version of the same predicate archives the old
    one. A run copies an entry into its own library only after checking it again from its
    own plan's start state.
    """

    def __init__(self, root: str | Path) -> None:
        self.library = ActionLibrary(root)

    @staticmethod
    def key(predicate: Predicate) -> str:
        """The entry name for a predicate."""
        return re.sub(r"[^a-z0-9_]", "_", f"{predicate.kind}_{predicate.name}_{predicate.at_least}")

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
        found = self.find(predicate)
        rate = float(check.get("success_rate", 0.0))
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
        )

"""`rlgpt library list|show NAME|rm NAME [--version N]`: the code actions shared across runs.

The shared library is the folder runs publish passed code actions to (`shared_library`
in the run settings, default `<runs-dir>/shared_library`, one subfolder per env). Exit
codes: 0 done, 2 bad input (an unknown action or version, an unreadable library).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from rlgpt.actions.library import MANIFEST, LibraryEntry, LibraryError, SharedLibrary
from rlgpt.graph.context import Context
from rlgpt.logging import get_logger

log = get_logger("library")


def add_library_arguments(parser: argparse.ArgumentParser) -> None:
    """Add `list`, `show NAME` and `rm NAME [--version N]` to the `library` (sub)parser."""
    parser.description = (
        "The code actions that passed their checks in earlier runs, kept for later runs and "
        "found by what they do: list them, show one (source, description, success "
        "condition, check results, versions, reuse counts) or remove one or one version."
    )
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--env", default="crafter", help="The env whose actions to use (default: crafter)."
    )
    common.add_argument(
        "--shared-library",
        type=Path,
        metavar="DIR",
        help="Shared library directory, as the run setting `shared_library` (default: "
        "<runs-dir>/shared_library).",
    )
    common.add_argument(
        "--runs-dir",
        type=Path,
        help=f"Runs directory (default: {Context().runs_dir!r}, as `rlgpt run`).",
    )
    common.add_argument("--json", action="store_true", help="Print JSON on stdout instead of text.")
    sub = parser.add_subparsers(dest="library_command", metavar="{list,show,rm}", required=True)
    sub.add_parser("list", parents=[common], help="List the shared code actions.")
    show = sub.add_parser("show", parents=[common], help="Show one shared code action.")
    show.add_argument("name", help="Action name (as `list` prints it).")
    show.add_argument("--version", type=int, help="Show this stored version's source.")
    rm = sub.add_parser("rm", parents=[common], help="Remove a shared code action.")
    rm.add_argument("name", help="Action name (as `list` prints it).")
    rm.add_argument(
        "--version",
        type=int,
        help="Remove only this version (removing the current one makes the newest older "
        "one current).",
    )


def library_root(args: argparse.Namespace) -> Path:
    """The env's shared library folder the flags name (as runs find it)."""
    settings: dict[str, Any] = {"env": args.env}
    if args.runs_dir is not None:
        settings["runs_dir"] = str(args.runs_dir)
    if args.shared_library is not None:
        settings["shared_library"] = str(args.shared_library)
    return Context(**settings).shared_library_dir()


def run_library_command(args: argparse.Namespace) -> int:
    """`rlgpt library list|show|rm`: 0 done, 2 bad input."""
    root = library_root(args)
    try:
        if args.library_command == "list":
            return _list(root, args.json)
        if not (root / MANIFEST).exists():
            raise LibraryError(f"no shared library at {root}")
        shared = SharedLibrary(root, args.env)
        if args.library_command == "show":
            return _show(shared, args.name, args.version, args.json)
        return _rm(shared, args.name, args.version, args.json)
    except LibraryError as exc:
        Console(stderr=True).print(f"[bold red]error:[/] {escape(str(exc))}", soft_wrap=True)
        return 2


def summary(entry: LibraryEntry) -> dict[str, Any]:
    """One action in a few fields (a row of `list`)."""
    reuse = entry.reuse
    return {
        "name": entry.name,
        "kind": entry.kind,
        "version": entry.version,
        "versions": entry.versions(),
        "predicate": entry.predicate.describe() if entry.predicate else "",
        "description": entry.description,
        "success_rate": (entry.check or {}).get("success_rate"),
        "tried": reuse.tried if reuse else 0,
        "reused": reuse.reused if reuse else 0,
        "mean_reuse_rate": reuse.mean_rate if reuse else None,
    }


def _list(root: Path, as_json: bool) -> int:
    # Listing must not create the folder (SharedLibrary would): a missing one is empty.
    entries = SharedLibrary(root).library.entries() if (root / MANIFEST).exists() else []
    rows = [summary(e) for e in entries]
    log.debug("library_listed", root=str(root), actions=len(rows))
    if as_json:
        _write_json(rows)
        return 0
    console = _stdout()
    if not rows:
        console.print(f"No shared actions in {escape(str(root))}.")
        return 0
    table = Table(title=f"Shared actions in {escape(str(root))}")
    table.add_column("name", no_wrap=True)  # names are what `show` and `rm` take: never cut
    for column in ("kind", "version", "done when", "check", "reused / tried", "description"):
        table.add_column(column)
    for row in rows:
        rate = row["success_rate"]
        table.add_row(
            row["name"],
            row["kind"],
            str(row["version"]),
            row["predicate"],
            "-" if rate is None else f"{rate:.0%}",
            f"{row['reused']} / {row['tried']}",
            escape(row["description"]),
        )
    console.print(table)
    return 0


def details(shared: SharedLibrary, name: str, version: int | None = None) -> dict[str, Any]:
    """Everything `show` prints about an action."""
    entry = shared.library.get(name)
    if entry.kind == "code":
        source = shared.library.source(name, version)
    else:
        # A policy has no source; what it calls does (the code actions in its bundle).
        calls = ", ".join(entry.action_names) or "primitives only"
        policy = shared.library.file(name, version)
        source = f"# SB3 {entry.algo} policy on {entry.observation}: {policy}\n"
        source += f"# its actions beside the primitives: {calls}\n"
        source += "\n".join(f"# --- {n}\n{code}" for n, code in entry.bundle.items())
    return {
        **summary(entry),
        "shown_version": version or entry.version,
        "source": source,
        "subaction": entry.subaction,
        "origin": entry.origin,
        "check": entry.check,
        "history": [h.model_dump(mode="json") for h in entry.history],
        "reuse": entry.reuse.model_dump(mode="json") if entry.reuse else None,
    }


def _show(shared: SharedLibrary, name: str, version: int | None, as_json: bool) -> int:
    info = details(shared, name, version)
    if as_json:
        _write_json(info)
        return 0
    console = _stdout()
    lines = [
        f"[bold]{escape(info['name'])}[/] version {info['version']} "
        f"(stored: {', '.join(str(v) for v in info['versions'])})",
        f"description: {escape(info['description'])}",
        f"done when: {escape(info['predicate'])}",
        f"origin: {escape(info['origin'] or '-')}",
        f"check: {escape(_check_text(info['check']))}",
    ]
    for old in info["history"]:
        lines.append(
            f"version {old['version']}: {escape(_check_text(old['check']))} — "
            f"{escape(old['description'])}"
        )
    reuse = info["reuse"]
    if reuse:
        mean = info["mean_reuse_rate"]
        lines.append(
            f"reuse: checked by {reuse['tried']} later runs, used by {reuse['reused']}"
            + (f", mean check rate {mean:.0%}" if mean is not None else "")
        )
        for record in reuse["recent"]:
            similarity = record["similarity"]
            how = "exact predicate" if similarity is None else f"similarity {similarity:.2f}"
            used = "used" if record["reused"] else "not used"
            lines.append(f"  v{record['version']}: {record['success_rate']:.0%} ({how}), {used}")
    else:
        lines.append("reuse: not reused yet")
    for line in lines:
        console.print(line, soft_wrap=True)
    console.print(f"source (version {info['shown_version']}):")
    console.print(info["source"].rstrip(), markup=False, highlight=False, soft_wrap=True)
    return 0


def _check_text(check: dict[str, Any] | None) -> str:
    if not check or check.get("success_rate") is None:
        return "no check result"
    return f"{check['success_rate']:.0%} of {check.get('episodes', '?')} episodes"


def _rm(shared: SharedLibrary, name: str, version: int | None, as_json: bool) -> int:
    remaining = shared.remove(name, version)
    result = {
        "removed": name,
        "version": version,
        "remaining_versions": remaining.versions() if remaining else [],
    }
    log.info("library_removed", action=name, version=version)
    if as_json:
        _write_json(result)
    elif remaining is None:
        _stdout().print(f"Removed {escape(name)} (all versions).")
    else:
        _stdout().print(
            f"Removed version {version} of {escape(name)}; current version {remaining.version}."
        )
    return 0


def _write_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, indent=2, default=str) + "\n")
    sys.stdout.flush()


def _stdout() -> Console:
    return Console(highlight=False, soft_wrap=True)

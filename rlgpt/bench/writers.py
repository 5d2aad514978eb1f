"""Result files of a suite: the JSON head and its provenance, atomic writes, the figures."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import platform
import subprocess
import sys
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from types import ModuleType
from typing import Any

from rlgpt.files import atomic_write_text

_PACKAGES = (
    "rlgpt",
    "crafter",
    "gymnasium",
    "stable-baselines3",
    "sb3-contrib",
    "torch",
    "numpy",
    "opensimplex",
    "langgraph",
)


def versions() -> dict[str, str]:
    """Installed versions of the packages the results depend on, plus Python."""
    found = {"python": platform.python_version()}
    for name in _PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = "not installed"
    return found


#: Result files are left out of the tree state, so a suite writing them (or a resumed one
#: rewriting them) does not change the provenance it records.
RESULTS_PATHSPEC = ":(exclude)bench/results"
UNTRACKED_LISTED = 50


def _git(*args: str) -> bytes | None:
    try:
        out = subprocess.run(
            ["git", *args],
            capture_output=True,
            timeout=20,
            check=False,
            cwd=Path(__file__).resolve().parent,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout if out.returncode == 0 else None


def git_state() -> dict[str, Any]:
    """The commit, whether the tree differs from it, and fingerprints of the differences.

    `diff_sha256` is the SHA-256 of the output of `diff_command` (run at the repository
    root); untracked files are listed and hashed (path and content) separately, since
    `git diff` does not show them. Files under bench/results are left out.
    """
    commit = _git("rev-parse", "HEAD")
    if commit is None:
        return {"commit": "", "dirty": None, "note": "not a git checkout"}
    root = (_git("rev-parse", "--show-toplevel") or b"").decode().strip()
    diff = _git("-C", root, "diff", "HEAD", "--", ".", RESULTS_PATHSPEC) or b""
    listed = _git("-C", root, "ls-files", "--others", "--exclude-standard", "-z", "--", ".",
                  RESULTS_PATHSPEC) or b""  # fmt: skip
    untracked = sorted(p for p in listed.decode(errors="replace").split("\0") if p)
    state: dict[str, Any] = {
        "commit": commit.decode().strip(),
        "dirty": bool(diff) or bool(untracked),
        "diff_command": f"git diff HEAD -- . '{RESULTS_PATHSPEC}'",
    }
    if diff:
        state["diff_sha256"] = hashlib.sha256(diff).hexdigest()
    if untracked:
        digest = hashlib.sha256()
        for name in untracked:
            digest.update(name.encode() + b"\0")
            with contextlib.suppress(OSError):
                digest.update(hashlib.sha256((Path(root) / name).read_bytes()).digest())
        state["untracked"] = untracked[:UNTRACKED_LISTED]
        state["untracked_count"] = len(untracked)
        state["untracked_sha256"] = digest.hexdigest()
    return state


def load_average() -> list[float] | None:
    """The 1, 5 and 15-minute load averages (None where the platform has none)."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def machine() -> dict[str, Any]:
    """What the numbers were measured on (cores, load, CPU model, memory)."""
    info: dict[str, Any] = {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "python_executable": sys.executable,
    }
    load = load_average()
    if load is not None:
        info["load_average"] = load
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                info["cpu_model"] = line.split(":", 1)[1].strip()
                break
    meminfo = Path("/proc/meminfo")
    if meminfo.exists():
        first = meminfo.read_text().splitlines()[0].split()
        info["memory_gib"] = round(int(first[1]) / 2**20, 1)
    return info


def envelope(suite: str, config: Mapping[str, Any]) -> dict[str, Any]:
    """The common head of every result JSON: what ran, on which code, how and where.

    `git` holds the commit, whether the tree had changes and their fingerprints
    (`git_state`); `command` the exact command line (`sys.argv`).
    """
    git = git_state()
    return {
        "suite": suite,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "git_commit": git["commit"][:7],
        "git": git,
        "command": list(sys.argv),
        "config": dict(config),
        "versions": versions(),
        "machine": machine(),
    }


def provenance_lines(result: Mapping[str, Any]) -> list[str]:
    """Commit, tree state, command line and machine of a result, as markdown list items."""
    git = result.get("git") or {}
    commit = git.get("commit") or result.get("git_commit") or "unknown"
    tree = "clean tree"
    if git.get("dirty"):
        tree = "uncommitted changes"
        if git.get("diff_sha256"):
            tree += f"; `{git.get('diff_command', 'git diff HEAD')}` sha256 {git['diff_sha256']}"
        if git.get("untracked_count"):
            tree += f"; {git['untracked_count']} untracked file(s), sha256 " + str(
                git.get("untracked_sha256", "")
            )
    elif git.get("dirty") is None:
        tree = "tree state unknown"
    lines = [f"- commit `{commit}` ({tree})"]
    command = [str(a) for a in result.get("command") or []]
    if command:
        lines.append(f"- command: `{' '.join([Path(command[0]).name, *command[1:]])}`")
    info = result.get("machine") or {}
    lines.append(
        f"- machine: {info.get('cpu_model', info.get('processor', '?'))}, "
        f"{info.get('cpu_count')} cores, {info.get('memory_gib')} GiB, "
        f"load average {info.get('load_average')}"
    )
    return lines


def write_json(path: Path, data: Mapping[str, Any], compact: bool = False) -> Path:
    """Write JSON atomically (indented, or compact for large per-episode data); returns path."""
    if compact:
        text = json.dumps(data, separators=(",", ":"), default=str)
    else:
        text = json.dumps(data, indent=1, default=str)
    atomic_write_text(path, text + "\n")
    return path


def write_result_files(
    result: Mapping[str, Any],
    out: Path,
    stem: str,
    markdown: Callable[[Mapping[str, Any]], str],
    plot: Callable[[Mapping[str, Any], Path], Path],
) -> dict[str, Path]:
    """Write `<stem>.json`, its markdown and its plot under `out`; returns their paths by kind."""
    paths = {"json": write_json(out / f"{stem}.json", result)}
    md = out / f"{stem}.md"
    atomic_write_text(md, markdown(result))
    paths["markdown"] = md
    paths["png"] = plot(result, out / f"{stem}.png")
    return paths


def provenance_section(result: Mapping[str, Any]) -> list[str]:
    """The markdown section that closes a result file: its provenance lines under a heading."""
    return ["", "## Provenance", "", *provenance_lines(result)]


def decimals(value: float, digits: int = 1) -> str:
    """`value` with `digits` decimals."""
    return f"{value:.{digits}f}"


# ------------------------------------------------------------------ figures
def pyplot() -> ModuleType:
    """matplotlib.pyplot on the Agg backend: suites draw to files, often with no display."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig: Any, path: Path) -> Path:
    """Lay out, save (90 dpi) and close a figure; returns `path`."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


#: The learning report's names, which callers also import from this module.

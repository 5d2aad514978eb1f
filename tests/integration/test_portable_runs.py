"""A run folder copied elsewhere renders the same report: its files name paths relative to it.

One real run (the grid world of tests/plugins through `rlgpt run`, scripted models): code
actions checked in the sandbox, an SB3 job, the critic's held-out rollouts with a GIF, the
report. The folder is copied away, the original removed, and `rlgpt report` runs on the copy.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from rlgpt.cli import main
from rlgpt.nodes.rl_trainer import orphaned_record
from tests.fakes import scripted_backend
from tests.helpers import GRIDWORLD_PLAN, SCRIPTED_SETTINGS, code, fetch_code

pytestmark = pytest.mark.integration

TASK = "gridworld:collect_gem"
GET_KEY = fetch_code("key")
PLAN = GRIDWORLD_PLAN
# Envs in the training process (no earlier step runs first): the cheapest real SB3 job.
SETUP = {"code_actions": [], "shaping": [], "episode_length": 30, "start_after_previous": False}
SETTINGS: dict[str, Any] = {
    **SCRIPTED_SETTINGS,
    "env": "gridworld",
    "critic": "rules",
    "max_inner_loops": 0,
    "max_outer_loops": 0,
    "llm_max_retries": 0,
    "code_check_episodes": 2,
    "code_action_max_steps": 60,
    "subaction_max_steps": 60,
    "eval_episodes": 4,
    "rl_timesteps": 512,
    "rl_n_steps": 128,
    "gif": True,
    # Kept outside the run folder, and shared by runs: its path stays as it is.
    "reuse_library": True,
}


@dataclass(frozen=True)
class FinishedRun:
    """A finished run whose folder was copied away, the original removed."""

    original: Path
    copy: Path
    report: bytes
    shared_library: Path


def _text_files(folder: Path) -> Iterator[tuple[Path, str]]:
    """Every file under `folder` that reads as UTF-8 text, with its text."""
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            try:
                yield path, path.read_bytes().decode("utf-8")
            except UnicodeDecodeError:
                continue


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> FinishedRun:
    """Run the graph through `rlgpt run`, copy its folder elsewhere and remove the original."""
    root = tmp_path_factory.mktemp("portable")
    shared = root / "shared"
    config = root / "run.toml"
    settings = {**SETTINGS, "runs_dir": str(root / "runs"), "shared_library": str(shared)}
    config.write_text("[run]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in settings.items()))
    with scripted_backend("scripted") as model:
        model.answers = [
            json.dumps(PLAN),  # planner
            code(GET_KEY),  # coder: the code steps first
            code(GET_KEY.replace('"key"', '"gem"')),
            json.dumps(SETUP),  # coder: the RL set-up of open_door
        ]
        # Its exit code says how well the run did; here it only has to finish with a report.
        main(["run", "--config", str(config), "--task", TASK])
        assert model.remaining == 0
    (original,) = [d for d in (root / "runs").iterdir() if (d / "report.md").exists()]
    copy = root / "elsewhere" / "moved-run"
    shutil.copytree(original, copy)
    report = (original / "report.md").read_bytes()
    shutil.rmtree(original)
    return FinishedRun(original=original, copy=copy, report=report, shared_library=shared)


def _paths_in_metrics(state: dict[str, Any]) -> list[str]:
    """The file paths a saved state names (policies, curves, code, GIFs, TensorBoard logs)."""
    paths = [r["path"] for r in state["library"].values()]
    for job in state["rl_runs"]:
        paths += [job["policy_path"], job["curve_path"], job["tensorboard_dir"]]
    paths += [ev["gif_path"] for ev in state["evaluations"] if ev.get("gif_path")]
    return [p for p in paths if p]


def test_a_copied_run_folder_renders_the_same_report(finished: FinishedRun) -> None:
    copy = finished.copy
    assert main(["report", str(copy)]) == 0

    assert (copy / "report.md").read_bytes() == finished.report
    report = finished.report.decode()
    for png in ("training_curves.png", "success_rates.png", "achievements.png"):
        assert f"]({png})" in report
        assert (copy / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", png
    assert "def run(api):" in report  # the code actions' sources, read from the copy

    metrics = json.loads((copy / "metrics.json").read_text())
    state = metrics["state"]
    assert state["run_dir"] == "."
    assert metrics["plots"] == {
        "training": "training_curves.png",
        "success": "success_rates.png",
        "achievements": "achievements.png",
    }
    named = _paths_in_metrics(state)
    assert len(named) >= 6, named  # two code actions, a policy, a job's files, a GIF
    for path in named:
        assert not Path(path).is_absolute(), path
        assert (copy / path).exists(), path
    # The RL job's own record beside its policy names its files the same way.
    (record_file,) = copy.glob("rl/*/record.json")
    record = json.loads(record_file.read_text())
    assert record["policy_path"] == state["rl_runs"][0]["policy_path"]
    assert (copy / record["curve_path"]).exists()
    # A step that adopts the record (a resumed run) gets the files where they are now.
    adopted = orphaned_record(record_file.parent, copy)
    assert adopted is not None
    assert Path(adopted["policy_path"]) == (copy / record["policy_path"]).resolve()
    assert Path(adopted["curve_path"]).is_file()
    # A path outside the run folder stays as it is.
    assert metrics["context"]["shared_library"] == str(finished.shared_library)

    spellings = {str(finished.original), str(finished.original.resolve())}
    for file, text in _text_files(copy):
        for spelling in spellings:
            assert spelling not in text, f"{file.relative_to(copy)} names {spelling}"


def test_an_older_metrics_file_with_absolute_paths_still_renders(finished: FinishedRun) -> None:
    """A metrics.json of an older version named files by absolute paths into where the run
    was written: the copy still renders the same report from it, and is rewritten portable."""
    copy = finished.copy
    metrics_file = copy / "metrics.json"
    portable = metrics_file.read_text()
    metrics = json.loads(portable)
    state, old = metrics["state"], finished.original

    def absolute(path: str) -> str:
        return str(old / path) if path else path

    state["run_dir"] = str(old)
    for record in state["library"].values():
        record["path"] = absolute(record["path"])
    for job in state["rl_runs"]:
        for key in ("policy_path", "curve_path", "tensorboard_dir"):
            job[key] = absolute(job[key])
    for ev in state["evaluations"]:
        if ev.get("gif_path"):
            ev["gif_path"] = absolute(ev["gif_path"])
    metrics["plots"] = {k: absolute(v) for k, v in metrics["plots"].items()}
    metrics_file.write_text(json.dumps(metrics, indent=2))
    for png in copy.glob("*.png"):
        png.unlink()

    assert main(["report", str(copy)]) == 0

    assert (copy / "report.md").read_bytes() == finished.report
    assert metrics_file.read_text() == portable
    assert all((copy / png).exists() for png in json.loads(portable)["plots"].values())

"""The committed Dockerfile is what `langgraph dockerfile` makes of langgraph.json today."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
REGENERATE = "langgraph dockerfile -c langgraph.json Dockerfile"


def _normalise(text: str) -> str:
    # The CLI names the build directory after the checkout's folder; any folder name is fine.
    return re.sub(r"/deps/[A-Za-z0-9_.-]+", "/deps/<project>", text).strip()


def _generate(target: Path) -> str:
    cli = Path(sys.executable).with_name("langgraph")
    if not cli.exists():
        pytest.fail("langgraph-cli is needed: `make setup` installs it with the `serve` extra")
    env = {
        **os.environ,
        "LANGGRAPH_CLI_NO_ANALYTICS": "1",
        "LANGGRAPH_NO_VERSION_CHECK": "true",
        "LANGSMITH_TRACING": "false",
    }
    proc = subprocess.run(
        [str(cli), "dockerfile", "-c", str(ROOT / "langgraph.json"), str(target)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"langgraph dockerfile failed: {proc.stdout}\n{proc.stderr}")
    return target.read_text()


def test_committed_dockerfile_matches_langgraph_json(tmp_path: Path) -> None:
    committed = ROOT / "Dockerfile"
    assert committed.exists(), f"no Dockerfile committed; create it with `{REGENERATE}`"
    generated = _generate(tmp_path / "Dockerfile")
    assert _normalise(committed.read_text()) == _normalise(generated), (
        f"Dockerfile is out of date with langgraph.json; regenerate it with `{REGENERATE}`"
    )


def test_dockerfile_serves_the_configured_graphs_and_checkpointer() -> None:
    config = json.loads((ROOT / "langgraph.json").read_text())
    text = (ROOT / "Dockerfile").read_text()
    graphs = re.search(r"ENV LANGSERVE_GRAPHS='(.*)'", text)
    assert graphs is not None, "the Dockerfile declares no graphs"
    served = json.loads(graphs.group(1))
    assert set(served) == set(config["graphs"])
    for name, spec in config["graphs"].items():
        assert served[name].endswith(spec.lstrip(".").lstrip("/").split("/", 1)[-1])
    checkpointer = re.search(r"ENV LANGGRAPH_CHECKPOINTER='(.*)'", text)
    if "checkpointer" in config:
        assert checkpointer is not None, "langgraph.json names a checkpointer the image lacks"
        path = json.loads(checkpointer.group(1))["path"]
        assert path.endswith(config["checkpointer"]["path"].split("/", 1)[-1])
    else:
        assert checkpointer is None

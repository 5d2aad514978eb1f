"""Preflight: a run whose plugins cannot work stops before it starts, with one line per
problem naming the setting and the fix, exit code 2 and no run folder."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from rlgpt.cli import main
from rlgpt.exit_codes import ExitCode
from rlgpt.graph import preflight
from rlgpt.graph.context import Context
from rlgpt.llm.local_server import free_port
from tests.faults import FaultyEndpoint

pytestmark = [pytest.mark.integration, pytest.mark.faults]

TASK = "crafter:collect_wood"
FIX = "local:qwen2.5-coder-1.5b"


@pytest.fixture()
def endpoint() -> Iterator[FaultyEndpoint]:
    """An endpoint that answers what each test sets in `mode` (nothing is forwarded)."""
    proxy = FaultyEndpoint("http://127.0.0.1:9", mode="status:503")
    try:
        yield proxy
    finally:
        proxy.stop()


def _run(tmp_path: Path, capsys: pytest.CaptureFixture[str], *flags: str) -> tuple[int, str]:
    """`rlgpt run` in this process; (exit code, what it printed). No run folder may appear."""
    runs = tmp_path / "runs"
    code = main(["run", "--task", TASK, "--runs-dir", str(runs), *flags])
    printed = " ".join(capsys.readouterr().err.split())  # unwrapped
    assert not runs.exists(), list(runs.iterdir())
    return code, printed


def test_missing_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    code, printed = _run(tmp_path, capsys, "--planner-model", "openai:gpt-4.1")
    assert code == ExitCode.BAD_CONFIG
    assert (
        "preflight: planner_model = openai:gpt-4.1: OPENAI_API_KEY is not set: export it; "
        f"or pass --planner-model {FIX}"
    ) in printed


def test_unreachable_endpoint(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"http://127.0.0.1:{free_port()}/v1"
    code, printed = _run(tmp_path, capsys, "--coder-model", f"{url}#some-model")
    assert code == ExitCode.BAD_CONFIG
    assert f"preflight: coder_model = {url}#some-model: cannot connect to {url}" in printed
    assert f"start it or fix the URL; or pass --coder-model {FIX}" in printed


def test_endpoint_that_hangs_past_the_timeout(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], endpoint: FaultyEndpoint
) -> None:
    endpoint.mode = "hang"
    model = f"{endpoint.url}#m"
    code, printed = _run(tmp_path, capsys, "--critic-model", model, "--llm-timeout", "1")
    assert code == ExitCode.BAD_CONFIG
    assert f"critic_model = {model}: {endpoint.url} did not answer a models-list request " in (
        printed
    )
    assert "within 1 s" in printed


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        ("status:401", "rejected the key in RLGPT_API_KEY (HTTP 401): check it"),
        ("status:503", "answered HTTP 503 to a models-list request: retry later"),
    ],
)
def test_endpoint_that_refuses_the_request(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    endpoint: FaultyEndpoint,
    mode: str,
    expected: str,
) -> None:
    endpoint.mode = mode
    code, printed = _run(tmp_path, capsys, "--coder-model", f"{endpoint.url}#m")
    assert code == ExitCode.BAD_CONFIG
    assert f"coder_model = {endpoint.url}#m: {endpoint.url} {expected}" in printed


def test_openai_key_rejected_by_its_base_url(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    endpoint: FaultyEndpoint,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    endpoint.mode = "status:401"
    monkeypatch.setenv("OPENAI_API_KEY", "sk-wrong")
    monkeypatch.setenv("OPENAI_BASE_URL", endpoint.url)
    code, printed = _run(tmp_path, capsys, "--planner-model", "openai:gpt-4.1")
    assert code == ExitCode.BAD_CONFIG
    assert f"{endpoint.url} rejected the key in OPENAI_API_KEY (HTTP 401)" in printed


def test_missing_model_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    absent = tmp_path / "absent.gguf"
    code, printed = _run(tmp_path, capsys, "--critic-model", f"local:{absent}")
    assert code == ExitCode.BAD_CONFIG
    assert f"critic_model = local:{absent}: local model file not found: {absent}" in printed


def test_every_problem_is_named_at_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    flags = ["--planner-model", "openai:gpt-4.1", "--coder-model", "local:no-such-model"]
    code, printed = _run(tmp_path, capsys, *flags, "--critic", "no-such-critic")
    assert code == ExitCode.BAD_CONFIG
    for setting in ("critic = no-such-critic", "planner_model = openai:gpt-4.1"):
        assert f"preflight: {setting}: " in printed
    assert "coder_model = local:no-such-model: unknown local model 'no-such-model'" in printed


def test_the_default_run_passes_preflight() -> None:
    # The embedded defaults need nothing but the install: the check finds no problem.
    assert preflight.problems(Context()) == []

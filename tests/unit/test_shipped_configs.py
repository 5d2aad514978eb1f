"""The context files shipped in `configs/` are valid: every field is a Context field."""

from __future__ import annotations

from pathlib import Path

import pytest

from rlgpt.bench.tasks import read_context_file
from rlgpt.graph.context import Context

CONFIGS = sorted((Path(__file__).parents[2] / "configs").iterdir())


def test_configs_are_shipped() -> None:
    assert {p.name for p in CONFIGS} >= {"bench_learning_cd.json", "bench_learning_d_pixels.json"}


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_every_shipped_config_builds_a_context(path: Path) -> None:
    fields = read_context_file(path)
    assert fields
    context = Context(**fields)
    for name, value in fields.items():
        assert getattr(context, name) == value, name

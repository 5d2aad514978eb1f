"""Benchmark suites: throughput of the pipeline and learning on Crafter beside published anchors."""

from __future__ import annotations

from typing import Any

from rlgpt.bench.cli import add_bench_arguments, run_bench

__all__ = [
    "achievement_rates",
    "add_bench_arguments",
    "crafter_score",
    "mean_and_spread",
    "run_bench",
]


def __getattr__(name: str) -> Any:
    # The score helpers import crafter; keep `rlgpt --help` from paying for it.
    if name in ("achievement_rates", "crafter_score", "mean_and_spread"):
        from rlgpt.bench import score

        return getattr(score, name)
    raise AttributeError(f"module 'rlgpt.bench' has no attribute {name!r}")

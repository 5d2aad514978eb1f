"""Scaling suite: the same learning runs one after another (`local`) and at once on Ray."""

from __future__ import annotations

import shutil
import statistics
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from rlgpt.bench import writers
from rlgpt.bench.config_fields import described
from rlgpt.bench.learning import run_learning
from rlgpt.bench.learning_config import LearningConfig
from rlgpt.bench.writers import decimals, pyplot, save_figure
from rlgpt.execution import make_executor
from rlgpt.logging import get_logger

log = get_logger("rlgpt.bench.scaling")


@dataclass
class ScalingConfig:
    """What the scaling suite times: `jobs` PPO runs per executor, `rounds` times."""

    jobs: int = described(4, "Learning runs per round: PPO on primitives, seeds 0..jobs-1.")
    budget: int = described(50_000, "Env steps per run.")
    observation: Literal["pixels", "symbolic"] = described(
        "symbolic", "The runs' observation (symbolic: MLP; pixels: CNN)."
    )
    episode_length: int = described(500, "Env steps per episode.")
    n_envs: int = described(8, "Envs per run, batched in the run's process.")
    rounds: int = described(3, "Local-then-Ray pairs; the speed-up is given per round.")
    ray_address: str = described("", "Ray cluster to use; empty = a local one on loopback.")

    def validate(self) -> None:
        """Raise ValueError on a config no round can follow."""
        if self.jobs < 1 or self.rounds < 1 or self.budget < 1:
            raise ValueError("jobs, rounds and budget must be at least 1")


def learning_config(config: ScalingConfig, executor: Literal["local", "ray"]) -> LearningConfig:
    """The learning-suite config of one timed round on `executor`."""
    return LearningConfig(
        budget=config.budget,
        budget_name=f"{config.budget // 1000}k",
        observation=config.observation,
        seeds=list(range(config.jobs)),
        methods=["a"],
        episode_length=config.episode_length,
        n_envs=config.n_envs,
        n_steps=128,
        checkpoint_every=config.budget,
        executor=executor,
    )


def run_scaling(
    config: ScalingConfig,
    runs_root: Path,
    on_round: Callable[[dict[str, Any]], object] | None = None,
) -> dict[str, Any]:
    """Time the runs on `local` and on Ray, round after round, each in fresh run folders.

    Ray's start (a local cluster, or joining one) is timed once, apart from the rounds.
    """
    config.validate()
    started = time.monotonic()
    from rlgpt.execution.ray_cluster import connect

    ray = connect(config.ray_address)
    ray_start = time.monotonic() - started
    cluster = {
        "cpus": ray.cluster_resources().get("CPU", 0),
        "nodes": len([n for n in ray.nodes() if n["Alive"]]),
        "address": "local (loopback)" if not config.ray_address else "given",
    }
    rounds: list[dict[str, Any]] = []

    def result() -> dict[str, Any]:
        return {"ray_start_seconds": round(ray_start, 2), "cluster": cluster,
                "rounds": rounds, **speedup(rounds)}  # fmt: skip

    for index in range(config.rounds):
        for name in ("local", "ray"):
            runs_dir = runs_root / f"round{index}_{name}"
            # A timing is never resumed: every round trains from nothing.
            shutil.rmtree(runs_dir, ignore_errors=True)
            executor = make_executor(name, config.ray_address)
            began = time.monotonic()
            measured = run_learning(learning_config(config, name), runs_dir, executor=executor)
            wall = time.monotonic() - began
            runs = measured["methods"][0]["runs"]
            steps = sum(int(r["env_steps"]) for r in runs)
            rounds.append(
                {
                    "round": index,
                    "executor": name,
                    "wall_time": round(wall, 2),
                    "runs_wall_time": round(sum(float(r["wall_time"]) for r in runs), 2),
                    "env_steps": steps,
                    "steps_per_second": round(steps / wall, 1),
                    "nodes": sorted({r["executor"]["node"][:8] for r in runs}),
                }
            )
            log.info("bench_scaling_round", round=index, executor=name, wall_time=round(wall, 1))
        if on_round is not None:
            on_round(result())
    return result()


def speedup(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """Local wall time over Ray wall time, per round, with their median and range."""
    walls: dict[int, dict[str, float]] = {}
    for row in rounds:
        walls.setdefault(row["round"], {})[row["executor"]] = row["wall_time"]
    ratios = [w["local"] / w["ray"] for w in walls.values() if {"local", "ray"} <= set(w)]
    if not ratios:
        return {"speedups": []}
    return {
        "speedups": [round(r, 3) for r in ratios],
        "speedup_median": round(statistics.median(ratios), 3),
        "speedup_min": round(min(ratios), 3),
        "speedup_max": round(max(ratios), 3),
    }


# ------------------------------------------------------------------ report
def scaling_markdown(result: Mapping[str, Any]) -> str:
    """The suite's table: wall times per round and executor, and the speed-up."""
    config = result["config"]
    cluster = result["cluster"]
    lines = [
        "# Scaling: learning runs one after another vs. at once on Ray",
        "",
        f"Each round runs the same {config['jobs']} learning runs (PPO on primitives, "
        f"{config['observation']} observation, {config['budget']:,} env steps each, "
        f"{config['n_envs']} envs batched in the run's process, run seeds "
        f"0-{config['jobs'] - 1}) twice, from nothing: `local` one after another in this "
        f"process, then `ray` as Ray tasks of one CPU each on a cluster of {cluster['nodes']} "
        f"node(s) and {cluster['cpus']:g} CPUs ({cluster['address']}). Wall time is the whole "
        "suite call: set-up, training, saving and the result summaries. Ray's start "
        f"({result['ray_start_seconds']:.1f} s) is timed once, outside the rounds. Speed-up = "
        "local wall time / Ray wall time of the same round.",
        "",
        "| round | executor | wall time (s) | sum of run times (s) | env steps/s | nodes |",
        "| ---: | --- | ---: | ---: | ---: | --- |",
    ]
    for row in result["rounds"]:
        lines.append(
            f"| {row['round']} | {row['executor']} | {decimals(row['wall_time'])} | "
            f"{decimals(row['runs_wall_time'])} | {decimals(row['steps_per_second'])} | "
            f"{', '.join(row['nodes'])} |"
        )
    if result.get("speedups"):
        lines += [
            "",
            f"Speed-up over {len(result['speedups'])} round(s): median "
            f"**{decimals(result['speedup_median'], 2)}x**, range "
            f"{decimals(result['speedup_min'], 2)}-{decimals(result['speedup_max'], 2)} "
            f"(per round: {', '.join(decimals(s, 2) for s in result['speedups'])}).",
        ]
    lines += writers.provenance_section(result)
    lines.append("")
    return "\n".join(lines)


def scaling_plot(result: Mapping[str, Any], path: Path) -> Path:
    """Wall time per round, local beside Ray."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.5))
    rounds = sorted({r["round"] for r in result["rounds"]})
    for offset, name in ((-0.2, "local"), (0.2, "ray")):
        walls = {r["round"]: r["wall_time"] for r in result["rounds"] if r["executor"] == name}
        ax.bar([i + offset for i in rounds], [walls.get(i, 0.0) for i in rounds], 0.4, label=name)
    ax.set_xticks(rounds)
    ax.set_xlabel("round")
    ax.set_ylabel("wall time (s)")
    ax.set_title(f"{result['config']['jobs']} learning runs: local vs Ray")
    ax.legend()
    return save_figure(fig, path)


def write_scaling(config: ScalingConfig, measured: Mapping[str, Any], out: Path, tag: str) -> dict:
    """Write `scaling_<tag>.json`, its markdown and its plot; returns their paths."""
    result = {**writers.envelope("scaling", asdict(config)), **measured}
    return writers.write_result_files(result, out, f"scaling_{tag}", scaling_markdown, scaling_plot)

"""`rlgpt bench`: run named suites and write JSON, PNG and markdown under bench/results/."""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

from rlgpt.bench.baseline_library import ORIGIN, SCRIPTED_BASELINE, write_scripted_baseline
from rlgpt.bench.learning import RunsFailed
from rlgpt.execution.ray_cluster import RayUnavailable
from rlgpt.logging import get_logger

DEFAULT_TASKS_MODEL = "local:qwen2.5-coder-1.5b"

log = get_logger("rlgpt.bench")

#: Suites a bare `rlgpt bench` runs; the others run only when named.
SUITES = ("throughput", "learning")
ALL_SUITES = (*SUITES, "model", "tasks", "scaling", "peer")
# Env-step budgets of the learning suite; `--budget` overrides.
BUDGETS = {"quick": 1_500, "full": 1_000_000}
QUICK_EPISODE_LENGTH = 500
QUICK_THROUGHPUT = {
    "env_steps": 300,
    "code_steps": 100,
    "resets": 2,
    "ppo_steps": 512,
    "ppo_n_envs": (1, 8),
    "python_n_envs": (),
    "code_ppo_observations": ("symbolic",),
    "probe_steps": 200,
}


def add_bench_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the `rlgpt bench` options to a (sub)parser."""
    parser.add_argument(
        "suites",
        nargs="*",
        choices=[*ALL_SUITES, []],
        default=[],
        metavar="SUITE",
        help=f"Suites to run: {', '.join(ALL_SUITES)} (default: {' and '.join(SUITES)}).",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"Smoke budgets: learning {BUDGETS['quick']:,} env steps, "
        f"episodes of {QUICK_EPISODE_LENGTH}, small throughput runs.",
    )
    parser.add_argument(
        "--budget", type=int, help="Env-step budget per learning run (default 1,000,000)."
    )
    parser.add_argument(
        "--seeds",
        help="Comma-separated seeds: training seeds of the learning suite (default 0), run "
        "seeds of the tasks suite (default 0,1,2).",
    )
    parser.add_argument(
        "--methods",
        help="Learning methods: a = PPO primitives, b = PPO + code actions, c = the model's "
        "code-only agent (no RL), d = full planner/coder/RL/critic loop, r = a library's code "
        "actions round-robin (default: a,b,r with --library, else a).",
    )
    parser.add_argument(
        "--library",
        help="Action-library directory for methods b and r, or `scripted-baseline` for the "
        "hand-written library of rlgpt/bench/baseline_library.py (reported as such).",
    )
    parser.add_argument(
        "--code-actions", default="", help="Comma-separated library code actions (default: all)."
    )
    parser.add_argument(
        "--episode-length", type=int, help="Env steps per episode (default 10,000; quick 500)."
    )
    parser.add_argument(
        "--n-envs",
        type=int,
        default=8,
        help="Envs per PPO run: batched in-process for a, worker processes for b (default 8).",
    )
    parser.add_argument(
        "--n-steps",
        type=int,
        help="learning: PPO rollout length per env (default 256; quick 128). With more envs, "
        "fewer steps keep the rollout (n_envs x n_steps) and the number of updates.",
    )
    parser.add_argument(
        "--observation",
        choices=["pixels", "symbolic"],
        help="learning: the observation of methods a and b: 'pixels' (crafter's 64x64 RGB "
        "image, CNN; the published protocol, default) or 'symbolic' (one-hot view, MLP; a "
        "second protocol); c and d take theirs from --graph-context's 'observation' (default "
        "'symbolic'). scaling: default 'symbolic'.",
    )
    parser.add_argument(
        "--privileged",
        action="store_true",
        help="Let code actions read the full map (marked in every table; default off).",
    )
    parser.add_argument(
        "--graph-task", default="crafter:score", help="Task of the graph runs (methods c and d)."
    )
    parser.add_argument(
        "--graph-context",
        type=Path,
        help="JSON file of extra Context fields for methods c and d (models, loop budgets, ...).",
    )
    parser.add_argument(
        "--ppo-steps",
        type=int,
        help="Env steps of each PPO throughput run (default 20,000); peer: env steps timed per "
        "measurement (default 131,072).",
    )
    parser.add_argument(
        "--compare-with",
        "--compare",
        type=Path,
        help="Earlier result of the same suite: throughput writes a before/after table next "
        "to the new one; tasks shows its success per task as `before`.",
    )
    peer = parser.add_argument_group("peer suite")
    peer.add_argument(
        "--peer-envs", help="Comma-separated env counts of the peer's PPO (default 8,64,256)."
    )
    peer.add_argument(
        "--peer-resets",
        help="Comma-separated reset modes of the peer: optimistic, fresh (default both).",
    )
    peer.add_argument(
        "--rlgpt-envs",
        help="Comma-separated env counts of rlgpt's runs on the compiled Crafter step "
        "(default 8,64,256).",
    )
    peer.add_argument(
        "--python-envs",
        help="Comma-separated env counts of rlgpt's runs on Python Crafter envs (default 8; "
        "an empty value measures none).",
    )
    peer.add_argument(
        "--rlgpt-rollout",
        type=int,
        help="Env steps per PPO update of rlgpt's runs (envs x steps per env), e.g. 2048 for "
        "8 x 256 and 64 x 32; default: 256 steps per env, as the peer.",
    )
    model = parser.add_argument_group("model and tasks suites")
    model.add_argument(
        "--model",
        help="model: embedded model to time (default qwen2.5-coder-1.5b); tasks: model of the "
        f"planner, coder and critic (default {DEFAULT_TASKS_MODEL}).",
    )
    model.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="model: rounds per cache setting; scaling: local-then-Ray pairs; peer: rounds of "
        "every configuration (default 3).",
    )
    model.add_argument(
        "--repeats",
        type=int,
        default=2,
        help="model: repeated calls per role and round after the cold one (1-3; default 2).",
    )
    model.add_argument(
        "--max-tokens", type=int, default=768, help="model: answer budget per call (default 768)."
    )
    model.add_argument(
        "--cache-slots",
        type=int,
        help="model: prefix-cache slots when the cache is on (default: the server's default).",
    )
    model.add_argument(
        "--tasks",
        help="tasks: comma-separated task ids (default: collect_wood, place_table, "
        "make_wood_pickaxe, collect_stone, make_stone_pickaxe, place_furnace).",
    )
    model.add_argument(
        "--context",
        type=Path,
        help="tasks: JSON or TOML file of extra Context fields (budgets, loops, models, ...).",
    )
    parser.add_argument(
        "--runs-dir",
        type=Path,
        help="learning and tasks: where the runs are kept (default runs/bench_<suite>_<tag>); "
        "the same command on the same directory continues an interrupted suite.",
    )
    model.add_argument(
        "--resume",
        action="store_true",
        help="tasks: keep the finished runs of an existing tasks_<tag>.json and run the rest.",
    )
    parser.add_argument(
        "--jobs", type=int, help="scaling: learning runs per round and executor (default 4)."
    )
    parser.add_argument(
        "--executor",
        choices=["local", "ray"],
        default="local",
        help="learning and tasks: where the runs go: 'local' one after another here "
        "(default), 'ray' all at once as Ray tasks (needs the `ray` extra).",
    )
    parser.add_argument(
        "--ray-address",
        default="",
        help="With --executor ray: the cluster to join (host:port); default a local cluster "
        "on loopback.",
    )
    parser.add_argument(
        "--render",
        type=Path,
        nargs="+",
        metavar="JSON",
        help="Rewrite the markdown of result files from their JSON instead of running.",
    )
    parser.add_argument(
        "--merge",
        type=Path,
        nargs="+",
        metavar="JSON",
        help="Learning JSON files of one budget (e.g. methods run in parallel): write one "
        "table of them all instead of running.",
    )
    parser.add_argument(
        "--out", type=Path, default=Path("bench/results"), help="Results directory."
    )
    parser.add_argument(
        "--tag", default="", help="Suffix of the result file names (default: the budget name)."
    )


def _ints(text: str) -> list[int]:
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError as exc:
        raise ValueError(f"expected comma-separated integers, got {text!r}") from exc


def _names(text: str) -> list[str]:
    return [x.strip() for x in text.split(",") if x.strip()]


def run_throughput_suite(args: argparse.Namespace) -> dict[str, Path]:
    """Run the throughput suite and write its files; returns their paths by kind."""
    from rlgpt.bench.throughput import ThroughputConfig, run_throughput
    from rlgpt.bench.throughput_report import write_throughput

    sizes: dict[str, Any] = dict(QUICK_THROUGHPUT) if args.quick else {}
    if args.ppo_steps:
        sizes["ppo_steps"] = args.ppo_steps
    config = ThroughputConfig(**sizes)
    tag = args.tag or ("quick" if args.quick else "full")
    with tempfile.TemporaryDirectory(prefix="rlgpt-bench-") as scratch:
        measured = run_throughput(config, Path(scratch))
    return write_throughput(measured, args.out, tag, args.compare_with)


def _library_dir(value: str | None) -> str | None:
    """The `--library` directory, resolved; the scripted baseline is written later."""
    if not value or value == SCRIPTED_BASELINE:
        return value
    return str(Path(value).resolve())


def run_learning_suite(args: argparse.Namespace) -> dict[str, Path]:
    """Run the learning suite and write its files; returns their paths by kind."""
    from rlgpt.bench.learning import run_learning
    from rlgpt.bench.learning_config import LearningConfig
    from rlgpt.bench.learning_report import write_learning

    budget_name = "quick" if args.quick else "full"
    budget = args.budget or BUDGETS[budget_name]
    if args.budget and args.budget != BUDGETS[budget_name]:
        budget_name = f"{args.budget // 1000}k" if args.budget >= 1000 else str(args.budget)
    episode_length = args.episode_length or (QUICK_EPISODE_LENGTH if args.quick else 10_000)
    graph_context: dict[str, Any] = {}
    if args.graph_context:
        graph_context = dict(json.loads(args.graph_context.read_text()))
    config = LearningConfig(
        budget=budget,
        budget_name=budget_name,
        observation=args.observation or "pixels",
        seeds=_ints(args.seeds or "0"),
        methods=_names(args.methods or ("a,b,r" if args.library else "a")),
        episode_length=episode_length,
        library=_library_dir(args.library),
        code_actions=_names(args.code_actions),
        n_envs=args.n_envs,
        n_steps=args.n_steps or (128 if args.quick else 256),
        checkpoint_every=max(budget // 20, 1_000),
        privileged=bool(args.privileged),
        graph_task=args.graph_task,
        graph_context=graph_context,
        executor=args.executor,
    )
    tag = args.tag or budget_name
    runs_dir = args.runs_dir or Path("runs") / f"bench_learning_{tag}"
    if args.library == SCRIPTED_BASELINE:
        # Written into the runs directory, so a resumed suite finds the same library.
        config.library = str(write_scripted_baseline(runs_dir / SCRIPTED_BASELINE))
        config.library_origin = ORIGIN
    started = time.monotonic()

    def write(measured: dict[str, Any]) -> dict[str, Path]:
        measured["wall_time"] = round(time.monotonic() - started, 1)
        measured["runs_wall_time"] = round(
            sum(float(r["wall_time"]) for m in measured["methods"] for r in m["runs"]), 1
        )
        if args.library == SCRIPTED_BASELINE:
            measured["config"]["library"] = SCRIPTED_BASELINE
        return write_learning(measured, args.out, tag)

    from rlgpt.bench.progress import job_bars, suite_progress
    from rlgpt.execution import make_executor

    executor = make_executor(args.executor, args.ray_address)
    with suite_progress() as progress:
        measured = run_learning(
            config, runs_dir, on_run=write, executor=executor, on_progress=job_bars(progress)
        )
    return write(measured)


def merge_learning_files(args: argparse.Namespace) -> dict[str, Path]:
    """`--merge`: one learning table from several result files of the same budget."""
    from rlgpt.bench.learning import merge_learning
    from rlgpt.bench.learning_report import write_learning

    results = [json.loads(Path(p).read_text()) for p in args.merge]
    merged = merge_learning(results)
    return write_learning(merged, args.out, args.tag or f"{merged['config']['budget_name']}")


def run_model_suite(args: argparse.Namespace) -> dict[str, Path]:
    """Time the embedded model on each role's prompts with the prefix cache off and on."""
    from rlgpt.bench import writers
    from rlgpt.bench.model_speed import ModelSpeedConfig, run_model_speed
    from rlgpt.bench.model_speed_report import write_model_speed

    model = (args.model or ModelSpeedConfig.model).removeprefix("local:")
    if ":" in model:
        raise ValueError(f"the model suite times an embedded model (`local:<name>`), not {model!r}")
    config = ModelSpeedConfig(
        model=model, rounds=args.rounds, repeats=args.repeats, max_tokens=args.max_tokens
    )
    if args.cache_slots is not None:
        config.cache_slots = args.cache_slots
    config.validate()
    head = writers.envelope("model_speed", asdict(config))  # the code and tree that run
    tag = args.tag or model.split("-")[0].split(".")[0]
    started = time.monotonic()

    def write(measured: dict[str, Any]) -> dict[str, Path]:
        measured.pop("config")
        result = {**head, "wall_time": round(time.monotonic() - started, 1), **measured}
        return write_model_speed(result, args.out, tag)

    return write(run_model_speed(config, on_round=write))


def run_scaling_suite(args: argparse.Namespace) -> dict[str, Path]:
    """Time the same learning runs on `local` and on Ray, round after round."""
    from rlgpt.bench.scaling import ScalingConfig, run_scaling, write_scaling

    config = ScalingConfig(rounds=args.rounds, ray_address=args.ray_address)
    if args.quick:
        config.budget, config.rounds = 2_000, 1
    if args.budget:
        config.budget = args.budget
    if args.jobs:
        config.jobs = args.jobs
    if args.observation:
        config.observation = args.observation
    tag = args.tag or ("quick" if args.quick else f"{config.budget // 1000}k")
    runs_root = args.runs_dir or Path("runs") / f"bench_scaling_{tag}"

    def write(measured: dict[str, Any]) -> dict[str, Path]:
        return write_scaling(config, measured, args.out, tag)

    return write(run_scaling(config, runs_root, on_round=write))


def run_peer_suite(args: argparse.Namespace) -> dict[str, Path]:
    """Measure rlgpt's PPO rate beside the JAX peer's, interleaved, and write the files."""
    from rlgpt.bench.peer import PeerSuiteConfig, run_peer, write_peer

    config = PeerSuiteConfig(rounds=args.rounds, seed=_ints(args.seeds or "0")[0])
    if args.quick:
        config.peer_envs, config.rlgpt_n_envs, config.python_n_envs = (8,), (8,), (8,)
        config.n_steps, config.steps, config.rounds, config.warmup_steps = 32, 512, 1, 0
    if args.ppo_steps:
        config.steps = args.ppo_steps
    if args.peer_envs:
        config.peer_envs = tuple(_ints(args.peer_envs))
    if args.peer_resets:
        config.resets = tuple(r.strip() for r in args.peer_resets.split(",") if r.strip())
    if args.rlgpt_envs:
        config.rlgpt_n_envs = tuple(_ints(args.rlgpt_envs))
    if args.rlgpt_rollout is not None:
        config.rlgpt_rollout = args.rlgpt_rollout
    if args.python_envs is not None:
        config.python_n_envs = tuple(_ints(args.python_envs)) if args.python_envs else ()
    tag = args.tag or ("quick" if args.quick else "full")

    def write(measured: dict[str, Any]) -> dict[str, Path]:
        return write_peer(config, measured, args.out, tag)

    return write(run_peer(config, on_result=write))


def run_tasks_suite(args: argparse.Namespace) -> dict[str, Path]:
    """The full loop on each task and seed; the result files are rewritten after each run."""
    from rlgpt.bench.tasks import DEFAULT_TASKS, TasksConfig, read_context_file, run_tasks

    tag = args.tag or "default"
    config = TasksConfig(
        tasks=_names(args.tasks) if args.tasks else list(DEFAULT_TASKS),
        seeds=_ints(args.seeds or "0,1,2"),
        model=args.model or DEFAULT_TASKS_MODEL,
        context=read_context_file(args.context) if args.context else {},
        runs_dir=str(args.runs_dir or Path("runs") / f"bench_tasks_{tag}"),
    )
    if not config.tasks or not config.seeds:
        raise ValueError("the tasks suite needs at least one task and one seed")
    from rlgpt.execution import make_executor

    return run_tasks(
        config,
        args.out,
        tag,
        resume=args.resume,
        compare=args.compare_with,
        executor=make_executor(args.executor, args.ray_address),
    )


def render_markdown(result: Mapping[str, Any]) -> str:
    """The markdown of any suite's result JSON (what the suite wrote beside it)."""
    suite = result.get("suite")
    if suite == "throughput":
        from rlgpt.bench.throughput_report import throughput_markdown

        return throughput_markdown(result)
    if suite == "learning":
        from rlgpt.bench.learning_report import learning_markdown

        return learning_markdown(result)
    if suite == "model_speed":
        from rlgpt.bench.model_speed_report import model_speed_markdown

        return model_speed_markdown(result)
    if suite == "tasks":
        from rlgpt.bench.tasks_report import tasks_markdown

        return tasks_markdown(result)
    if suite == "scaling":
        from rlgpt.bench.scaling import scaling_markdown

        return scaling_markdown(result)
    if suite == "peer":
        from rlgpt.bench.peer import peer_markdown

        return peer_markdown(result)
    raise ValueError(f"unknown suite {suite!r} in the result")


def render_files(paths: list[Path]) -> dict[str, Path]:
    """`--render`: rewrite each result's markdown from its JSON."""
    from rlgpt.bench import writers

    written: dict[str, Path] = {}
    for path in paths:
        result = json.loads(Path(path).read_text())
        md = Path(path).with_suffix(".md")
        writers.atomic_write_text(md, render_markdown(result))
        written[str(path)] = md
    return written


def run_bench(args: argparse.Namespace) -> int:
    """Run the chosen suites (throughput and learning by default); 0 on success, 2 on a bad
    argument."""
    suites = list(dict.fromkeys(args.suites or SUITES))
    written: dict[str, dict[str, Path]] = {}
    runners = {
        "throughput": run_throughput_suite,
        "learning": run_learning_suite,
        "model": run_model_suite,
        "tasks": run_tasks_suite,
        "scaling": run_scaling_suite,
        "peer": run_peer_suite,
    }
    try:
        if args.render:
            written["render"] = render_files(args.render)
            log.info("bench_rendered", files=[str(p) for p in written["render"].values()])
            return 0
        if args.merge:
            suites = []
            written["learning"] = merge_learning_files(args)
            log.info("bench_merged", files=[str(p) for p in written["learning"].values()])
        for suite in suites:
            log.info("bench_suite_started", suite=suite, quick=bool(args.quick))
            written[suite] = runners[suite](args)
            log.info(
                "bench_suite_done", suite=suite, files=[str(p) for p in written[suite].values()]
            )
    except (ValueError, FileNotFoundError, KeyError, RayUnavailable) as exc:
        log.error("bench_failed", error=str(exc))
        return 2
    except RunsFailed as exc:
        # The finished runs are kept and in the result files; the same command retries.
        log.error("bench_runs_failed", error=str(exc))
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    """`python -m rlgpt.bench` (the same options as `rlgpt bench`)."""
    from rlgpt.logging import configure_logging

    parser = argparse.ArgumentParser(prog="rlgpt bench", description=__doc__)
    add_bench_arguments(parser)
    args = parser.parse_args(argv)
    configure_logging("INFO")
    return run_bench(args)

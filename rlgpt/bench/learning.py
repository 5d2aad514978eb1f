"""Learning suite: PPO, PPO + code actions, code actions alone and the full loop on Crafter."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from rlgpt.bench.learning_config import METHODS, LearningConfig
from rlgpt.bench.learning_runs import run_code_actions, run_full_loop, train_ppo
from rlgpt.bench.score import mean_and_spread
from rlgpt.logging import get_logger

log = get_logger("rlgpt.bench.learning")


def library_origin(library: str | Path) -> str:
    """`rlgpt run <id>` when the library sits in a run directory; else a scripted baseline."""
    root = Path(library).resolve()
    run_dir = root.parent
    if root.name == "library" and (
        (run_dir / "context.json").exists() or (run_dir / "metrics.json").exists()
    ):
        return f"produced by `rlgpt run` {run_dir.name}"
    return "scripted baseline (hand-written library, not produced by the model)"


def code_action_names(library: str | Path, wanted: Sequence[str] = ()) -> list[str]:
    """The library's code actions (all, in name order, or the wanted ones, checked)."""
    from rlgpt.actions.library import ActionLibrary, LibraryError

    lib = ActionLibrary(library)
    code = [e.name for e in lib.entries() if e.kind == "code"]
    if wanted:
        missing = [n for n in wanted if n not in code]
        if missing:
            raise LibraryError(f"no code action(s) {missing} in {library}; code actions: {code}")
        return list(wanted)
    if not code:
        raise LibraryError(f"the library {library} holds no code action")
    return code


# ---------------------------------------------------------------------- suite
def run_learning(config: LearningConfig, out: Path) -> dict[str, Any]:
    """Every requested method for every seed; per-method mean and spread of the score.

    Returns:
        `methods`: per method its key, label, runs (raw per-episode results included),
        score mean/std and mean per-achievement rates.
    """
    unknown = [m for m in config.methods if m not in METHODS]
    if unknown:
        raise ValueError(f"unknown methods {unknown}; choose from {sorted(METHODS)}")
    names: list[str] = []
    sources: dict[str, str] = {}
    if {"b", "c"} & set(config.methods):
        if config.library is None:
            raise ValueError("methods b and c need an action library: pass --library DIR")
        names = code_action_names(config.library, config.code_actions)
        config.code_actions = names
        config.library_origin = config.library_origin or library_origin(config.library)
        from rlgpt.actions.library import ActionLibrary

        library = ActionLibrary(config.library)
        # The code itself goes into the results: a table is only as honest as its actions.
        sources = {name: library.source(name) for name in names}
    methods: list[dict[str, Any]] = []
    for key in config.methods:
        runs: list[dict[str, Any]] = []
        for seed in config.seeds:
            log.info("bench_learning_run", method=key, seed=seed, budget=config.budget)
            if key == "a":
                run = train_ppo(config, seed, [], out / f"a_seed{seed}")
            elif key == "b":
                run = train_ppo(config, seed, names, out / f"b_seed{seed}")
            elif key == "c":
                run = run_code_actions(config, seed, names)
            else:
                run = run_full_loop(config, seed, out / f"d_seed{seed}")
            log.info(
                "bench_learning_done",
                method=key,
                seed=seed,
                score=round(run["score"], 3),
                episodes=run["episodes"],
                steps_per_second=run["steps_per_second"],
            )
            runs.append(run)
        label = METHODS[key]
        if key in ("b", "c") and "scripted baseline" in config.library_origin:
            label += " [scripted baseline library]"
        methods.append(summarise_method(key, label, config.budget, runs))
    return {"config": {**asdict(config), "library_sources": sources}, "methods": methods}


def summarise_method(key: str, label: str, budget: int, runs: list[dict[str, Any]]) -> dict:
    """One method's table entry: score mean and spread over its runs, mean achievement rates."""
    mean, std = mean_and_spread([r["score"] for r in runs])
    return {
        "key": key,
        "label": label,
        "budget_env_steps": budget,
        "score_mean": mean,
        "score_std": std,
        "achievements_mean": {
            a: sum(r["achievements"][a] for r in runs) / len(runs) for a in runs[0]["achievements"]
        },
        "note": runs[0].get("note", "") if key in ("c", "d") else "",
        "runs": runs,
    }


def merge_learning(results: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Combine learning results of one budget (e.g. methods or seeds run in parallel).

    Runs of the same method and label are pooled; the config lists every seed and method and
    keeps each file's own config under `merged_from`.
    """
    if not results:
        raise ValueError("nothing to merge")
    budgets = {r["config"]["budget"] for r in results}
    if len(budgets) != 1:
        raise ValueError(f"cannot merge results of different budgets: {sorted(budgets)}")
    pooled: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for result in results:
        for method in result["methods"]:
            pooled.setdefault((method["key"], method["label"]), []).extend(method["runs"])
    budget = budgets.pop()
    methods = [summarise_method(k, label, budget, runs) for (k, label), runs in pooled.items()]
    config = dict(results[0]["config"])
    for other in results[1:]:
        # The library is the one of the files that used it (b, c), not of a PPO-only file.
        if other["config"].get("library") and not config.get("library"):
            for name in ("library", "library_origin", "code_actions", "library_sources"):
                config[name] = other["config"].get(name)
    config["seeds"] = sorted({s for r in results for s in r["config"]["seeds"]})
    config["methods"] = sorted({m for r in results for m in r["config"]["methods"]})
    config["merged_from"] = [
        {"created": r.get("created"), "git_commit": r.get("git_commit"), "config": r["config"]}
        for r in results
    ]
    return {
        "config": config,
        "methods": methods,
        "wall_time": sum(float(r.get("wall_time", 0.0)) for r in results),
    }

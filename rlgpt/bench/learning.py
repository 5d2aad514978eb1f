"""Learning suite on Crafter: PPO, PPO + code actions, the model's code-only agent, the full
loop, and a given library's code actions alone."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from rlgpt.bench.learning_config import LIBRARY_METHODS, METHODS, LearningConfig
from rlgpt.bench.learning_runs import run_code_actions, run_full_loop, train_ppo
from rlgpt.bench.score import mean_and_spread
from rlgpt.bench.writers import git_state
from rlgpt.execution import Executor, Job, JobOutcome, LocalExecutor
from rlgpt.files import atomic_write_text
from rlgpt.logging import get_logger

log = get_logger("rlgpt.bench.learning")


def library_origin(library: str | Path) -> str:
    """`rlgpt run <id>` when the library sits in a run directory, the shared library when it
    is one (`<runs>/shared_library/<env>`, what passed in earlier runs); else a scripted
    baseline."""
    from rlgpt.actions.library import EMBEDDINGS

    root = Path(library).resolve()
    run_dir = root.parent
    if root.name == "library" and (
        (run_dir / "context.json").exists() or (run_dir / "metrics.json").exists()
    ):
        return f"produced by `rlgpt run` {run_dir.name}"
    if run_dir.name == "shared_library" or (root / EMBEDDINGS).exists():
        return f"the shared library {root} (code actions that passed in earlier `rlgpt run`s)"
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
class RunsFailed(RuntimeError):
    """Runs of a suite ended with an error (the other runs finished and were kept)."""


def resolve_learning_algo(config: LearningConfig, names: Sequence[str]) -> str:
    """The one algorithm of methods a and b: MaskablePPO when a code action of b has
    `available` (a then runs with an all-true mask), else PPO."""
    if config.algo != "auto":
        return config.algo
    if not names or config.library is None:
        return "ppo"
    from rlgpt.actions.library import ActionLibrary

    library = ActionLibrary(config.library)
    return "maskable_ppo" if any(library.get(n).has_available for n in names) else "ppo"


#: Config fields a resumed suite must share with the runs already in its directory.
_RUN_DEFINING = (
    "budget", "observation", "env_seed_stride", "episode_length", "n_envs", "n_steps",
    "privileged", "code_action_max_steps", "code_actions", "graph_task", "library_origin",
)  # fmt: skip


def check_runs_dir(config: LearningConfig, runs_dir: Path) -> None:
    """Record the run-defining config in `runs_dir`, or refuse a directory of another one."""
    runs_dir.mkdir(parents=True, exist_ok=True)
    path = runs_dir / "config.json"
    mine = {k: getattr(config, k) for k in _RUN_DEFINING}
    if path.exists():
        theirs = json.loads(path.read_text())
        differ = sorted(k for k in _RUN_DEFINING if theirs.get(k) != mine[k])
        if differ:
            raise ValueError(
                f"{runs_dir} holds runs of another config (differs in {differ}); pass another "
                "--runs-dir or remove it"
            )
    else:
        atomic_write_text(path, json.dumps(mine, indent=1) + "\n")


def run_learning(
    config: LearningConfig,
    runs_dir: Path,
    on_run: Callable[[dict[str, Any]], object] | None = None,
    executor: Executor | None = None,
    on_progress: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Every requested method for every seed; per-method mean and spread of the score.

    Each run lives in `runs_dir/<method>_seed<seed>`: a finished run is read back from its
    `summary.json`, an interrupted one continues from its last checkpoint, so the same
    command finishes a suite that was stopped. The runs left to do go to `executor` as
    independent jobs (default: one after another here; on Ray all at once). `on_run` gets
    the partial result after every finished run (the result files are rewritten as the
    suite goes); `on_progress` gets the runs' progress events.

    Returns:
        `methods`: per method its key, label, runs (raw per-episode results included),
        score mean/std and mean per-achievement rates.

    Raises:
        RunsFailed: after the other runs finished, naming each run that failed.
    """
    config.validate()
    names: list[str] = []
    sources: dict[str, str] = {}
    if set(LIBRARY_METHODS) & set(config.methods):
        if config.library is None:
            raise ValueError("methods b and r need an action library: pass --library DIR")
        names = code_action_names(config.library, config.code_actions)
        config.code_actions = names
        config.library_origin = config.library_origin or library_origin(config.library)
        from rlgpt.actions.library import ActionLibrary

        library = ActionLibrary(config.library)
        # The code itself goes into the results: a table is only as honest as its actions.
        sources = {name: library.source(name) for name in names}
    algo = resolve_learning_algo(config, names)
    check_runs_dir(config, runs_dir)
    executor = executor or LocalExecutor()
    done: dict[tuple[str, int], dict[str, Any]] = {}
    jobs: list[Job] = []
    metas: list[dict[str, Any]] = []  # per job: method, seed, code attempts, folder
    for key in config.methods:
        for seed in config.seeds:
            out = runs_dir / f"{key}_seed{seed}"
            summary = out / "summary.json"
            if summary.exists():
                done[key, seed] = json.loads(summary.read_text())
                log.info(
                    "bench_learning_kept", method=key, seed=seed, score=done[key, seed]["score"]
                )
                continue
            log.info(
                "bench_learning_run", method=key, seed=seed, budget=config.budget,
                executor=executor.name,
            )  # fmt: skip
            # The code of each attempt of this run, which a later table may not share.
            attempts = note_attempt(out)
            jobs.append(
                Job(f"{key}_seed{seed}", learning_run, (config, key, seed, names, algo, str(out)))
            )
            metas.append({"key": key, "seed": seed, "attempts": attempts, "out": out})

    def result() -> dict[str, Any]:
        methods = []
        for key in config.methods:
            runs = [done[key, s] for s in config.seeds if (key, s) in done]
            if runs:
                label = method_label(config, key)
                methods.append(summarise_method(key, label, observation_of(config, key), runs))
        return {"config": {**asdict(config), "library_sources": sources}, "methods": methods}

    def finished(index: int, outcome: JobOutcome) -> None:
        if not outcome.ok:
            return
        meta = metas[index]
        run = dict(outcome.value)
        run["git"] = meta["attempts"][-1]
        run["git_attempts"] = meta["attempts"]
        run["executor"] = {"name": executor.name, "node": outcome.node}
        atomic_write_text(meta["out"] / "summary.json", json.dumps(run) + "\n")
        done[meta["key"], meta["seed"]] = run
        log.info(
            "bench_learning_done", method=meta["key"], seed=meta["seed"],
            score=round(run["score"], 3), episodes=run["episodes"],
            steps_per_second=run["steps_per_second"],
        )  # fmt: skip
        if on_run is not None:
            on_run(result())

    outcomes = executor.run(jobs, on_progress=on_progress, on_result=finished)
    failed = [o for o in outcomes if not o.ok]
    if failed:
        raise RunsFailed(
            "learning runs failed (the others are kept; the same command retries these): "
            + "; ".join(f"{o.key}: {o.error!r}" for o in failed)
        )
    return result()


def method_label(config: LearningConfig, key: str) -> str:
    """A method's label in the tables, marking a scripted library as such."""
    label = METHODS[key]
    if key in LIBRARY_METHODS and "scripted baseline" in config.library_origin:
        label += " [scripted baseline library]"
    return label


def learning_run(
    config: LearningConfig,
    key: str,
    seed: int,
    names: list[str],
    algo: str,
    out: str,
    on_progress: Callable[[dict[str, Any]], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> dict[str, Any]:
    """One run of one method, as an executor job (resumable from what it saved in `out`)."""
    return run_method(config, key, seed, names, algo, Path(out), on_progress)


def note_attempt(out: Path) -> list[dict[str, Any]]:
    """Append this attempt's code (commit, tree state) to the run's `attempts.json`."""
    out.mkdir(parents=True, exist_ok=True)
    path = out / "attempts.json"
    attempts: list[dict[str, Any]] = json.loads(path.read_text()) if path.exists() else []
    code = git_state()
    attempts.append({k: code.get(k) for k in ("commit", "dirty", "diff_sha256")})
    atomic_write_text(path, json.dumps(attempts) + "\n")
    return attempts


def observation_of(config: LearningConfig, key: str) -> str:
    """What a method's agent observes: the protocol's observation for the PPO methods."""
    if key in ("a", "b"):
        return config.observation
    if key == "d":
        observation = config.graph_context.get("observation", "symbolic")
        final = config.graph_context.get("final_policy", "rl")
        if final == "rl" and config.graph_task == "crafter:score":
            # Its rates are those of a policy trained on this observation over the episodes
            # of the budget: the protocol of a and b on that observation.
            return str(observation)
        return f"skill API; the loop's RL policies see {observation}"
    return "none (no policy; code actions read the skill API)"


def run_method(
    config: LearningConfig,
    key: str,
    seed: int,
    names: list[str],
    algo: str,
    out: Path,
    on_progress: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """One run of one method (PPO runs report their training progress to `on_progress`)."""
    if key == "a":
        return train_ppo(config, seed, [], algo, out, on_progress)
    if key == "b":
        return train_ppo(config, seed, names, algo, out, on_progress)
    if key == "r":
        return run_code_actions(config, seed, names, out)
    return run_full_loop(config, seed, out, key)


def summarise_method(key: str, label: str, observation: str, runs: list[dict[str, Any]]) -> dict:
    """One method's table entry: score mean and spread over its runs, mean achievement rates,
    and the env steps its runs used."""
    scores = [r["score"] for r in runs]
    mean, std = mean_and_spread(scores)
    return {
        "key": key,
        "label": label,
        "observation": observation,
        "env_steps_used": [int(r["env_steps"]) for r in runs],
        "score_mean": mean,
        "score_std": std,
        "score_per_seed": {str(r["seed"]): r["score"] for r in runs},
        "achievements_mean": {
            a: sum(r["achievements"][a] for r in runs) / len(runs) for a in runs[0]["achievements"]
        },
        "note": runs[0].get("note", "") if key in ("c", "d", "r") else "",
        "runs": runs,
    }


def merge_learning(results: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Combine learning results of one budget (e.g. methods or seeds run in parallel).

    Runs of the same method, label and observation are pooled (a seed may appear once); the
    config lists every seed and method and keeps each file's own config and commit under
    `merged_from`.
    """
    if not results:
        raise ValueError("nothing to merge")
    budgets = {r["config"]["budget"] for r in results}
    if len(budgets) != 1:
        raise ValueError(f"cannot merge results of different budgets: {sorted(budgets)}")
    pooled: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for result in results:
        for method in result["methods"]:
            group = (method["key"], method["label"], method.get("observation", ""))
            runs = pooled.setdefault(group, [])
            seeds = {r["seed"] for r in runs}
            for run in method["runs"]:
                if run["seed"] in seeds:
                    raise ValueError(f"run seed {run['seed']} of {group[1]!r} is in two files")
                runs.append(run)
    methods = [summarise_method(*group, runs) for group, runs in pooled.items()]
    config = dict(results[0]["config"])
    for other in results[1:]:
        # The library is the one of the files that used it (b, r), not of a PPO-only file.
        if other["config"].get("library") and not config.get("library"):
            for name in ("library", "library_origin", "code_actions", "library_sources"):
                config[name] = other["config"].get(name)
    config["seeds"] = sorted({s for r in results for s in r["config"]["seeds"]})
    config["methods"] = sorted({m for r in results for m in r["config"]["methods"]})
    config["observation"] = sorted({r["config"].get("observation", "") for r in results})
    config["merged_from"] = [
        {
            "created": r.get("created"),
            "git": r.get("git"),
            "command": r.get("command"),
            "config": r["config"],
        }
        for r in results
    ]
    return {
        "config": config,
        "methods": methods,
        "wall_time": sum(float(r.get("wall_time", 0.0)) for r in results),
    }

"""Peer suite: rlgpt's PPO training rate beside a jitted JAX PPO on Craftax-Classic, interleaved."""

from __future__ import annotations

import importlib.util
import itertools
import json
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from rlgpt.bench import writers
from rlgpt.bench.config_fields import described
from rlgpt.bench.writers import decimals, pyplot, save_figure
from rlgpt.logging import get_logger

log = get_logger("rlgpt.bench.peer")

#: What the peer needs; `pip install -e ".[peer]"` installs it.
PEER_MODULES = ("jax", "flax", "optax", "craftax")

PROCESS_LAYOUT = (
    "Each peer measurement is a fresh Python process running `python -m rlgpt.bench.peer_jax` "
    "(XLA's CPU thread pool on both cores; the rollout and the updates are one compiled "
    "program). rlgpt's measurement runs in the suite's process: torch on one thread; the "
    "compiled Crafter step advances all envs in one call in that process; Python envs step in "
    "that process (1 env process) or a helper process steps a shard of them at the same time "
    "on the second core (2); a world-prefetch helper process generates each env's next worlds "
    "during its episodes. Nothing else of the suite runs during a measurement."
)


@dataclass
class PeerSuiteConfig:
    """What the peer suite measures, round after round."""

    peer_envs: tuple[int, ...] = described((8, 64, 256), "Env counts of the peer's PPO.")
    resets: tuple[str, ...] = described(
        ("optimistic", "fresh"),
        "How the peer's finished envs get a world: 'optimistic' (a few new worlds per step "
        "shared out, Craftax's PPO default) or 'fresh' (a world of its own each).",
    )
    n_steps: int = described(256, "Rollout steps per env and update (rlgpt's PPO setting).")
    steps: int = described(131_072, "Env steps timed per measurement (peer: whole updates).")
    rlgpt_n_envs: tuple[int, ...] = described(
        (8, 64, 256),
        "Env counts of rlgpt's PPO-MLP on the compiled Crafter step (the pipeline's batched "
        "backend, its default for plain PPO on the symbolic observation).",
    )
    python_n_envs: tuple[int, ...] = described(
        (8,), "Env counts of rlgpt's PPO-MLP on Python Crafter envs (`env_backend='python'`)."
    )
    rlgpt_rollout: int | None = described(
        None,
        "Env steps per PPO update of rlgpt's runs (envs x steps per env): each run's steps per "
        "env = rollout / envs, e.g. 2048 gives 8 x 256 and 64 x 32, the learning protocol's "
        "update schedule; None = `n_steps` per env, as the peer.",
    )
    rlgpt_env_processes: tuple[int, ...] = described(
        (1, 2),
        "Env processes of the Python-env runs: 1 = every env in the training process, 2 = a "
        "helper process steps a shard of them on the second core.",
    )
    warmup_steps: int = described(
        16_384,
        "Env steps of one untimed rlgpt run before the rounds (the process's first run pays "
        "for loading compiled code and starting the world-prefetch helper; the peer's compile "
        "time is likewise apart); 0 = none.",
    )
    rounds: int = described(3, "Rounds; every configuration is measured once per round.")
    seed: int = described(0, "Seed of the peer's worlds and of rlgpt's runs.")

    def validate(self) -> None:
        """Raise ValueError on sizes no round can follow."""
        if self.rounds < 1 or self.steps < 1 or self.n_steps < 1:
            raise ValueError("rounds, steps and n_steps must be at least 1")
        if not self.peer_envs or min(self.peer_envs) < 1:
            raise ValueError("peer_envs needs at least one positive count")
        ours = (*self.rlgpt_n_envs, *self.python_n_envs)
        if not ours or min(ours) < 1 or max(ours) > 256:
            raise ValueError("rlgpt_n_envs and python_n_envs need at least one count in 1..256")
        if not self.rlgpt_env_processes or not set(self.rlgpt_env_processes) <= {1, 2}:
            raise ValueError(
                f"rlgpt_env_processes must be 1 and/or 2, got {self.rlgpt_env_processes}"
            )
        if self.rlgpt_rollout is not None:
            for n in ours:
                if self.rlgpt_rollout % n or self.rlgpt_rollout // n < 8:
                    raise ValueError(
                        f"rlgpt_rollout {self.rlgpt_rollout} must be a multiple of every rlgpt "
                        f"env count with at least 8 steps per env (not {n} envs)"
                    )
        unknown = set(self.resets) - {"optimistic", "fresh"}
        if unknown or not self.resets:
            raise ValueError(f"resets must be 'optimistic' and/or 'fresh', got {self.resets}")


def require_peer() -> None:
    """Raise ValueError naming the extra when the peer's packages are missing."""
    missing = [m for m in PEER_MODULES if importlib.util.find_spec(m) is None]
    if missing:
        raise ValueError(
            f"`rlgpt bench peer` needs {', '.join(missing)}: install the optional extra with "
            "`.venv/bin/pip install -e '.[peer]'` (make setup leaves it out)"
        )


def peer_updates(config: PeerSuiteConfig, envs: int) -> int:
    """Whole PPO updates that cover at least `config.steps` env steps (at least 1)."""
    per_update = envs * config.n_steps
    return max(1, -(-config.steps // per_update))


def measure_peer(config: PeerSuiteConfig, envs: int, resets: str) -> dict[str, Any]:
    """One peer measurement in a fresh process; returns its JSON line."""
    updates = peer_updates(config, envs)
    command = [sys.executable, "-m", "rlgpt.bench.peer_jax", "--envs", str(envs),
               "--resets", resets, "--n-steps", str(config.n_steps),
               "--updates", str(updates), "--seed", str(config.seed)]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        trace = done.stderr[-2000:]
        raise RuntimeError(f"peer measurement failed ({envs} envs, {resets} resets): {trace}")
    measured: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return measured


def measure_rlgpt(
    config: PeerSuiteConfig, run: tuple[str, int, int, int], scratch: Path
) -> dict[str, Any]:
    """One rlgpt PPO-MLP training run on the symbolic observation (the throughput suite's);
    `run` is (env backend, envs, env processes, steps per env)."""
    from rlgpt.bench.throughput import measure_ppo

    backend, n_envs, processes, n_steps = run
    return measure_ppo(
        config.steps,
        n_envs,
        config.seed,
        scratch,
        "symbolic",
        processes,
        env_backend=backend,
        n_steps=n_steps,
    )


def rlgpt_runs(config: PeerSuiteConfig) -> list[tuple[str, int, int, int]]:
    """rlgpt's configurations: (env backend, envs, env processes, steps per env)."""

    def steps(n_envs: int) -> int:
        return config.n_steps if config.rlgpt_rollout is None else config.rlgpt_rollout // n_envs

    batched = [("batched", n, 1, steps(n)) for n in config.rlgpt_n_envs]
    python = [
        ("python", n, p, steps(n))
        for n, p in itertools.product(config.python_n_envs, config.rlgpt_env_processes)
    ]
    return [*batched, *python]


def rlgpt_name(run: tuple[str, int, int, int]) -> str:
    """The table name of an rlgpt configuration."""
    backend, n_envs, processes, n_steps = run
    shape = f"{n_envs} envs x {n_steps} steps"
    if backend == "batched":
        return f"rlgpt PPO-MLP, {shape}, compiled Crafter step"
    where = "1 env process" if processes == 1 else f"{processes} env processes"
    return f"rlgpt PPO-MLP, {shape}, Python Crafter envs, {where}"


def run_peer(
    config: PeerSuiteConfig, on_result: Callable[[dict[str, Any]], object] | None = None
) -> dict[str, Any]:
    """Every configuration once per round (the peer's, then rlgpt's); returns the rows, a
    summary per configuration and rlgpt's ratio to the peer's best configuration.
    `on_result` gets that summary after every measurement (some take minutes)."""
    config.validate()
    require_peer()
    import torch

    torch.set_num_threads(1)
    rows: list[dict[str, Any]] = []
    if config.warmup_steps:
        warmup = replace(config, steps=config.warmup_steps)
        for run in rlgpt_runs(config):
            with tempfile.TemporaryDirectory(prefix="rlgpt-peer-") as scratch:
                measure_rlgpt(warmup, run, Path(scratch))
    for index in range(config.rounds):
        for resets in config.resets:
            for envs in config.peer_envs:
                log.info("bench_peer", round=index, part="peer", envs=envs, resets=resets)
                got = measure_peer(config, envs, resets)
                rows.append({"round": index, "name": peer_name(envs, resets), "kind": "peer",
                             "steps_per_second": got["steps_per_second"],
                             "compile_seconds": got["compile_seconds"],
                             "env_steps": got["env_steps"], "raw": got})  # fmt: skip
                if on_result is not None:
                    on_result(summarize(rows))
        for run in rlgpt_runs(config):
            log.info("bench_peer", round=index, part="rlgpt", run=run)
            with tempfile.TemporaryDirectory(prefix="rlgpt-peer-") as scratch:
                got = measure_rlgpt(config, run, Path(scratch))
            rows.append({"round": index, "name": rlgpt_name(run),
                         "kind": "rlgpt", "steps_per_second": got["steps_per_second"],
                         "job_steps_per_second": got["job_steps_per_second"],
                         "env_steps": got["env_steps"], "raw": got})  # fmt: skip
            if on_result is not None:
                on_result(summarize(rows))
    return summarize(rows)


def peer_name(envs: int, resets: str) -> str:
    """The table name of a peer configuration."""
    return f"peer JAX PPO, {envs} envs, {resets} resets"


def _spread(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values),
            "n": len(values)}  # fmt: skip


def summarize(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Median and range per configuration; the ratio rlgpt / the peer's best configuration
    (highest median), per round, with its median and range."""
    names = list(dict.fromkeys(r["name"] for r in rows))
    summary = {}
    for name in names:
        mine = [r for r in rows if r["name"] == name]
        entry = {"kind": mine[0]["kind"], **_spread([r["steps_per_second"] for r in mine])}
        if entry["kind"] == "peer":
            entry["compile_seconds"] = _spread([r["compile_seconds"] for r in mine])
        else:
            entry["job"] = _spread([r["job_steps_per_second"] for r in mine])
        summary[name] = entry
    result: dict[str, Any] = {"rows": rows, "summary": summary, "process_layout": PROCESS_LAYOUT}
    peers = {n: s for n, s in summary.items() if s["kind"] == "peer"}
    ours = {n: s for n, s in summary.items() if s["kind"] == "rlgpt"}
    if not peers or not ours:
        return result
    best_peer = max(peers, key=lambda n: peers[n]["median"])
    best_ours = max(ours, key=lambda n: ours[n]["median"])

    def per_round(ours_field: str, name: str = best_ours) -> list[float]:
        ours_by_round = {r["round"]: r[ours_field] for r in rows if r["name"] == name}
        return [
            ours_by_round[r["round"]] / r["steps_per_second"]
            for r in rows
            if r["name"] == best_peer and r["round"] in ours_by_round
        ]

    ratios = per_round("steps_per_second")
    result["best_peer"], result["best_rlgpt"] = best_peer, best_ours
    if ratios:
        result["ratio"] = {**_spread(ratios), "per_round": ratios}
        result["job_ratio"] = _spread(per_round("job_steps_per_second"))
        result["goal_met"] = result["ratio"]["median"] >= 1.0
        # Every rlgpt configuration against the same peer configuration, round by round.
        result["ratios"] = {
            name: _spread(per_round("steps_per_second", name))
            for name in ours
            if per_round("steps_per_second", name)
        }
    return result


# ------------------------------------------------------------------ report
def peer_markdown(result: Mapping[str, Any]) -> str:
    """The suite's tables: every configuration's rate and the ratio to the peer's best."""
    config = result["config"]
    rounds = len({r["round"] for r in result["rows"]})
    rollout = ""
    if config.get("rlgpt_rollout"):
        rollout = (
            f" (rlgpt: {config['rlgpt_rollout']:,} env steps per update, the steps per env "
            "each row names)"
        )
    lines = [
        "# Speed beside a JAX peer: PPO training on Crafter and on Craftax-Classic",
        "",
        "The peer is this benchmark's own JAX code (`rlgpt/bench/peer_jax.py`), written after "
        "PureJaxRL's published structure: vmapped Craftax-Classic envs (symbolic observation), "
        "rollout and PPO updates in one jitted program, compile time measured apart and not in "
        "its rate. Both sides use rlgpt's PPO settings (SB3's 2x64 tanh actor and critic MLPs, "
        f"{config['n_steps']} rollout steps per env{rollout}, minibatches of an eighth of the "
        "rollout, "
        "4 epochs). rlgpt trains on Crafter's own rules through its adapter; Craftax-Classic "
        "re-implements them and differs in places, so the peer is a yardstick for speed only. "
        f"Every configuration ran once per round, {rounds} of {config['rounds']} round(s) "
        "measured, about "
        f"{config['steps']:,} env steps per measurement; rates are env steps per second "
        "(rlgpt: inside SB3's learn(), and for the whole job).",
        "",
        result.get("process_layout", ""),
        "",
        "| configuration | n | median steps/s | range | compile s (median) | whole job |",
        "| --- | ---: | ---: | --- | ---: | ---: |",
    ]
    for name, s in result["summary"].items():
        compile_s = decimals(s["compile_seconds"]["median"]) if "compile_seconds" in s else ""
        job = decimals(s["job"]["median"], 0) if "job" in s else ""
        lines.append(
            f"| {name} | {s['n']} | {decimals(s['median'], 0)} | "
            f"{decimals(s['min'], 0)}-{decimals(s['max'], 0)} | {compile_s} | {job} |"
        )
    ratio = result.get("ratio")
    if ratio:
        lines += [
            "",
            f"**rlgpt / peer** ({result['best_rlgpt']} over {result['best_peer']}, the peer's "
            f"best median), per round: median **{decimals(ratio['median'], 2)}**, range "
            f"{decimals(ratio['min'], 2)}-{decimals(ratio['max'], 2)} (n={ratio['n']}); whole "
            f"job {decimals(result['job_ratio']['median'], 2)}. Goal >= 1.0: "
            f"{'met' if result.get('goal_met') else 'not met'}.",
        ]
    if result.get("ratios"):
        lines += [
            "",
            f"Every rlgpt configuration over {result['best_peer']}, per round:",
            "",
            "| rlgpt configuration | median ratio | range | n |",
            "| --- | ---: | --- | ---: |",
        ]
        for name, spread in result["ratios"].items():
            lines.append(
                f"| {name} | {decimals(spread['median'], 2)} | {decimals(spread['min'], 2)}-"
                f"{decimals(spread['max'], 2)} | {spread['n']} |"
            )
    lines += writers.provenance_section(result)
    lines.append("")
    return "\n".join(lines)


def peer_plot(result: Mapping[str, Any], path: Path) -> Path:
    """Median rate per configuration with its range."""
    plt = pyplot()
    summary = result["summary"]
    names = list(summary)
    fig, ax = plt.subplots(figsize=(8, 0.5 * len(names) + 1.5))
    medians = [summary[n]["median"] for n in names]
    low = [summary[n]["median"] - summary[n]["min"] for n in names]
    high = [summary[n]["max"] - summary[n]["median"] for n in names]
    colors = ["tab:blue" if summary[n]["kind"] == "rlgpt" else "tab:gray" for n in names]
    ax.barh(names, medians, xerr=[low, high], color=colors)
    ax.invert_yaxis()
    ax.set_xlabel("env steps/s (median, range)")
    ax.set_title("PPO training: rlgpt (Crafter) vs JAX peer (Craftax-Classic)")
    return save_figure(fig, path)


def write_peer(config: PeerSuiteConfig, measured: Mapping[str, Any], out: Path, tag: str) -> dict:
    """Write `peer_<tag>.json`, its markdown and its plot; returns their paths."""
    result = {**writers.envelope("peer", asdict(config)), **measured}
    return writers.write_result_files(result, out, f"peer_{tag}", peer_markdown, peer_plot)

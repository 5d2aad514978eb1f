"""Throughput suite: env, adapter, code-action and PPO training rates measured in one run."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from rlgpt.bench.config_fields import described
from rlgpt.envs.base import EnvAdapter, EnvSettings, TaskSpec, load_adapter
from rlgpt.logging import get_logger

log = get_logger("rlgpt.bench.throughput")


@dataclass(frozen=True)
class ThroughputConfig:
    """Sizes of the throughput measurements."""

    env_steps: int = described(3000, "Steps per env-rate measurement (random actions).")
    code_steps: int = described(1000, "Agent steps of the code-action measurement.")
    resets: int = described(5, "Resets averaged per reset timing.")
    ppo_steps: int = described(20_000, "Env-step budget of each PPO training run.")
    ppo_n_envs: tuple[int, ...] = described(
        (1, 2, 8), "Env counts of the PPO-MLP training measurements (symbolic observation)."
    )
    pixel_n_envs: int = described(8, "Envs of the PPO-CNN training measurements (64x64 RGB).")
    pixel_backends: tuple[str, ...] = described(
        ("batched", "python"),
        "Env backends of the PPO-CNN runs, one run each: 'batched' (the compiled Crafter, the "
        "pipeline's default; the pixel goal judges it) and 'python' (Python envs, a helper "
        "process stepping a shard of them).",
    )
    python_n_envs: tuple[int, ...] = described(
        (8,), "Env counts of PPO-MLP runs on Python envs, beside the compiled ones."
    )
    code_ppo_observations: tuple[str, ...] = described(
        ("symbolic", "pixels"),
        "Observations of the MaskablePPO runs over primitives plus the scripted-baseline code "
        "actions (`pixel_n_envs` env workers), one run per `code_ppo_backends` entry.",
    )
    code_ppo_backends: tuple[str, ...] = described(
        ("auto", "python"),
        "Env backends of the code-action runs: 'auto' (the compiled Crafter in each env "
        "worker, the pipeline's default) and 'python' (crafter's Python objects).",
    )
    vector_envs: int = described(8, "Envs of the compiled-step rate measurements.")
    probe_steps: int = described(
        2000, "Steps of each raw crafter.Env probe; one probe before and after every part."
    )
    seed: int = described(0, "Seed of worlds and action draws.")


def _step_rate(
    reset: Callable[[int], Any], step: Callable[[int], bool], steps: int, seed: int
) -> float:
    """Steps/s of `step` with uniformly random actions; resets are excluded from the timing."""
    rng = np.random.default_rng(seed)
    actions = rng.integers(0, 17, size=steps).tolist()
    episode = 0
    reset(seed)
    elapsed = 0.0
    for action in actions:
        start = time.perf_counter()
        done = step(action)
        elapsed += time.perf_counter() - start
        if done:
            episode += 1
            reset(seed + episode)
    return steps / max(elapsed, 1e-9)


def _reset_seconds(reset: Callable[[int], Any], resets: int, seed: int) -> float:
    reset(seed)  # warm caches and imports
    start = time.perf_counter()
    for i in range(resets):
        reset(seed + 1 + i)
    return (time.perf_counter() - start) / resets


#: Reset an env to a world seed; take one action and say whether the episode ended.
EnvCalls = tuple[Callable[[int], Any], Callable[[int], bool]]


def _crafter_calls(env: Any) -> EnvCalls:
    """Reset and step of a crafter.Env."""

    def reset(s: int) -> None:
        env._seed = s  # crafter derives each world from (seed, episode index)
        env.reset()

    def step(action: int) -> bool:
        return bool(env.step(action)[2])

    return reset, step


def _gymnasium_calls(env: Any) -> EnvCalls:
    """Reset and step of a Gymnasium env."""

    def reset(s: int) -> None:
        env.reset(seed=s)

    def step(action: int) -> bool:
        _, _, terminated, truncated, _ = env.step(action)
        return bool(terminated or truncated)

    return reset, step


def measure_raw_crafter(steps: int, resets: int, seed: int) -> dict[str, float]:
    """crafter.Env itself: steps/s with its per-step render, without it, and reset seconds."""
    import crafter

    reset, step = _crafter_calls(crafter.Env(seed=seed))
    render_rate = _step_rate(reset, step, steps, seed)
    reset_s = _reset_seconds(reset, resets, seed)
    norender_rate = raw_no_render_rate(steps, seed)
    return {"render": render_rate, "no_render": norender_rate, "reset_s": reset_s}


def raw_no_render_rate(steps: int, seed: int) -> float:
    """crafter.Env steps/s without drawing (a short probe of the machine's current speed)."""
    import crafter

    env = crafter.Env(seed=seed)
    frame = np.zeros((*env._size, 3), np.uint8)
    # The instance attribute shadows the method: crafter's own step logic, minus drawing.
    env.render = lambda *args, **kwargs: frame
    return _step_rate(*_crafter_calls(env), steps, seed)


def _crafter_score_task() -> tuple[EnvAdapter, TaskSpec]:
    """The Crafter plugin and its score task (the env every throughput row steps)."""
    adapter = load_adapter("crafter")
    return adapter, adapter.task("crafter:score")


def measure_adapter(steps: int, resets: int, seed: int) -> dict[str, float]:
    """rlgpt's CrafterEnv (symbolic observation) and OptionsEnv with primitives only."""
    from rlgpt.actions.build import make_options_env

    adapter, task = _crafter_score_task()
    reset, step = _gymnasium_calls(adapter.make_env(task, EnvSettings()))
    adapter_rate = _step_rate(reset, step, steps, seed)
    reset_s = _reset_seconds(reset, resets, seed)
    wrapped = make_options_env(adapter, task, EnvSettings())
    options_rate = _step_rate(*_gymnasium_calls(wrapped), steps, seed)
    return {
        "adapter": adapter_rate,
        "options": options_rate,
        "reset_s": reset_s,
        "prefetched_reset_s": _prefetched_reset_seconds(resets, seed),
    }


def measure_compiled(steps: int, n_envs: int, seed: int) -> dict[str, float]:
    """Env steps/s of the compiled Crafter envs (the batched backend), random actions,
    resets included, for the symbolic observation and the 64x64 frame."""
    adapter, task = _crafter_score_task()
    rates = {}
    for observation in ("symbolic", "pixels"):
        settings = EnvSettings(observation=observation, prefetch_worlds=True)
        venv = adapter.make_vec_env(task, settings, n_envs)  # type: ignore[attr-defined]
        venv.seed(seed)
        venv.reset()
        actions = np.random.default_rng(seed).integers(0, 17, (max(steps // n_envs, 1), n_envs))
        venv.step(actions[0])  # compiled code loaded before the clock starts
        started = time.perf_counter()
        for row in actions[1:]:
            venv.step(row)
        elapsed = time.perf_counter() - started
        venv.close()
        rates[observation] = (len(actions) - 1) * n_envs / max(elapsed, 1e-9)
    return rates


def _prefetched_reset_seconds(resets: int, seed: int, episode_seconds: float = 0.05) -> float:
    """CrafterEnv reset when its helper had `episode_seconds` to generate the next world.

    50 ms is shorter than the episodes of a young policy in training (~175 steps).
    """
    adapter, task = _crafter_score_task()
    env = adapter.make_env(task, EnvSettings(prefetch_worlds=True))
    env.reset(seed=seed)
    env.reset()  # waits for the helper's start-up, once per process
    elapsed = 0.0
    for _ in range(resets):
        time.sleep(episode_seconds)  # the episode the helper works alongside
        start = time.perf_counter()
        env.reset()
        elapsed += time.perf_counter() - start
    return elapsed / resets


def measure_code_action(steps: int, seed: int) -> dict[str, Any]:
    """Env steps/s with a code action called every step through the sandbox (wall time)."""
    from rlgpt.bench.sandbox_overhead import measure_sandbox_overhead

    result = dict(measure_sandbox_overhead(steps, seed))
    result["source"] = "rlgpt.bench.sandbox_overhead.measure_sandbox_overhead (wall time)"
    # Wall-time rates, like every other row of this suite.
    rate = result.get("wall_sandboxed_steps_per_second", result.get("sandboxed_steps_per_second"))
    result["steps_per_second"] = float(rate or 0.0)
    result["env_steps"] = int(result.get("steps", steps))
    return result


def measure_ppo(
    steps: int,
    n_envs: int,
    seed: int,
    out: Path,
    observation: str = "symbolic",
    env_processes: int | None = None,
    env_backend: str = "auto",
    n_steps: int = 256,
    library_dir: Path | None = None,
    action_names: Sequence[str] = (),
) -> dict[str, Any]:
    """PPO training through the RL pipeline: MLP on the symbolic observation, CNN on pixels;
    `env_processes`, `env_backend` and `n_steps` as `RLJob`'s (the defaults: the pipeline's
    layout). With `action_names` (code actions of `library_dir`): MaskablePPO over the
    primitives plus those actions, the envs in worker processes."""
    from rlgpt.tools.rl_pipeline import RLJob, train_policy

    name = f"ppo_{observation}_n{n_envs}_{env_backend}{'_code' if action_names else ''}"
    job = RLJob(
        n_steps=n_steps,
        library_dir=str(library_dir) if action_names else None,
        action_names=list(action_names),
        algo="maskable_ppo" if action_names else "auto",
        task="crafter:score",
        timesteps=steps,
        n_envs=n_envs,
        seed=seed,
        observation=observation,  # type: ignore[arg-type]
        episode_length=10_000,
        output_dir=str(out / name),
        policy_name=name,
        progress_every=max(steps, 1),
        checkpoint_every=0,
        env_processes=env_processes,
        env_backend=env_backend,  # type: ignore[arg-type]
    )
    result = train_policy(job)
    return {
        # SB3's fps convention: the rate inside learn(); the job's wall time is kept as well.
        "steps_per_second": result.training_steps_per_second,
        "job_steps_per_second": result.steps_per_second,
        "observation": observation,
        "minibatch_size": job.minibatch_size,
        "env_steps": result.env_steps,
        "wall_time": result.wall_time,
        "episodes": result.episodes,
        "vec_env": result.vec_env,
        "agent_steps": result.agent_steps,
        "algo": result.algo,
        "phase_seconds": result.phase_seconds,
    }


#: What runs where while a part is measured (the machine has two cores).
PROCESS_LAYOUT = (
    "Raw probes: crafter.Env in the suite's process, one thread, no other part of the suite "
    "running. "
    "PPO rows: one training process, torch on one thread. On the compiled Crafter (the "
    "pipeline's default) one call in that process steps every env; Python envs step in that "
    "process, and with pixels a helper process steps 5 of the 8 on the second core. A "
    "world-prefetch helper process generates each env's next worlds during the episodes. The "
    "code-action row runs its action in a sandbox worker process, the env in the suite's "
    "process. MaskablePPO rows with code actions: the training process holds the policy; each "
    "env (and its code actions) runs in its own worker process, on the compiled Crafter or "
    "on crafter's Python objects as the row names."
)


def run_throughput(config: ThroughputConfig, scratch: Path) -> dict[str, Any]:
    """Every measurement of the suite in one process, with a raw crafter.Env probe before
    the first part, between every two parts and after the last.

    The machine is shared and its speed drifts between probes, so every ratio is taken
    against the median of all probes of this run, and their range is reported beside it.

    Returns:
        `measurements` (rows with name, value, unit, ratio to the median raw no-render
        rate), `goals`, `probes` and `raw` (every number as measured).
    """
    import torch

    torch.set_num_threads(1)
    raw: dict[str, Any] = {"config": asdict(config), "ppo": {}}
    probes: list[dict[str, Any]] = []

    def probe(after: str) -> None:
        rate = raw_no_render_rate(config.probe_steps, config.seed)
        probes.append({"after": after, "steps_per_second": rate})

    probe("start")
    log.info("bench_throughput", part="raw crafter")
    raw["crafter"] = measure_raw_crafter(config.env_steps, config.resets, config.seed)
    probe("raw crafter")
    log.info("bench_throughput", part="adapter")
    raw["adapter"] = measure_adapter(config.env_steps, config.resets, config.seed)
    probe("adapter")
    log.info("bench_throughput", part="code action")
    raw["code_action"] = measure_code_action(config.code_steps, config.seed)
    probe("code action")
    log.info("bench_throughput", part="compiled")
    raw["compiled"] = measure_compiled(config.env_steps, config.vector_envs, config.seed)
    probe("compiled")
    runs = [(n, "symbolic", "batched") for n in config.ppo_n_envs]
    runs += [(n, "symbolic", "python") for n in config.python_n_envs]
    runs += [(config.pixel_n_envs, "pixels", b) for b in config.pixel_backends]
    for n_envs, observation, backend in runs:
        where = "compiled Crafter" if backend == "batched" else "Python envs"
        if backend == "python" and observation == "pixels":
            where += ", 2 env processes"
        name = f"{observation} n_envs={n_envs}, {where}"
        log.info("bench_throughput", part=f"ppo {name}")
        raw["ppo"][name] = measure_ppo(
            config.ppo_steps, n_envs, config.seed, scratch, observation, env_backend=backend
        )
        probe(f"ppo {name}")
    from rlgpt.bench.baseline_library import ACTIONS, write_scripted_baseline

    library = write_scripted_baseline(scratch / "scripted-baseline")
    raw["ppo_code"] = {}
    for observation in config.code_ppo_observations:
        for backend in config.code_ppo_backends:
            where = "compiled Crafter" if backend != "python" else "Python envs"
            name = f"{observation} n_envs={config.pixel_n_envs}, {where} in env workers"
            log.info("bench_throughput", part=f"code-action ppo {name}")
            raw["ppo_code"][name] = measure_ppo(
                config.ppo_steps,
                config.pixel_n_envs,
                config.seed,
                scratch,
                observation,
                env_backend=backend,
                library_dir=library,
                action_names=list(ACTIONS),
            )
            probe(f"code-action ppo {name}")
    rates = sorted(p["steps_per_second"] for p in probes)
    base = float(np.median(rates))
    spread = {"median": base, "min": rates[0], "max": rates[-1], "n": len(rates)}

    def row(name: str, value: float, unit: str = "steps/s", **extra: Any) -> dict[str, Any]:
        ratio = value / base if unit == "steps/s" and base > 0 else None
        return {"name": name, "value": float(value), "unit": unit, "ratio": ratio, **extra}

    rows = [
        row("crafter.Env step (renders every step)", raw["crafter"]["render"]),
        row("crafter.Env step (no render), median of the probes", base),
        row("CrafterEnv adapter step (symbolic obs)", raw["adapter"]["adapter"]),
        row("OptionsEnv, primitives only", raw["adapter"]["options"]),
        row("code action every step (sandbox)", raw["code_action"]["steps_per_second"]),
        row(
            f"compiled Crafter, {config.vector_envs} envs (symbolic obs), per env step",
            raw["compiled"]["symbolic"],
        ),
        row(
            f"compiled Crafter, {config.vector_envs} envs (64x64 frames), per env step",
            raw["compiled"]["pixels"],
        ),
    ]
    for name, ppo in raw["ppo"].items():
        policy = "PPO-CNN on 64x64 RGB" if ppo["observation"] == "pixels" else "PPO-MLP"
        job_rate = ppo["job_steps_per_second"]
        rows.append(
            row(
                f"{policy} training, {name.split(' ', 1)[1]}, inside learn()",
                ppo["steps_per_second"],
                job_ratio=job_rate / base if base > 0 else None,
                job_steps_per_second=job_rate,
            )
        )
    for name, ppo in raw["ppo_code"].items():
        policy = "CNN on 64x64 RGB" if ppo["observation"] == "pixels" else "MLP"
        job_rate = ppo["job_steps_per_second"]
        rows.append(
            row(
                f"MaskablePPO-{policy} with the scripted-baseline code actions, "
                f"{name.split(' ', 1)[1]}, inside learn()",
                ppo["steps_per_second"],
                job_ratio=job_rate / base if base > 0 else None,
                job_steps_per_second=job_rate,
            )
        )
    # What stepping raw Crafter costs once its own resets are paid at the episode lengths the
    # fastest training run saw: informative only, the goal stays the step-only rate.
    symbolic = [p for p in raw["ppo"].values() if p["observation"] == "symbolic"]
    fastest = max(symbolic, key=lambda p: p["steps_per_second"], default=None)
    if fastest is not None and fastest["episodes"]:
        mean_length = fastest["env_steps"] / fastest["episodes"]
        seconds = 1 / base + raw["crafter"]["reset_s"] / mean_length
        raw["crafter"]["mean_episode_length"] = mean_length
        rows.append(
            row(f"crafter.Env with its resets (episodes of {mean_length:.0f} steps)", 1 / seconds)
        )
    rows += [
        row("crafter.Env reset", raw["crafter"]["reset_s"], "s"),
        row("CrafterEnv reset", raw["adapter"]["reset_s"], "s"),
        row("CrafterEnv reset, next world prefetched", raw["adapter"]["prefetched_reset_s"], "s"),
    ]
    return {
        "measurements": rows,
        "goals": throughput_goals(raw, spread),
        "probes": probes,
        "raw_no_render": spread,
        "process_layout": PROCESS_LAYOUT,
        "raw": raw,
    }


def throughput_goals(raw: dict[str, Any], spread: dict[str, Any]) -> dict[str, Any]:
    """The suite's goals, each judged against the median probe (the range shown beside it)."""
    symbolic = [p for p in raw["ppo"].values() if p["observation"] == "symbolic"]
    pixels = [p for p in raw["ppo"].values() if p["observation"] == "pixels"]
    goals: dict[str, Any] = {}
    if symbolic:
        best = max(symbolic, key=lambda p: p["steps_per_second"])
        rate, job = best["steps_per_second"], best["job_steps_per_second"]
        goals["PPO-MLP training / raw no-render (best n_envs)"] = {
            "target": ">= 0.80 of the median probe",
            "measured": f"{rate / spread['median']:.2f} inside learn(), "
            f"{job / spread['median']:.2f} whole job; against the slowest and fastest "
            f"probes {rate / spread['max']:.2f}-{rate / spread['min']:.2f}",
            "met": rate / spread["median"] >= 0.8,
        }
        minutes = 1e6 / job / 60 if job > 0 else float("inf")
        goals["1M symbolic training steps, whole job (fastest n_envs)"] = {
            "target": "< 30 min",
            "measured": f"{minutes:.0f} min",
            "met": minutes < 30,
        }
    if pixels:
        rate = pixels[0]["job_steps_per_second"]
        goals["PPO-CNN on 64x64 RGB, whole job"] = {
            "target": ">= 300 steps/s (1M steps in under an hour)",
            "measured": f"{rate:.0f} steps/s ({1e6 / max(rate, 1e-9) / 60:.0f} min per 1M)",
            "met": rate >= 300,
        }
    goals["CrafterEnv reset"] = {
        "target": "< 0.1 s",
        "measured": f"{raw['adapter']['reset_s']:.3f} s",
        "met": raw["adapter"]["reset_s"] < 0.1,
    }
    return goals

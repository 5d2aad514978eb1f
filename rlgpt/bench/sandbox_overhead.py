"""Benchmark: a code action called every env step through the sandbox vs a direct skill call."""

from __future__ import annotations

import random
import tempfile
import time
from typing import Any

from rlgpt.actions.sandbox import SandboxLimits

TRIVIAL_ACTION = "def run(api):\n    return api.noop()\n"


def _measure(steps: int, seed: int, limits: dict[str, Any]) -> dict[str, Any]:
    """Runs in a worker (sandbox limits applied there, as in training); both paths, one process."""
    import torch

    from rlgpt.actions import sandbox
    from rlgpt.actions.build import make_options_env
    from rlgpt.actions.library import ActionLibrary
    from rlgpt.envs.base import EnvSettings, OptionInterrupted, load_adapter

    torch.set_num_threads(1)
    sandbox_limits = SandboxLimits(**limits)
    # Episodes longer than the run: resets (slow world generation) stay out of the timing.
    length = steps + 10
    with tempfile.TemporaryDirectory(prefix="rlgpt-bench-") as root:
        library = ActionLibrary(root)
        library.add_code("noop_code", TRIVIAL_ACTION, max_steps=1)
        adapter = load_adapter("crafter")
        options = make_options_env(
            adapter,
            adapter.task("crafter:score"),
            EnvSettings(episode_length=length),
            library=library,
            action_names=["noop_code"],
            limits=sandbox_limits,
        )
        options.reset(seed=seed)
        code_index = options.n_primitives
        inner: Any = options.unwrapped
        api = adapter.make_skill_api(inner, None, 10 * length)
        # Warm-up: loads the code action and enters worker mode before timing.
        options.step(code_index)
        direct_seconds = sandboxed_seconds = 0.0
        direct_cpu = sandboxed_cpu = 0.0
        errors = resets = 0
        clock = time.perf_counter
        cpu_clock = time.thread_time
        # Both paths step the same env, interleaved in a shuffled order, so they see the same
        # world states (creature counts, day and night, crafter's every-10th-step balancing)
        # and the same machine noise; resets are not timed.
        order = [0] * steps + [1] * steps
        random.Random(seed).shuffle(order)
        for path in order:
            started, cpu_started = clock(), cpu_clock()
            if path == 0:
                try:
                    api.noop()
                    over = False
                except OptionInterrupted:
                    over = True
                direct_cpu += cpu_clock() - cpu_started
                direct_seconds += clock() - started
            else:
                _, _, terminated, truncated, info = options.step(code_index)
                sandboxed_cpu += cpu_clock() - cpu_started
                sandboxed_seconds += clock() - started
                errors += "code_action_error" in info
                over = terminated or truncated
            if over:
                resets += 1
                options.reset(seed=seed + resets)
                api = adapter.make_skill_api(inner, None, 10 * length)
        worker = sandbox.in_worker_mode()
    total = steps
    # CPU time of this thread is the primary measure: on a shared machine wall time also
    # counts time spent descheduled, which is noise for both paths.
    direct = total / direct_cpu
    sandboxed = total / sandboxed_cpu
    return {
        "steps": total,
        "resets": resets,
        "direct_steps_per_second": round(direct, 1),
        "sandboxed_steps_per_second": round(sandboxed, 1),
        "ratio": round(sandboxed / direct, 4),
        "overhead_percent": round(100.0 * (1.0 - sandboxed / direct), 2),
        "overhead_us_per_call": round(1e6 * (sandboxed_cpu - direct_cpu) / total, 1),
        "wall_direct_steps_per_second": round(total / direct_seconds, 1),
        "wall_sandboxed_steps_per_second": round(total / sandboxed_seconds, 1),
        "wall_ratio": round(direct_seconds / sandboxed_seconds, 4),
        "code_action_errors": errors,
        "worker_limits": worker,
    }


def measure_sandbox_overhead(steps: int = 2000, seed: int = 0) -> dict[str, Any]:
    """Env steps/s of a trivial code action through the sandbox vs the same skill called directly.

    Both run in one env worker process under the sandbox's worker limits (as in training),
    on the same Crafter env, interleaved in a shuffled order: the direct path calls
    `SkillAPI.noop()` on it; the sandboxed path steps the `OptionsEnv` around it with the
    library code action `def run(api): return api.noop()` (one env step per agent step:
    restricted call, proxy, limits, options bookkeeping; the static check runs once).

    Args:
        steps: Env steps per path.
        seed: World seed of both envs.

    Returns:
        steps, resets, direct_steps_per_second, sandboxed_steps_per_second, ratio (sandboxed /
        direct), overhead_percent, overhead_us_per_call (all from the worker thread's CPU
        time), the same rates and ratio from wall time (`wall_*`), code_action_errors and
        worker_limits (True: measured under the worker's rlimits).
    """
    from rlgpt.actions.worker import run_in_worker

    limits = SandboxLimits()
    result: dict[str, Any] = run_in_worker(
        _measure, {"steps": int(steps), "seed": int(seed), "limits": limits.as_dict()}
    )
    return result


if __name__ == "__main__":
    import json
    import sys

    count = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    sys.stdout.write(json.dumps(measure_sandbox_overhead(count)) + "\n")

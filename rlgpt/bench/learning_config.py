"""What a learning-suite run does: its methods, budget, seeds and action library."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from rlgpt.bench.config_fields import described

METHODS: dict[str, str] = {
    "a": "PPO, primitives only",
    "b": "PPO, primitives + code actions",
    "c": "code actions alone (round-robin, no RL)",
    "d": "full planner/coder/RL/critic loop",
}


@dataclass
class LearningConfig:
    """One learning-suite run: budget, seeds, methods and the action library."""

    budget: int = described(1_000_000, "Env steps per run; every code-action step counts.")
    budget_name: str = described("full", "Name of the budget shown in reports (quick / full).")
    seeds: list[int] = field(
        default_factory=lambda: [0],
        metadata={"description": "Training seeds; one run per method and seed."},
    )
    methods: list[str] = field(
        default_factory=lambda: ["a", "b", "c"],
        metadata={"description": "Methods to run: a, b, c, d."},
    )
    episode_length: int = described(10_000, "Env steps per episode (Crafter's standard 10,000).")
    library: str | None = described(None, "Action-library directory for methods b and c.")
    library_origin: str = described("", "Where the library comes from (shown in every table).")
    code_actions: list[str] = field(
        default_factory=list,
        metadata={"description": "Library code actions used; all of them when empty."},
    )
    n_envs: int = described(8, "Envs per PPO run (workers for b).")
    n_steps: int = described(256, "PPO rollout length per env.")
    privileged: bool = described(False, "Let code actions read the full map (reported).")
    code_action_max_steps: int = described(300, "Env-step budget of one code-action call.")
    graph_task: str = described("crafter:score", "Task of the full-loop run (method d).")
    graph_context: dict[str, Any] = field(
        default_factory=dict,
        metadata={"description": "Extra Context fields of the full-loop run (models, loops)."},
    )

"""What a learning-suite run does: its protocol, methods, budget, seeds and action library."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from rlgpt.bench.config_fields import described

METHODS: dict[str, str] = {
    "a": "PPO, primitives only",
    "b": "PPO, primitives + code actions",
    "c": "the model's code-only agent (its planner's curriculum, code actions alone, no RL)",
    "d": "full planner/coder/RL/critic loop",
    "r": "code actions alone (round-robin over a given library, no RL)",
}

#: Methods that need an action library (`library`).
LIBRARY_METHODS = ("b", "r")

#: What each protocol's policy observes, as every table names it.
OBSERVATIONS: dict[str, str] = {
    "pixels": "64x64 RGB (crafter's image), CNN",
    "symbolic": "symbolic 9x7 one-hot view + inventory, MLP",
}

#: Run seed s uses env seeds s * ENV_SEED_STRIDE + i, so no two run seeds share a world.
ENV_SEED_STRIDE = 10_000


@dataclass
class LearningConfig:
    """One learning-suite run: protocol, budget, seeds, methods and the action library."""

    budget: int = described(1_000_000, "Env steps per run; every step any part takes counts.")
    budget_name: str = described("full", "Name of the budget shown in reports (quick / full).")
    observation: Literal["pixels", "symbolic"] = described(
        "pixels",
        "The observation of methods a and b: 'pixels' is crafter's 64x64 RGB image with a CNN "
        "(the published baselines' protocol); 'symbolic' the one-hot view with an MLP (a second "
        "protocol, never set beside pixel anchors). Methods c and d take theirs from the graph "
        "context's 'observation' (default 'symbolic').",
    )
    seeds: list[int] = field(
        default_factory=lambda: [0],
        metadata={"description": "Run seeds; one run per method and seed."},
    )
    env_seed_stride: int = described(
        ENV_SEED_STRIDE, "Run seed s trains on env seeds s * stride + i (disjoint per seed)."
    )
    methods: list[str] = field(
        default_factory=lambda: ["a", "b", "r"],
        metadata={"description": "Methods to run: a, b, c, d, r."},
    )
    episode_length: int = described(10_000, "Env steps per episode (Crafter's standard 10,000).")
    library: str | None = described(None, "Action-library directory for methods b and r.")
    library_origin: str = described("", "Where the library comes from (shown in every table).")
    code_actions: list[str] = field(
        default_factory=list,
        metadata={"description": "Library code actions used; all of them when empty."},
    )
    algo: Literal["auto", "ppo", "maskable_ppo"] = described(
        "auto",
        "Algorithm of a and b, the same for both: 'auto' = MaskablePPO when a code action of "
        "b defines `available` (a then runs it with an all-true mask), else PPO.",
    )
    n_envs: int = described(8, "Envs per PPO run (workers for b).")
    n_steps: int = described(256, "PPO rollout length per env.")
    checkpoint_every: int = described(
        50_000, "Env steps between resumable checkpoints (policy and episode log) of a run."
    )
    privileged: bool = described(False, "Let code actions read the full map (reported).")
    code_action_max_steps: int = described(300, "Env-step budget of one code-action call.")
    executor: Literal["local", "ray"] = described(
        "local", "Where the runs ran: 'local' one after another, 'ray' at once as Ray tasks."
    )
    graph_task: str = described("crafter:score", "Task of the graph runs (methods c and d).")
    graph_context: dict[str, Any] = field(
        default_factory=dict,
        metadata={"description": "Extra Context fields of the graph runs (models, loops)."},
    )

    def env_seed(self, seed: int) -> int:
        """The first env seed of run seed `seed`."""
        return seed * self.env_seed_stride

    def validate(self) -> None:
        """Raise ValueError on a config no run can follow."""
        unknown = [m for m in self.methods if m not in METHODS]
        if unknown:
            raise ValueError(f"unknown methods {unknown}; choose from {sorted(METHODS)}")
        if self.observation not in OBSERVATIONS:
            raise ValueError(f"observation must be one of {sorted(OBSERVATIONS)}")
        if any(s < 0 for s in self.seeds) or len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"seeds must be distinct and non-negative, not {self.seeds}")
        if self.n_envs > self.env_seed_stride // 100:
            raise ValueError("env_seed_stride leaves too little room for resumed attempts")
        if self.budget < 1:
            raise ValueError("the budget must be at least one env step")

"""MineDojo adapter: real `minedojo` calls; needs MineDojo's Minecraft simulator (JDK 8)."""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym

from rlgpt.envs.base import Predicate, SkillSpec, TaskSpec, UnknownTaskError

# A few of MineDojo's programmatic task ids, with the inventory item that solves them.
_TASKS: dict[str, tuple[str, str, int]] = {
    "minedojo:harvest_log": ("harvest_1_log", "log", 1),
    "minedojo:harvest_milk": ("harvest_milk", "milk_bucket", 1),
    "minedojo:harvest_wool": ("harvest_wool_with_shears_and_sheep", "wool", 1),
    "minedojo:harvest_iron_ore": ("harvest_1_iron_ore", "iron_ore", 1),
    "minedojo:harvest_diamond": ("harvest_1_diamond", "diamond", 1),
}
_MISSING = (
    "MineDojo is not available: it needs the `minedojo` package (extra `rlgpt[minedojo]`) and "
    "its Minecraft simulator, which requires JDK 8 and a Gradle build that downloads "
    "Minecraft. Install those, or use the `crafter` env."
)


@dataclass(frozen=True)
class MineDojoConfig:
    """Settings of one MineDojo env."""

    task: str = field(
        default="minedojo:harvest_log", metadata={"description": "Task name (minedojo:...)."}
    )
    image_size: tuple[int, int] = field(
        default=(160, 256), metadata={"description": "RGB observation size (height, width)."}
    )
    seed: int | None = field(default=None, metadata={"description": "World seed."})


class MineDojoAdapter:
    """The MineDojo plugin (entry point `rlgpt.envs: minedojo`)."""

    name = "minedojo"
    config_class = MineDojoConfig

    def tasks(self) -> list[str]:
        """The supported task names."""
        return list(_TASKS)

    def task(self, name: str) -> TaskSpec:
        """The task of that name; raises UnknownTaskError listing the valid names."""
        if name not in _TASKS:
            raise UnknownTaskError(name, list(_TASKS))
        task_id, item, count = _TASKS[name]
        return TaskSpec(
            name=name,
            env=self.name,
            predicates=(Predicate(kind="inventory", name=item, at_least=count),),
            description=f"MineDojo task {task_id}: obtain {count} {item}.",
        )

    def primitive_actions(self) -> list[str]:
        """MineDojo's MultiDiscrete action heads (the env's own action space)."""
        return [
            "move",
            "strafe",
            "jump_sneak_sprint",
            "camera_pitch",
            "camera_yaw",
            "functional",
            "craft_argument",
            "inventory_argument",
        ]

    def make_env(self, config: Any = None) -> gym.Env[Any, Any]:
        """`minedojo.make(task_id=..., image_size=...)`; raises RuntimeError without MineDojo."""
        cfg = config or MineDojoConfig()
        if cfg.task not in _TASKS:
            raise UnknownTaskError(cfg.task, list(_TASKS))
        try:
            minedojo = importlib.import_module("minedojo")
        except ImportError as err:
            raise RuntimeError(_MISSING) from err
        kwargs: dict[str, Any] = {"task_id": _TASKS[cfg.task][0], "image_size": cfg.image_size}
        if cfg.seed is not None:
            kwargs["world_seed"] = cfg.seed
        try:
            env: gym.Env[Any, Any] = minedojo.make(**kwargs)
        except Exception as err:  # the simulator fails to build or launch without JDK 8
            raise RuntimeError(f"{_MISSING} ({type(err).__name__}: {err})") from err
        return env

    def manual(self) -> str:
        """A pointer to MineDojo's own documentation of its tasks."""
        return (
            "MINEDOJO: Minecraft through MineDojo. Observations are RGB frames plus inventory; "
            "actions are MineDojo's MultiDiscrete heads. Tasks: "
            + ", ".join(f"{k} ({v[0]})" for k, v in _TASKS.items())
        )

    def skill_specs(self) -> list[SkillSpec]:
        """No code-action skill API exists for MineDojo yet."""
        return []

    def vocabulary(self) -> dict[str, list[str]]:
        """Items named by the tasks."""
        return {"items": sorted({v[1] for v in _TASKS.values()}), "targets": [], "achievements": []}

"""MineDojo adapter: real `minedojo` calls; needs MineDojo's Minecraft simulator (JDK 8)."""

from __future__ import annotations

import importlib
import importlib.util
import shutil
from collections.abc import Callable, Mapping
from typing import Any

import gymnasium as gym

from rlgpt.envs.base import EnvSettings, Predicate, SkillSpec, TaskSpec, UnknownTaskError

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


#: MineDojo's RGB observation size (height, width).
IMAGE_SIZE: tuple[int, int] = (160, 256)


class MineDojoAdapter:
    """The MineDojo plugin (entry point `rlgpt.envs: minedojo`)."""

    name = "minedojo"

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

    def unavailable(self) -> str | None:
        """Why MineDojo cannot run here (no `minedojo` package, no Java), or None."""
        if importlib.util.find_spec("minedojo") is None:
            return _MISSING
        if shutil.which("java") is None:
            return f"{_MISSING} (no `java` on PATH)"
        return None

    def make_env(self, task: TaskSpec, settings: EnvSettings) -> gym.Env[Any, Any]:
        """`minedojo.make(task_id=...)`; raises RuntimeError without MineDojo's simulator."""
        if task.name not in _TASKS:
            raise UnknownTaskError(task.name, list(_TASKS))
        try:
            minedojo = importlib.import_module("minedojo")
        except ImportError as err:
            raise RuntimeError(_MISSING) from err
        try:
            env: gym.Env[Any, Any] = minedojo.make(
                task_id=_TASKS[task.name][0], image_size=IMAGE_SIZE
            )
        except Exception as err:  # the simulator fails to build or launch without JDK 8
            raise RuntimeError(f"{_MISSING} ({type(err).__name__}: {err})") from err
        return env

    def make_skill_api(self, env: Any, step: Callable[[int], Any] | None, max_steps: int) -> Any:
        """No skill API exists for MineDojo yet: code actions cannot run."""
        raise RuntimeError("MineDojo has no skill API for code actions; use RL sub-actions")

    def achievements(self) -> list[str]:
        """MineDojo's programmatic tasks report no achievements."""
        return []

    def score(self, rates: Mapping[str, float]) -> float:
        """No all-achievement score: always 0."""
        return 0.0

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

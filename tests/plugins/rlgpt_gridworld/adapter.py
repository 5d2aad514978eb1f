"""The grid-world env plugin (entry point `rlgpt.envs: gridworld`)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from rlgpt.envs.base import EnvSettings, Predicate, SkillSpec, TaskSpec, UnknownTaskError

from .skills import GridSkills, skill_specs
from .world import ACHIEVEMENTS, ACTIONS, CELLS, HEIGHT, ITEMS, RULES, TARGETS, WIDTH, GridWorldEnv

SCORE_TASK = "gridworld:score"


def _tasks() -> dict[str, TaskSpec]:
    specs = {
        f"gridworld:{a}": TaskSpec(
            name=f"gridworld:{a}",
            env="gridworld",
            predicates=(Predicate(kind="achievement", name=a),),
            description=f"Unlock the achievement {a}.",
        )
        for a in ACHIEVEMENTS
    }
    specs[SCORE_TASK] = TaskSpec(
        name=SCORE_TASK,
        env="gridworld",
        predicates=(),
        description="Unlock as many of the grid world's achievements as possible.",
        score=True,
    )
    return specs


_TASKS = _tasks()


def _amounts(counts: Mapping[str, int]) -> str:
    return ", ".join(f"{n} {item}" for item, n in counts.items()) or "nothing"


class GridWorldAdapter:
    """A tiny grid world: a key, a locked door, a gem behind it."""

    name = "gridworld"

    def tasks(self) -> list[str]:
        """One task per achievement, and the score task."""
        return list(_TASKS)

    def task(self, name: str) -> TaskSpec:
        """The task of that name; raises UnknownTaskError listing the valid names."""
        if name not in _TASKS:
            raise UnknownTaskError(name, list(_TASKS))
        return _TASKS[name]

    def primitive_actions(self) -> list[str]:
        """The six primitive actions, in index order."""
        return list(ACTIONS)

    def make_env(self, task: TaskSpec, settings: EnvSettings) -> GridWorldEnv:
        """A GridWorldEnv of one of the grid world's tasks."""
        return GridWorldEnv(self.task(task.name), settings)

    def make_skill_api(self, env: Any, step: Callable[[int], Any] | None, max_steps: int) -> Any:
        """The grid world's skill API over a GridWorldEnv."""
        return GridSkills(env, step=step, max_steps=max_steps)

    def achievements(self) -> list[str]:
        """collect_key, open_door, collect_gem."""
        return list(ACHIEVEMENTS)

    def score(self, rates: Mapping[str, float]) -> float:
        """The mean achievement success rate, in percent."""
        unknown = sorted(set(rates) - set(ACHIEVEMENTS))
        if unknown:
            raise ValueError(f"unknown achievements {unknown}")
        return 100.0 * sum(float(rates.get(a, 0.0)) for a in ACHIEVEMENTS) / len(ACHIEVEMENTS)

    def manual(self) -> str:
        """The manual, written from the world's rules table."""
        lines = [
            "GRID WORLD MANUAL (generated from the game's rules)",
            f"World: {WIDTH}x{HEIGHT} cells, two rooms split by a wall with one locked door. "
            "Moving into a cell you cannot enter only turns you to face it; 'do' acts on the "
            "facing cell. You see 2 cells around you and remember what you saw.",
            f"Cells: {', '.join(CELLS)}. Inventory items: {', '.join(ITEMS)}.",
            f"Actions: {', '.join(ACTIONS)}.",
            "Achievements, and how each is unlocked:",
        ]
        for cell, needs, gives, leaves, achievement in RULES:
            lines.append(
                f"- {achievement}: face a {cell} and do (needs {_amounts(needs)}; gives "
                f"{_amounts(gives)}; leaves {leaves})"
            )
        lines.append("The key lies in your room; the gem lies behind the door.")
        return "\n".join(lines)

    def skill_specs(self) -> list[SkillSpec]:
        """The skill API that code actions may call."""
        return skill_specs()

    def vocabulary(self) -> dict[str, list[str]]:
        """Targets, items, achievements and actions."""
        return {
            "targets": list(TARGETS),
            "items": list(ITEMS),
            "achievements": list(ACHIEVEMENTS),
            "actions": list(ACTIONS),
        }

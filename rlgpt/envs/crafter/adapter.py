"""The Crafter plugin: tasks, env, skill API and manual of the default environment."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from rlgpt.envs.base import EnvSettings, Predicate, SkillSpec, TaskSpec
from rlgpt.envs.crafter.constants import ACHIEVEMENTS, ACTIONS, INITIAL_INVENTORY, vocabulary
from rlgpt.envs.crafter.env import CrafterConfig, CrafterEnv
from rlgpt.envs.crafter.tasks import _TASKS, crafter_score, get_task


class CrafterAdapter:
    """The Crafter plugin (entry point `rlgpt.envs: crafter`)."""

    name = "crafter"

    def tasks(self) -> list[str]:
        """All task names: `crafter:<achievement>` for the 22 achievements and `crafter:score`."""
        return list(_TASKS)

    def task(self, name: str) -> TaskSpec:
        """The task of that name; raises UnknownTaskError listing the valid names."""
        return get_task(name)

    def primitive_actions(self) -> list[str]:
        """Crafter's 17 actions in index order."""
        return list(ACTIONS)

    def make_env(self, task: TaskSpec, settings: EnvSettings) -> CrafterEnv | Any:
        """A CrafterEnv of one of Crafter's own tasks (a `CompiledCrafterEnv`, its drop-in on
        the compiled kernels, with `settings.compiled`)."""
        if settings.compiled:
            from rlgpt.envs.crafter.compiled_gym import CompiledCrafterEnv

            return CompiledCrafterEnv(_config(task, settings))
        return CrafterEnv(_config(task, settings))

    def make_vec_env(self, task: TaskSpec, settings: EnvSettings, n_envs: int) -> Any:
        """`n_envs` envs stepped (and drawn) together by the compiled Crafter kernels."""
        from rlgpt.envs.crafter.vec_env import CompiledCrafterVecEnv

        return CompiledCrafterVecEnv(_config(task, settings), n_envs)

    def make_skill_api(self, env: Any, step: Callable[[int], Any] | None, max_steps: int) -> Any:
        """The Crafter skill API over a CrafterEnv."""
        from rlgpt.envs.crafter.skills.api import SkillAPI

        return SkillAPI(env, step=step, max_steps=max_steps)

    def achievements(self) -> list[str]:
        """Crafter's 22 achievements."""
        return list(ACHIEVEMENTS)

    def score(self, rates: Mapping[str, float]) -> float:
        """The Crafter score (geometric mean of 1 + success percentages, minus 1)."""
        return crafter_score(rates)

    def manual(self) -> str:
        """The game manual generated from crafter's data.yaml."""
        from rlgpt.envs.crafter.manual import game_manual

        return game_manual()

    def skill_specs(self) -> list[SkillSpec]:
        """The skill API that code actions may call."""
        from rlgpt.envs.crafter.skills.api import skill_specs

        return skill_specs()

    def vocabulary(self) -> dict[str, list[str]]:
        """Names code may mention, by kind."""
        return vocabulary()

    def initial_inventory(self) -> dict[str, int]:
        """What the player holds at the start of every episode (crafter's rules file)."""
        return dict(INITIAL_INVENTORY)

    def plan_problems(
        self, steps: Sequence[tuple[str, Predicate]]
    ) -> tuple[list[str], dict[str, Predicate]]:
        """What the manual's rules say a plan lacks, and the checks its collecting steps
        need (see `rlgpt.envs.crafter.manual.plan_problems`)."""
        from rlgpt.envs.crafter.manual import plan_problems

        return plan_problems(steps)


def _config(task: TaskSpec, settings: EnvSettings) -> CrafterConfig:
    """The CrafterConfig of one of Crafter's own tasks under these settings."""
    return CrafterConfig(
        task=get_task(task.name).name,
        observation=settings.observation,
        pixel_size=settings.pixel_size,
        episode_length=settings.episode_length,
        privileged=settings.privileged,
        terminate_on_success=settings.terminate_on_success,
        shaping=settings.shaping,
        prefetch_worlds=settings.prefetch_worlds,
        skill_memory=settings.skill_memory,
    )

"""What the skill API and training read from a Crafter env, shared by both backends.

`CrafterEnv` (crafter's Python objects) and `CompiledCrafterEnv` (the compiled kernels)
provide the raw accessors (position, facing, inventory, achievements, the 9x7 layers); the
views built on them (the semantic view, the facing cell's name, the map of seen cells and
the step info) are defined once here.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from rlgpt.envs.crafter.config import CrafterConfig
from rlgpt.envs.crafter.constants import ACTIONS, ID_TO_NAME, STATUS_ITEMS, VIEW
from rlgpt.envs.crafter.skills.memory import MemoryMap


class CrafterViews:
    """The views of a Crafter env built from its raw accessors (see the module docstring)."""

    config: CrafterConfig
    _memory: MemoryMap
    _view_cache: tuple[np.ndarray, np.ndarray] | None

    # Raw accessors each backend provides.
    @property
    def player_pos(self) -> tuple[int, int]:
        """The player's world position `(x, y)`."""
        raise NotImplementedError

    @property
    def facing(self) -> tuple[int, int]:
        """The direction `(dx, dy)` the player faces; `(0, -1)` is up."""
        raise NotImplementedError

    @property
    def inventory(self) -> dict[str, int]:
        """A copy of the inventory (includes health, food, drink and energy)."""
        raise NotImplementedError

    @property
    def achievements(self) -> dict[str, int]:
        """A copy of the achievement counters of this episode."""
        raise NotImplementedError

    @property
    def task_success(self) -> bool:
        """Whether the env's task was solved in this episode."""
        raise NotImplementedError

    @property
    def area(self) -> tuple[int, int]:
        """World size `(width, height)`."""
        return int(self.config.area[0]), int(self.config.area[1])

    def _require_started(self) -> None:
        """Raise RuntimeError before the first reset."""
        raise NotImplementedError

    def _region_layers(self, x0: int, x1: int, y0: int, y1: int) -> tuple[np.ndarray, np.ndarray]:
        """Material ids and object ids (0 = none) of world cells `[x0:x1, y0:y1]`, int16."""
        raise NotImplementedError

    # Views.
    def local_layers(self) -> tuple[np.ndarray, np.ndarray]:
        """Material ids and object ids (0 = none) of the 9x7 view, each shaped (9, 7), `[x, y]`.

        Cell `[i, j]` is world cell `(px + i - 4, py + j - 3)`; cells outside the world are 0.
        Do not modify the returned arrays.
        """
        if self._view_cache is None:
            px, py = self.player_pos
            w, h = self.area
            x0, y0 = px - VIEW[0] // 2, py - VIEW[1] // 2
            ax0, ax1, ay0, ay1 = max(x0, 0), min(x0 + VIEW[0], w), max(y0, 0), min(y0 + VIEW[1], h)
            mats = np.zeros(VIEW, np.int16)
            objs = np.zeros(VIEW, np.int16)
            inside = (slice(ax0 - x0, ax1 - x0), slice(ay0 - y0, ay1 - y0))
            mats[inside], objs[inside] = self._region_layers(ax0, ax1, ay0, ay1)
            self._view_cache = (mats, objs)
        return self._view_cache

    def full_map(self) -> tuple[np.ndarray, np.ndarray]:
        """Material and object ids of the whole world, `[x, y]`; only when privileged.

        Raises:
            PermissionError: when the env was not built with `privileged=True`.
        """
        if not self.config.privileged:
            raise PermissionError(
                "full_map() needs CrafterConfig(privileged=True); by default skills see only "
                "the cells the agent has seen"
            )
        self._require_started()
        w, h = self.area
        return self._region_layers(0, w, 0, h)

    @property
    def action_names(self) -> list[str]:
        """Names of the primitive actions in index order."""
        return list(ACTIONS)

    @property
    def status(self) -> dict[str, int]:
        """Health, food, drink and energy."""
        inventory = self.inventory
        return {k: inventory[k] for k in STATUS_ITEMS}

    @property
    def privileged(self) -> bool:
        """Whether full_map() is allowed."""
        return self.config.privileged

    def local_view(self) -> np.ndarray:
        """Semantic ids (names in `id_to_name`) of the 9x7 view, shape (9, 7), indexed `[x, y]`.

        An object (player, creature, plant) hides the material under it, as on screen.
        """
        mats, objs = self.local_layers()
        return np.where(objs > 0, objs, mats)

    def facing_name(self) -> str:
        """The name of what is in the facing cell ('none' outside the world)."""
        mats, objs = self.local_layers()
        fx, fy = self.facing
        i, j = VIEW[0] // 2 + fx, VIEW[1] // 2 + fy
        return ID_TO_NAME[int(objs[i, j] or mats[i, j])]

    @property
    def memory(self) -> Any:
        """The map of what the agent has seen this episode (a `MemoryMap`).

        It is built only from the 9x7 views of this episode, updated after every reset and step
        whoever takes the step (a policy's primitive action or a code action).
        """
        if not self.config.skill_memory:
            raise RuntimeError("this env was built with skill_memory=False: skills cannot run")
        return self._memory

    def _update_memory(self) -> None:
        mats, objs = self.local_layers()
        self._memory.update(self.player_pos, mats, objs)

    def _info(self, dead: bool) -> dict[str, Any]:
        inventory = self.inventory
        return {
            "inventory": inventory,
            "achievements": self.achievements,
            "discount": 1.0 - float(dead),
            "player_pos": self.player_pos,
            "task_success": self.task_success,
            "env_steps": 1,
            "health": inventory["health"],
        }

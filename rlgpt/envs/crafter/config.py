"""Settings of one Crafter env."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from rlgpt.envs.crafter.constants import ITEMS, SCORE_TASK


def _described(default: Any, description: str) -> Any:
    return field(default=default, metadata={"description": description})


@dataclass(frozen=True)
class CrafterConfig:
    """Settings of one Crafter env."""

    task: str = _described(SCORE_TASK, "Task name: crafter:<achievement> or crafter:score.")
    observation: Literal["symbolic", "pixels"] = _described(
        "symbolic", "'symbolic': flat one-hot local view + inventory; 'pixels': RGB image."
    )
    pixel_size: int = _described(64, "Side of the square RGB observation / render, in pixels.")
    episode_length: int = _described(10000, "Steps after which the episode is truncated.")
    privileged: bool = _described(
        False, "Allow full_map() (the whole world's semantics) for skills; off = only seen cells."
    )
    terminate_on_success: bool = _described(
        True, "End the episode (terminated) once an achievement task is solved."
    )
    shaping: tuple[tuple[str, float], ...] = _described(
        (), "(inventory item, reward per unit gained); each unit is paid once per episode."
    )
    area: tuple[int, int] = _described((64, 64), "World size in cells (crafter's default 64x64).")
    prefetch_worlds: bool = _described(
        False,
        "Generate the next episode's world in a helper process while this one runs (the same "
        "worlds; resets get ~10x cheaper). For envs stepped in the training process.",
    )

    skill_memory: bool = _described(
        True,
        "Update the map of seen cells that skills read after every step; off for plain RL "
        "(no code action), where nothing reads it.",
    )

    def __post_init__(self) -> None:
        if self.observation not in ("symbolic", "pixels"):
            raise ValueError(
                f"observation must be 'symbolic' or 'pixels', not {self.observation!r}"
            )
        if self.pixel_size < 9:
            raise ValueError("pixel_size must be at least 9")
        if self.episode_length < 1:
            raise ValueError("episode_length must be positive")
        for item, _ in self.shaping:
            if item not in ITEMS:
                raise ValueError(f"shaping item {item!r} is not an inventory item: {ITEMS}")

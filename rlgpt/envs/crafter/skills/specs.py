"""What the Crafter skill API offers: its targets, placing and making rules, and skill specs."""

from __future__ import annotations

from typing import Any

from crafter import constants

from rlgpt.envs.base import SkillParam, SkillSpec
from rlgpt.envs.crafter.constants import ACTIONS, ITEMS, vocabulary

TARGETS: tuple[str, ...] = tuple(vocabulary()["targets"])
PLACE_RULES: dict[str, dict[str, Any]] = dict(constants.place)
MAKE_RULES: dict[str, dict[str, Any]] = dict(constants.make)


def build_skill_specs(api: type) -> list[SkillSpec]:
    """Descriptions of the public methods of `api` (the SkillAPI class), in prompt order.

    A spec's description is the first line of the method's docstring.
    """
    targets = SkillParam("name", "str", choices=TARGETS)
    item = SkillParam("item", "str", choices=tuple(ITEMS))

    def spec(
        name: str,
        params: tuple[SkillParam, ...],
        returns: Any,
        kind: Any,
        steps_env: bool = False,
    ) -> SkillSpec:
        method = getattr(api, name)
        doc = (method.__doc__ or "").strip().splitlines()[0]
        return SkillSpec(method.__name__, params, returns, doc, kind, steps_env)

    return [
        spec("inventory", (), "dict", "perception"),
        spec("count", (item,), "int", "perception"),
        spec("has", (item, SkillParam("n", "int", default=1)), "bool", "perception"),
        spec("status", (), "dict", "perception"),
        spec("position", (), "tuple", "perception"),
        spec("facing", (), "str", "perception"),
        spec("nearby", (SkillParam("radius", "int", default=4),), "dict", "perception"),
        spec("seen", (targets,), "bool", "perception"),
        spec("nearest", (targets,), "tuple", "perception"),
        spec("achievements", (), "list", "perception"),
        spec(
            "move_to",
            (targets, SkillParam("max_steps", "int", default=100)),
            "bool",
            "navigation",
            True,
        ),
        spec("explore", (SkillParam("steps", "int", default=20),), "bool", "navigation", True),
        spec("face", (targets,), "bool", "navigation", True),
        spec("do", (), "bool", "interaction", True),
        spec(
            "place",
            (SkillParam("item", "str", choices=tuple(PLACE_RULES)),),
            "bool",
            "interaction",
            True,
        ),
        spec(
            "make",
            (SkillParam("item", "str", choices=tuple(MAKE_RULES)),),
            "bool",
            "interaction",
            True,
        ),
        spec("sleep", (SkillParam("max_steps", "int", default=200),), "bool", "interaction", True),
        spec("noop", (), "bool", "interaction", True),
        spec(
            "act",
            (SkillParam("primitive_name", "str", choices=tuple(ACTIONS)),),
            "bool",
            "interaction",
            True,
        ),
    ]

"""Crafter's names and ids as rlgpt uses them, read from crafter's own data."""

from __future__ import annotations

from crafter import constants, objects

ACTIONS: list[str] = list(constants.actions)
MATERIALS: list[str] = list(constants.materials)
ITEMS: list[str] = list(constants.items)
#: What the player holds at the start of an episode, from crafter's rules file.
INITIAL_INVENTORY: dict[str, int] = {name: int(i["initial"]) for name, i in constants.items.items()}
ACHIEVEMENTS: list[str] = list(constants.achievements)
CREATURES: list[str] = ["cow", "zombie", "skeleton", "arrow", "plant"]
# Same ids as crafter's own semantic map: 0 = outside the world, then materials, then objects.
ID_TO_NAME: list[str] = ["none", *MATERIALS, "player", *CREATURES]
NAME_TO_ID: dict[str, int] = {name: i for i, name in enumerate(ID_TO_NAME)}
OBJECT_IDS: dict[type, int] = {
    objects.Player: NAME_TO_ID["player"],
    objects.Cow: NAME_TO_ID["cow"],
    objects.Zombie: NAME_TO_ID["zombie"],
    objects.Skeleton: NAME_TO_ID["skeleton"],
    objects.Arrow: NAME_TO_ID["arrow"],
    objects.Plant: NAME_TO_ID["plant"],
}
STATUS_ITEMS: tuple[str, ...] = ("health", "food", "drink", "energy")
DIRECTIONS: dict[tuple[int, int], str] = {
    (-1, 0): "left",
    (1, 0): "right",
    (0, -1): "up",
    (0, 1): "down",
}
VIEW: tuple[int, int] = (9, 7)  # crafter's local view: 9 wide, 7 high (two rows show items)

SCORE_TASK = "crafter:score"


def vocabulary() -> dict[str, list[str]]:
    """Targets, items, placeable/makeable things, achievements and actions of Crafter."""
    return {
        "targets": [*MATERIALS, *[c for c in CREATURES if c != "arrow"]],
        "items": list(ITEMS),
        "placeable": list(constants.place),
        "makeable": list(constants.make),
        "achievements": list(ACHIEVEMENTS),
        "actions": list(ACTIONS),
    }

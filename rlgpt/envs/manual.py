"""A short Crafter game manual generated from crafter's own rules file (data.yaml)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from crafter import constants


def _amounts(uses: Mapping[str, int]) -> str:
    return ", ".join(f"{n} {item}" for item, n in uses.items()) or "nothing"


def game_manual(rules: Mapping[str, Any] | None = None) -> str:
    """The manual text, built from `rules` (crafter's data.yaml contents by default)."""
    data: Mapping[str, Any] = rules if rules is not None else vars(constants)
    items: Mapping[str, Any] = data["items"]
    status = [k for k, v in items.items() if v["initial"] > 0]
    lines = [
        "CRAFTER MANUAL (generated from the game's rules)",
        "World: a 2D grid seen from above; you see a 9x7 window around you. Moving into a "
        "cell you cannot enter only turns you to face it; 'do' and 'place' act on the "
        "facing cell.",
        f"Actions: {', '.join(data['actions'])}.",
        f"Walkable ground: {', '.join(data['walkable'])}.",
        f"Status (0-{items[status[0]]['max']}, start full): {', '.join(status)}; health "
        "drops when food, drink or energy reach 0 and you die at health 0.",
        f"Inventory items (max {max(v['max'] for v in items.values())} each): "
        f"{', '.join(k for k in items if k not in status)}.",
        "Collect (face the material, use 'do'):",
    ]
    for material, info in data["collect"].items():
        need = info["require"]
        chance = info.get("probability", 1)
        lines.append(
            f"- {material}: needs {_amounts(need) if need else 'nothing'} in inventory; gives "
            f"{_amounts(info['receive'])}"
            + (f" with chance {chance:g}" if chance < 1 else "")
            + (f"; leaves {info['leaves']}" if info["leaves"] != material else "")
        )
    lines.append("Place (action place_<name>, on the facing cell):")
    for name, info in data["place"].items():
        lines.append(f"- {name}: uses {_amounts(info['uses'])}; on {', '.join(info['where'])}")
    lines.append("Make (action make_<name>, needs the listed things within 1 cell):")
    for name, info in data["make"].items():
        lines.append(
            f"- {name}: uses {_amounts(info['uses'])}; nearby {', '.join(info['nearby'])}; "
            f"gives {info['gives']}"
        )
    lines.append(
        f"Achievements ({len(data['achievements'])}, each counts once per episode): "
        f"{', '.join(data['achievements'])}."
    )
    return "\n".join(lines)

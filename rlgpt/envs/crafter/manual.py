"""A short Crafter game manual generated from crafter's own rules file (data.yaml)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from crafter import constants

from rlgpt.envs.base import Predicate


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
        f"Achievements ({len(data['achievements'])}, each counts once per episode), and how "
        "each is unlocked:"
    )
    lines.extend(f"- {line}" for line in achievement_lines(data))
    return "\n".join(lines)


#: What the rules file does not say: how the creatures, sleeping and plants behave (from
#: the game's description), for the achievements they unlock.
_BEHAVIOUR = {
    "collect_drink": "face water and do (drink +1)",
    "eat_cow": "face a cow and do, several times (cows wander)",
    "defeat_zombie": "face a zombie and do until it dies (zombies come near on grass, "
    "more at night)",
    "defeat_skeleton": "face a skeleton and do until it dies (skeletons live in dark tunnels)",
    "wake_up": "sleep when energy is low and wake up when it is restored",
    "eat_plant": "place a sapling, wait until it ripens, then face it and do",
}


def achievement_lines(data: Mapping[str, Any]) -> list[str]:
    """One line per achievement: what unlocks it and what that uses or needs."""
    receive = {
        item: material for material, info in data["collect"].items() for item in info["receive"]
    }
    lines = []
    for name in data["achievements"]:
        verb, _, obj = name.partition("_")
        if name in _BEHAVIOUR:
            text = _BEHAVIOUR[name]
        elif verb == "collect" and obj in receive:
            need = data["collect"][receive[obj]]["require"]
            text = f"face {receive[obj]} and do" + (f" (needs {_amounts(need)})" if need else "")
        elif verb == "place" and obj in data["place"]:
            info = data["place"][obj]
            text = f"place {obj} (uses {_amounts(info['uses'])}; on {', '.join(info['where'])})"
        elif verb == "make" and obj in data["make"]:
            info = data["make"][obj]
            text = f"make {obj} (uses {_amounts(info['uses'])}; nearby {', '.join(info['nearby'])})"
        else:
            continue
        lines.append(f"{name}: {text}")
    return lines


def plan_problems(
    steps: Sequence[tuple[str, Predicate]], rules: Mapping[str, Any] | None = None
) -> tuple[list[str], dict[str, Predicate]]:
    """What the manual's rules say a plan lacks: a step that uses or needs something no
    earlier step provides. `steps` are (id, done-predicate) in plan order.

    The plan's inventory is followed step by step: collecting raises an item to the
    step's count, placing and making use up what the rules say, a placed thing counts as
    nearby from then on. Only collecting, placing and making are checked.

    Returns:
        The problems in words, and the check each step needs where its count is wrong
        (step id -> inventory predicate): a collecting step that collects too few for what
        the later steps use, or a step that asks for more than the inventory can hold.
    """
    data: Mapping[str, Any] = rules if rules is not None else vars(constants)
    source = {item: m for m, info in data["collect"].items() for item in info["receive"]}
    held: dict[str, int] = {}
    placed: set[str] = set()
    collector: dict[str, tuple[str, int]] = {}  # item -> (step id, count it collects to)
    short: dict[tuple[str, str], int] = {}  # (collecting step, item) -> how many more
    collected: dict[str, int] = {}  # collecting step -> the count it collects to
    problems: list[str] = []

    def provides(pred: Predicate) -> str:
        verb, _, obj = pred.name.partition("_")
        if pred.kind == "inventory":
            return pred.name
        return obj if verb in ("collect", "make") else f"placed {obj}" if verb == "place" else ""

    later = [(step_id, provides(pred)) for step_id, pred in steps]

    def how_to_get(item: str, at: str, placed_thing: bool = False) -> str:
        """The fix for a missing item: the later step that provides it, moved, or a new one."""
        wanted = f"placed {item}" if placed_thing else item
        ids = [sid for sid, _ in later]
        after = [sid for sid, thing in later[ids.index(at) + 1 :] if thing == wanted]
        if after:
            # Worded so a model does not take it for a new step's name ("move_step_...").
            return f"the later step {after[0]}, if it comes before {at}"
        if placed_thing:
            return f"place_{item}"
        if item in data["make"]:
            return f"make_{item}"
        return f"collect_{item}" if item in source else item

    def use(step_id: str, what: str, uses: Mapping[str, int]) -> None:
        for item, n in uses.items():
            have = held.get(item, 0)
            if have < n and item in collector:
                key = (collector[item][0], item)
                short[key] = short.get(key, 0) + n - have
            elif have < n:
                problems.append(
                    f"{step_id}: {what} uses {n} {item}, but no step before it gets {item}; "
                    f"add one that does ({how_to_get(item, step_id)}, inventory {item} >= {n})"
                )
            held[item] = max(0, have - n)

    for step_id, pred in steps:
        verb, _, obj = pred.name.partition("_")
        collects_item = pred.kind == "inventory" and pred.name in source
        collects = pred.kind == "achievement" and verb == "collect" and obj in source
        if collects_item or collects:
            item = pred.name if pred.kind == "inventory" else obj
            need = data["collect"][source[item]]["require"]
            lack = [k for k, n in need.items() if held.get(k, 0) < n]
            if lack:
                problems.append(
                    f"{step_id}: collecting {item} needs "
                    f"{', '.join(f'{need[k]} {k}' for k in lack)} in the inventory, which no "
                    f"earlier step provides ({', '.join(how_to_get(k, step_id) for k in lack)})"
                )
            count = pred.at_least if pred.kind == "inventory" else held.get(item, 0) + 1
            held[item] = max(held.get(item, 0), count)
            collector[item] = (step_id, count)
            collected[step_id] = count
        elif pred.kind == "achievement" and verb == "place" and obj in data["place"]:
            use(step_id, f"placing {obj}", data["place"][obj]["uses"])
            placed.add(obj)
        elif (pred.kind == "achievement" and verb == "make" and obj in data["make"]) or (
            pred.kind == "inventory" and pred.name in data["make"]
        ):
            name = obj if pred.kind == "achievement" else pred.name
            info = data["make"][name]
            far = [n for n in info["nearby"] if n not in placed]
            if far:
                places = ", ".join(how_to_get(n, step_id, placed_thing=True) for n in far)
                problems.append(
                    f"{step_id}: making {name} needs {' and '.join(far)} nearby; place it in "
                    f"an earlier step ({places})"
                )
            use(step_id, f"making {name}", info["uses"])
            held[name] = held.get(name, 0) + int(info["gives"])

    def most(item: str) -> int:
        return int(data["items"].get(item, {}).get("max", 99))

    counts: dict[str, Predicate] = {}
    for step_id, pred in steps:
        # The game caps every count (9 in crafter): a check above the cap never holds.
        if pred.kind == "inventory" and pred.at_least > most(pred.name):
            counts[step_id] = pred.model_copy(update={"at_least": most(pred.name)})
    for (step_id, item), more in short.items():
        need = min(collected[step_id] + more, most(item))
        counts[step_id] = Predicate(kind="inventory", name=item, at_least=need)
    return problems, counts

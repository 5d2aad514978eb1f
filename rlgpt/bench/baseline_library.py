"""A hand-written action library: the learning suite's scripted baseline, named as one.

Its code actions call the skill API only (perception, navigation, single interactions);
they are written by hand, so every table that uses them says "scripted baseline".
"""

from __future__ import annotations

from pathlib import Path

#: The `--library` value that selects this library.
SCRIPTED_BASELINE = "scripted-baseline"
ORIGIN = (
    "scripted baseline (hand-written in rlgpt/bench/baseline_library.py, not produced by the model)"
)


def _reach_and_use(target: str, uses: int) -> str:
    body = "        api.do()\n" * (uses - 1)
    return (
        "def run(api):\n"
        f'    if api.seen("{target}") and api.move_to("{target}", max_steps=30):\n'
        f"{body}"
        "        return api.do()\n"
        "    return api.explore(10)\n"
    )


ACTIONS: dict[str, str] = {
    "gather_tree": _reach_and_use("tree", 1),
    "drink_water": _reach_and_use("water", 1),
    "hunt_cow": _reach_and_use("cow", 3),
    "place_table": 'def run(api):\n    return api.place("table")\n',
    "wander": "def run(api):\n    return api.explore(20)\n",
}


def write_scripted_baseline(root: Path) -> Path:
    """Write the library under `root` (replacing earlier versions) and return `root`."""
    from rlgpt.actions.library import ActionLibrary

    library = ActionLibrary(root)
    for name, source in ACTIONS.items():
        library.add_code(name, source, description="scripted baseline", max_steps=60)
    return root

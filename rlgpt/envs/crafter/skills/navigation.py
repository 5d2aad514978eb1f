"""Breadth-first path-finding on boolean grids indexed `[x, y]`."""

from __future__ import annotations

from collections import deque

import numpy as np

Pos = tuple[int, int]
# Order matters only for ties; it is fixed so that runs are reproducible.
STEPS: tuple[Pos, ...] = ((-1, 0), (1, 0), (0, -1), (0, 1))


def bfs_path(
    passable: np.ndarray, start: Pos, goal: np.ndarray, max_nodes: int = 0
) -> list[Pos] | None:
    """The shortest 4-connected path from `start` to the nearest `goal` cell.

    Args:
        passable: Cells that may be entered, shape (W, H). `start` need not be passable.
        start: The start cell `(x, y)`.
        goal: Goal cells, shape (W, H); a goal cell must also be passable to be entered
            (the start cell counts as reached when it is a goal).
        max_nodes: Stop after expanding this many cells (0 = no limit).

    Returns:
        The cells to walk through, excluding `start` and ending on a goal cell
        (`[]` when `start` is a goal), or None when no goal is reachable.
    """
    width, height = passable.shape
    sx, sy = start
    if not (0 <= sx < width and 0 <= sy < height):
        return None
    goal_flat = goal.ravel()
    s = sx * height + sy
    if goal_flat[s]:
        return []
    open_flat = (passable & ~np.zeros_like(passable)).ravel().tolist()
    goal_list = goal_flat.tolist()
    parent = {s: -1}
    queue = deque([s])
    expanded = 0
    while queue:
        cur = queue.popleft()
        expanded += 1
        if max_nodes and expanded > max_nodes:
            return None
        cx, cy = divmod(cur, height)
        for dx, dy in STEPS:
            nx, ny = cx + dx, cy + dy
            if not (0 <= nx < width and 0 <= ny < height):
                continue
            nxt = nx * height + ny
            if nxt in parent or not open_flat[nxt]:
                continue
            parent[nxt] = cur
            if goal_list[nxt]:
                path = [nxt]
                while parent[path[-1]] != s:
                    path.append(parent[path[-1]])
                return [divmod(i, height) for i in reversed(path)]
            queue.append(nxt)
    return None


def neighbours_of(mask: np.ndarray) -> np.ndarray:
    """Cells 4-adjacent to any True cell of `mask`."""
    out = np.zeros_like(mask, dtype=bool)
    out[1:, :] |= mask[:-1, :]
    out[:-1, :] |= mask[1:, :]
    out[:, 1:] |= mask[:, :-1]
    out[:, :-1] |= mask[:, 1:]
    return out

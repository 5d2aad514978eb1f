"""crafter's RGB frame drawn by a numba kernel from the compiled state, pixel for pixel.

The frame is `crafter.Env.render()`: the 9x7 local view (material textures, then objects
with alpha blending, daylight with night noise and its colour and tint, the grey of sleep)
above two rows of inventory items with their counts. Textures come from crafter's own
assets, resized as crafter resizes them; the floating-point steps (float32 alpha blending,
float64 light, truncating casts) and Pillow's colour enhancement (grey `L` in fixed point,
float32 blend) are done in the same order, so the frames are equal, not close. Night noise
draws from the env's render stream, as `CrafterEnv` renders with a private stream.
"""

from __future__ import annotations

from typing import NamedTuple

import numba
import numpy as np
from crafter import constants, engine

from rlgpt.envs.crafter.compiled import (
    ARROW,
    COW,
    PLANT,
    PLAYER,
    ZOMBIE,
    State,
    random_double,
)
from rlgpt.envs.crafter.constants import ITEMS, MATERIALS

# Object textures, by index (see `object_texture` in the kernel).
_OBJECT_TEXTURES = (
    "player-left", "player-right", "player-up", "player-down", "player-sleep",
    "cow", "zombie", "skeleton", "arrow-left", "arrow-right", "arrow-up", "arrow-down",
    "plant", "plant-ripe",
)  # fmt: skip
LOCAL_GRID = (9, 7)
ITEM_GRID = (9, 2)


class RenderTables(NamedTuple):
    """Textures, positions and scratch space of the frame kernel, for one pixel size."""

    unit: int
    border: int  # offset of the view in the frame (crafter centres it)
    materials: np.ndarray  # (materials + 1, unit, unit, 3) uint8
    objects: np.ndarray  # (object textures, unit, unit, 4) uint8
    object_alpha: np.ndarray  # (object textures,) bool: blended (RGBA) or copied (RGB)
    items: np.ndarray  # (items, item size, item size, 4) uint8
    item_alpha: np.ndarray  # (items,) bool
    digits: np.ndarray  # (10, digit size, digit size, 4) uint8 (index = count)
    digit_alpha: np.ndarray  # (10,) bool
    item_pos: np.ndarray  # (items, 2) int64 top-left of each item's icon
    digit_pos: np.ndarray  # (items, 2) int64 ... of its count
    vignette: np.ndarray  # (9 unit, 7 unit) float64, crafter's night vignette
    canvas: np.ndarray  # scratch (9 unit, 7 unit, 3) uint8
    light: np.ndarray  # scratch (9 unit, 7 unit, 3) float64
    items_canvas: np.ndarray  # scratch (9 unit, 2 unit, 3) uint8


def _rgba(texture: np.ndarray) -> tuple[np.ndarray, bool]:
    if texture.shape[-1] == 4:
        return texture, True
    return np.concatenate([texture, np.full((*texture.shape[:2], 1), 255, np.uint8)], -1), False


def build_render_tables(pixel_size: int) -> RenderTables:
    """Everything the kernel draws with, for square frames of `pixel_size`."""
    textures = engine.Textures(constants.root / "assets")
    view = np.array((9, 9))
    unit_xy = np.array((pixel_size, pixel_size)) // view
    unit = int(unit_xy[0])
    border = int(((np.array((pixel_size, pixel_size)) - unit_xy * view) // 2)[0])
    materials = np.zeros((len(MATERIALS) + 1, unit, unit, 3), np.uint8)
    for i, name in enumerate(MATERIALS, start=1):
        materials[i] = textures.get(name, unit_xy)[..., :3]
    objects, object_alpha = zip(
        *[_rgba(textures.get(n, unit_xy)) for n in _OBJECT_TEXTURES], strict=True
    )
    item_unit = 0.8 * unit_xy
    digit_unit = 0.6 * unit_xy
    items, item_alpha = zip(*[_rgba(textures.get(n, item_unit)) for n in ITEMS], strict=True)
    # Counts 1..9 (an item at 0 is not drawn); row 0 is never read.
    digits, digit_alpha = zip(
        *[_rgba(textures.get(str(max(n, 1)), digit_unit)) for n in range(10)], strict=True
    )
    grid = np.array(ITEM_GRID)
    item_pos, digit_pos = [], []
    for index in range(len(ITEMS)):
        pos = index % grid[0], index // grid[0]
        item_pos.append((pos * unit_xy + 0.1 * unit_xy).astype(np.int32))
        digit_pos.append((pos * unit_xy + 0.4 * unit_xy).astype(np.int32))
    shape = (LOCAL_GRID[0] * unit, LOCAL_GRID[1] * unit)
    xs, ys = np.meshgrid(np.linspace(-1, 1, shape[0]), np.linspace(-1, 1, shape[1]))
    vignette = 1 - np.exp(-0.5 * (xs**2 + ys**2) / (0.5**2)).T
    return RenderTables(
        unit=unit,
        border=border,
        materials=materials,
        objects=np.stack(objects),
        object_alpha=np.array(object_alpha),
        items=np.stack(items),
        item_alpha=np.array(item_alpha),
        digits=np.stack(digits),
        digit_alpha=np.array(digit_alpha),
        item_pos=np.array(item_pos, np.int64),
        digit_pos=np.array(digit_pos, np.int64),
        vignette=np.ascontiguousarray(vignette),
        canvas=np.zeros((*shape, 3), np.uint8),
        light=np.zeros((*shape, 3), np.float64),
        items_canvas=np.zeros((ITEM_GRID[0] * unit, ITEM_GRID[1] * unit, 3), np.uint8),
    )


_kernel = numba.njit(cache=True, _nrt=False)  # type: ignore[call-overload]


@_kernel
def draw_alpha(
    canvas: np.ndarray, x: int, y: int, texture: np.ndarray, alpha: bool
) -> None:  # pragma: no cover - compiled
    """crafter's `_draw_alpha` (float32 blending, truncated), clipped to the canvas."""
    w = min(texture.shape[0], canvas.shape[0] - x)
    h = min(texture.shape[1], canvas.shape[1] - y)
    scale = np.float32(255)
    for i in range(w):
        for j in range(h):
            if not alpha:
                for c in range(3):
                    canvas[x + i, y + j, c] = texture[i, j, c]
                continue
            a = np.float32(texture[i, j, 3]) / scale
            for c in range(3):
                t = np.float32(texture[i, j, c]) / scale
                current = np.float32(canvas[x + i, y + j, c]) / scale
                blended = a * t + (np.float32(1) - a) * current
                canvas[x + i, y + j, c] = np.uint8(scale * blended)


@_kernel
def grey(r: int, g: int, b: int) -> int:  # pragma: no cover - compiled
    """Pillow's RGB to L conversion (fixed point, rounded)."""
    return (r * 19595 + g * 38470 + b * 7471 + 0x8000) >> 16


@_kernel
def colour_blend(value: int, grey_value: int, factor: float) -> int:  # pragma: no cover
    """Pillow's `Image.blend(grey image, image, factor)` for one 8-bit sample."""
    if factor == 0.0:
        return grey_value
    out = np.float32(grey_value) + np.float32(factor) * np.float32(value - grey_value)
    if out <= 0:
        return 0
    if out >= 255:
        return 255
    return int(out)


@_kernel
def _object_texture(s: State, e: int, i: int) -> int:  # pragma: no cover - compiled
    """Index in `_OBJECT_TEXTURES` of slot i's look (facing, sleep, ripeness)."""
    kind = s.kind[e, i]
    if kind == PLAYER and s.sleeping[e]:
        return 4
    if kind in (PLAYER, ARROW):
        fx, fy = s.fx[e, i], s.fy[e, i]
        facing = 0 if fx == -1 else (1 if fx == 1 else (2 if fy == -1 else 3))
        return facing if kind == PLAYER else 8 + facing
    if kind == PLANT:
        return 13 if s.counter[e, i] > 300 else 12
    return 5 if kind == COW else (6 if kind == ZOMBIE else 7)


@_kernel
def _local_view(s: State, t: RenderTables, e: int) -> None:  # pragma: no cover - compiled
    """crafter's `LocalView` before the light: materials, then objects in world order."""
    u, canvas = t.unit, t.canvas
    canvas[:] = 127
    p = s.player[e]
    px, py = s.ox[e, p], s.oy[e, p]
    half_x, half_y = LOCAL_GRID[0] // 2, LOCAL_GRID[1] // 2
    for gx in range(LOCAL_GRID[0]):
        for gy in range(LOCAL_GRID[1]):
            x, y = px + gx - half_x, py + gy - half_y
            if 0 <= x < s.mat.shape[1] and 0 <= y < s.mat.shape[2]:
                texture = t.materials[s.mat[e, x, y]]
                for i in range(u):
                    for j in range(u):
                        for c in range(3):
                            canvas[gx * u + i, gy * u + j, c] = texture[i, j, c]
    for i in range(1, s.n_slots[e]):
        if s.kind[e, i] == 0:
            continue
        gx, gy = s.ox[e, i] - px + half_x, s.oy[e, i] - py + half_y
        if 0 <= gx < LOCAL_GRID[0] and 0 <= gy < LOCAL_GRID[1]:
            k = _object_texture(s, e, i)
            draw_alpha(canvas, gx * u, gy * u, t.objects[k], t.object_alpha[k])


@_kernel
def _light(s: State, t: RenderTables, e: int, daylight: float) -> None:  # pragma: no cover
    """crafter's `_light` (night noise, colour 0.4, tint) and `_sleep`, into `t.light`."""
    canvas, light = t.canvas, t.light
    night = daylight < 0.5
    amount = 2 * (0.5 - daylight)
    tint = (0.0, 16.0, 64.0)
    for i in range(canvas.shape[0]):
        for j in range(canvas.shape[1]):
            r, g, b = (
                np.int64(canvas[i, j, 0]),
                np.int64(canvas[i, j, 1]),
                np.int64(canvas[i, j, 2]),
            )
            if night:  # one draw per pixel, in crafter's (row-major) order
                noise = 32.0 + 95.0 * random_double(s.render_key, s.render_pos, e)
                mask = amount * t.vignette[i, j]
                r = np.int64(np.uint8((1 - mask) * r + mask * noise))
                g = np.int64(np.uint8((1 - mask) * g + mask * noise))
                b = np.int64(np.uint8((1 - mask) * b + mask * noise))
            level = grey(r, g, b)
            for c, value in enumerate((r, g, b)):
                tinted = (1 - 0.5) * colour_blend(value, level, 0.4) + 0.5 * tint[c]
                light[i, j, c] = daylight * canvas[i, j, c] + (1 - daylight) * tinted
            if s.sleeping[e]:
                level = grey(
                    np.int64(np.uint8(light[i, j, 0])),
                    np.int64(np.uint8(light[i, j, 1])),
                    np.int64(np.uint8(light[i, j, 2])),
                )
                for c in range(3):
                    light[i, j, c] = (1 - 0.5) * level + 0.5 * (16.0 if c == 2 else 0.0)


@_kernel
def render_frame(
    s: State, t: RenderTables, e: int, daylight: float, out: np.ndarray
) -> None:  # pragma: no cover - compiled; checked against crafter's frames by the tests
    """Env e's frame as `crafter.Env.render()` draws it, `(size, size, 3)` `[y, x]`."""
    _local_view(s, t, e)
    _light(s, t, e, daylight)
    items = t.items_canvas
    items[:] = 0
    for k in range(s.inv.shape[1]):
        amount = s.inv[e, k]
        if amount < 1:
            continue
        draw_alpha(items, t.item_pos[k, 0], t.item_pos[k, 1], t.items[k], t.item_alpha[k])
        draw_alpha(
            items, t.digit_pos[k, 0], t.digit_pos[k, 1], t.digits[amount], t.digit_alpha[amount]
        )
    out[:] = 0
    b, light = t.border, t.light
    for i in range(light.shape[0]):
        for j in range(light.shape[1]):
            for c in range(3):
                out[b + j, b + i, c] = np.uint8(light[i, j, c])
        for j in range(items.shape[1]):
            for c in range(3):
                out[b + light.shape[1] + j, b + i, c] = items[i, j, c]


@_kernel
def render_all(
    s: State, t: RenderTables, daylight: np.ndarray, frames: np.ndarray
) -> None:  # pragma: no cover - compiled
    """Every env's frame; `daylight` per env."""
    for e in range(frames.shape[0]):
        render_frame(s, t, e, daylight[e], frames[e])

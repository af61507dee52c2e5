"""Sampling of room size, camera pose, materials, furniture, decals and lights per frame."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeVar

import numpy as np

from mtlbench.data.synthrooms.labels import NYU40_FURNITURE, NYU40_IDS
from mtlbench.data.synthrooms.scene import (
    SURFACE_FLOOR,
    SURFACE_WALL_X0,
    SURFACE_WALL_X1,
    SURFACE_WALL_Z0,
    SURFACE_WALL_Z1,
    WALL_SURFACES,
    Box,
    Camera,
    Decal,
    Material,
    PointLight,
    SceneLayout,
)

_T = TypeVar("_T")

ROOM_WIDTH_RANGE = (3.0, 8.0)
ROOM_DEPTH_RANGE = (3.0, 8.0)
ROOM_HEIGHT_RANGE = (2.4, 3.2)
CAMERA_HEIGHT_RANGE = (1.0, 1.6)
CAMERA_PITCH_RANGE = (math.radians(-15.0), math.radians(5.0))
CAMERA_WALL_MARGIN = 0.4  # metres between the camera and any wall
CAMERA_MIN_VIEW_DISTANCE = 2.5  # metres to the facing wall that a sampled heading aims for
CAMERA_YAW_TRIES = 6
CAMERA_CLEARANCE = 0.45  # metres between the camera and any furniture footprint
FURNITURE_COUNT_RANGE = (2, 8)  # inclusive
PLACEMENT_TRIES = 15
WALL_GAP_RANGE = (0.01, 0.06)  # furniture pushed against a wall leaves this gap

# --------------------------------------------------------------------------------------------
# Palettes and furniture specs
# --------------------------------------------------------------------------------------------

_WOODS = ((0.55, 0.38, 0.22), (0.42, 0.28, 0.16), (0.72, 0.56, 0.38), (0.30, 0.20, 0.12))
_LAMINATES = ((0.90, 0.90, 0.88), (0.16, 0.16, 0.17), (0.62, 0.62, 0.64), (0.80, 0.74, 0.62))
_FABRICS = (
    (0.75, 0.72, 0.68), (0.30, 0.38, 0.55), (0.55, 0.22, 0.20), (0.35, 0.35, 0.37),
    (0.50, 0.42, 0.32), (0.28, 0.45, 0.35),
)  # fmt: skip
_STONES = ((0.85, 0.85, 0.83), (0.25, 0.25, 0.26), (0.60, 0.56, 0.50))
_METALS = ((0.92, 0.92, 0.92), (0.70, 0.71, 0.73))
_WALL_COLOURS = (
    (0.88, 0.86, 0.80), (0.84, 0.80, 0.70), (0.78, 0.78, 0.78), (0.72, 0.80, 0.86),
    (0.76, 0.84, 0.74), (0.90, 0.86, 0.66), (0.86, 0.74, 0.70),
)  # fmt: skip
_CARPETS = ((0.45, 0.45, 0.47), (0.35, 0.40, 0.52), (0.60, 0.55, 0.45), (0.50, 0.35, 0.30))
_TILES = ((0.80, 0.80, 0.78), (0.62, 0.58, 0.52), (0.45, 0.45, 0.46))

# (palette, pattern, scale range in metres, contrast range); one option is drawn per piece.
_MaterialOption = tuple[
    tuple[tuple[float, float, float], ...], str, tuple[float, float], tuple[float, float]
]
_WOODEN: _MaterialOption = (_WOODS, "wood", (0.04, 0.12), (0.25, 0.55))
_LAMINATED: _MaterialOption = (_LAMINATES, "plain", (0.2, 0.6), (0.03, 0.08))
_FABRIC: _MaterialOption = (_FABRICS, "plain", (0.05, 0.2), (0.08, 0.2))
_STONE: _MaterialOption = (_STONES, "plain", (0.02, 0.08), (0.15, 0.3))
_METAL: _MaterialOption = (_METALS, "plain", (0.3, 0.8), (0.02, 0.05))
_SHELVED: _MaterialOption = (_WOODS + _LAMINATES[:2], "shelves", (0.3, 0.4), (0.4, 0.6))


@dataclass(frozen=True)
class _FurnitureSpec:
    size_lo: tuple[float, float, float]  # width, height, depth
    size_hi: tuple[float, float, float]
    weight: float  # relative sampling frequency
    wall_prob: float  # probability of being pushed against a wall
    materials: tuple[_MaterialOption, ...]


_FURNITURE_SPECS: dict[str, _FurnitureSpec] = {
    "bed": _FurnitureSpec((1.4, 0.45, 1.9), (2.0, 0.65, 2.2), 1.0, 0.9, (_FABRIC,)),
    "table": _FurnitureSpec((0.9, 0.70, 0.7), (1.6, 0.78, 1.0), 1.5, 0.2, (_WOODEN, _LAMINATED)),
    "chair": _FurnitureSpec(
        (0.42, 0.8, 0.42), (0.55, 1.0, 0.55), 2.0, 0.1, (_WOODEN, _FABRIC, _LAMINATED)
    ),
    "sofa": _FurnitureSpec((1.6, 0.7, 0.8), (2.4, 0.9, 1.0), 1.0, 0.7, (_FABRIC,)),
    "cabinet": _FurnitureSpec((0.6, 0.8, 0.4), (1.2, 2.0, 0.6), 1.2, 0.95, (_WOODEN, _LAMINATED)),
    "desk": _FurnitureSpec((1.0, 0.72, 0.55), (1.6, 0.78, 0.8), 1.0, 0.8, (_WOODEN, _LAMINATED)),
    "bookshelf": _FurnitureSpec((0.6, 1.6, 0.25), (1.2, 2.2, 0.4), 1.0, 1.0, (_SHELVED,)),
    "night stand": _FurnitureSpec(
        (0.4, 0.45, 0.35), (0.6, 0.65, 0.5), 0.8, 0.9, (_WOODEN, _LAMINATED)
    ),
    "dresser": _FurnitureSpec((0.8, 0.7, 0.4), (1.6, 1.1, 0.6), 0.8, 0.95, (_WOODEN, _LAMINATED)),
    "counter": _FurnitureSpec((1.2, 0.85, 0.55), (3.0, 0.95, 0.7), 0.6, 1.0, (_STONE, _LAMINATED)),
    "refridgerator": _FurnitureSpec((0.6, 1.6, 0.6), (0.9, 1.9, 0.75), 0.5, 1.0, (_METAL,)),
}
_FURNITURE_NAMES = tuple(_FURNITURE_SPECS)
_SMALL_FURNITURE = ("chair", "night stand")
# yaw that turns a piece's front (local +z) away from wall s, indexed by SURFACE_WALL_*
_WALL_YAW = (math.pi / 2, -math.pi / 2, 0.0, math.pi)
_FURNITURE_CDF = np.cumsum([s.weight for s in _FURNITURE_SPECS.values()])
_FURNITURE_CDF /= _FURNITURE_CDF[-1]

# --------------------------------------------------------------------------------------------
# Layout sampling
# --------------------------------------------------------------------------------------------


def _jitter_colour(
    rng: np.random.Generator, colour: Sequence[float], amount: float = 0.06
) -> tuple[float, float, float]:
    scale = rng.uniform(0.88, 1.12)
    c = np.clip(np.asarray(colour) * scale + rng.uniform(-amount, amount, 3), 0.02, 0.98)
    return (float(c[0]), float(c[1]), float(c[2]))


def _pick(rng: np.random.Generator, options: Sequence[_T]) -> _T:
    return options[int(rng.integers(len(options)))]


def _sample_material(rng: np.random.Generator, option: _MaterialOption) -> Material:
    palette, pattern, scale_range, contrast_range = option
    colour = _jitter_colour(rng, _pick(rng, palette))
    shade2 = rng.uniform(0.6, 0.85)
    return Material(
        color=colour,
        pattern=pattern,
        color2=(colour[0] * shade2, colour[1] * shade2, colour[2] * shade2),
        scale=float(rng.uniform(*scale_range)),
        contrast=float(rng.uniform(*contrast_range)),
        phase=float(rng.uniform(0.0, 64.0)),
    )


def _sample_room_materials(rng: np.random.Generator) -> tuple[Material, Material, Material]:
    wall_colour = _jitter_colour(rng, _pick(rng, _WALL_COLOURS), 0.03)
    r = rng.random()
    if r < 0.75:
        wall = Material(
            wall_colour,
            "plain",
            wall_colour,
            float(rng.uniform(0.5, 1.5)),
            float(rng.uniform(0.02, 0.08)),
            float(rng.uniform(0, 64)),
        )
    else:
        s = rng.uniform(0.85, 0.95)
        wall = Material(
            wall_colour,
            "stripes",
            (wall_colour[0] * s, wall_colour[1] * s, wall_colour[2] * s),
            float(rng.uniform(0.1, 0.4)),
            0.05,
            float(rng.uniform(0, 64)),
        )

    r = rng.random()
    if r < 0.45:
        c = _jitter_colour(rng, _pick(rng, _WOODS))
        s = rng.uniform(0.7, 0.85)
        floor = Material(
            c,
            "planks",
            (c[0] * s, c[1] * s, c[2] * s),
            float(rng.uniform(0.1, 0.25)),
            float(rng.uniform(0.15, 0.3)),
            float(rng.uniform(0, 64)),
        )
    elif r < 0.7:
        c = _jitter_colour(rng, _pick(rng, _TILES), 0.03)
        s = rng.uniform(0.75, 0.95)
        floor = Material(
            c,
            "checker",
            (c[0] * s, c[1] * s, c[2] * s),
            float(rng.uniform(0.3, 0.6)),
            0.1,
            float(rng.uniform(0, 64)),
        )
    else:
        c = _jitter_colour(rng, _pick(rng, _CARPETS))
        floor = Material(
            c,
            "plain",
            c,
            float(rng.uniform(0.03, 0.1)),
            float(rng.uniform(0.15, 0.3)),
            float(rng.uniform(0, 64)),
        )

    g = float(rng.uniform(0.86, 0.96))
    ceiling = Material(
        (g, g, g * rng.uniform(0.96, 1.0)), "plain", (g, g, g), 1.0, 0.03, float(rng.uniform(0, 64))
    )
    return wall, floor, ceiling


def _footprint_half(size: tuple[float, float, float], yaw: float) -> tuple[float, float]:
    """Half extents along world x and z of the axis-aligned hull of a rotated footprint."""
    hx, hz = size[0] / 2, size[2] / 2
    c, s = abs(math.cos(yaw)), abs(math.sin(yaw))
    return c * hx + s * hz, s * hx + c * hz


def _rects_overlap(
    a: tuple[float, float, float, float], b: tuple[float, float, float, float], margin: float
) -> bool:
    return (
        a[0] < b[1] + margin
        and b[0] < a[1] + margin
        and a[2] < b[3] + margin
        and b[2] < a[3] + margin
    )


def _place_box(
    rng: np.random.Generator,
    name: str,
    size: tuple[float, float, float],
    width: float,
    depth: float,
    taken: list[tuple[float, float, float, float]],
) -> tuple[float, float, float] | None:
    """One placement attempt: ``(x, z, yaw)`` that fits the room and misses ``taken``, or None."""
    spec = _FURNITURE_SPECS[name]
    if rng.random() < spec.wall_prob:
        wall = int(rng.integers(4))
        yaw = _WALL_YAW[wall]
        gap = float(rng.uniform(*WALL_GAP_RANGE))
        along = depth if wall in (SURFACE_WALL_X0, SURFACE_WALL_X1) else width
        half_along = size[0] / 2
        if along < 2 * half_along + 0.1:
            return None
        a = float(rng.uniform(half_along + 0.05, along - half_along - 0.05))
        off = size[2] / 2 + gap
        x, z = {
            SURFACE_WALL_X0: (off, a),
            SURFACE_WALL_X1: (width - off, a),
            SURFACE_WALL_Z0: (a, off),
            SURFACE_WALL_Z1: (a, depth - off),
        }[wall]
    else:
        # free-standing pieces are mostly aligned with the room, sometimes askew
        yaw = float(rng.integers(4)) * math.pi / 2
        if rng.random() < 0.5:
            yaw += float(rng.uniform(-math.pi / 4, math.pi / 4))
        ex, ez = _footprint_half(size, yaw)
        if width < 2 * ex + 0.1 or depth < 2 * ez + 0.1:
            return None
        x = float(rng.uniform(ex + 0.05, width - ex - 0.05))
        z = float(rng.uniform(ez + 0.05, depth - ez - 0.05))
    ex, ez = _footprint_half(size, yaw)
    rect = (x - ex, x + ex, z - ez, z + ez)
    if rect[0] < 0 or rect[1] > width or rect[2] < 0 or rect[3] > depth:
        return None
    if any(_rects_overlap(rect, other, 0.02) for other in taken):
        return None
    taken.append(rect)
    return x, z, yaw


def _sample_furniture(
    rng: np.random.Generator, width: float, depth: float, camera_xz: tuple[float, float]
) -> tuple[Box, ...]:
    # Footprints are kept apart via their axis-aligned hulls (x0, x1, z0, z1); the camera
    # reserves a square so it never ends up inside or right against a piece.
    cx, cz = camera_xz
    clear = CAMERA_CLEARANCE
    taken = [(cx - clear, cx + clear, cz - clear, cz + clear)]
    n_target = int(rng.integers(FURNITURE_COUNT_RANGE[0], FURNITURE_COUNT_RANGE[1] + 1))
    boxes: list[Box] = []

    def add(name: str, tries: int) -> None:
        spec = _FURNITURE_SPECS[name]
        size_w, size_h, size_d = (float(v) for v in rng.uniform(spec.size_lo, spec.size_hi))
        size = (size_w, size_h, size_d)
        material = _sample_material(rng, _pick(rng, spec.materials))
        for _attempt in range(tries):
            placed = _place_box(rng, name, size, width, depth, taken)
            if placed is not None:
                x, z, yaw = placed
                boxes.append(Box(NYU40_FURNITURE[name], (x, z), size, yaw, material))
                return

    for _ in range(n_target):
        add(
            _FURNITURE_NAMES[int(np.searchsorted(_FURNITURE_CDF, rng.random(), side="right"))],
            PLACEMENT_TRIES,
        )
    # a crowded small room can reject big pieces; top up with small ones to the minimum count
    for _ in range(FURNITURE_COUNT_RANGE[0] * 4):
        if len(boxes) >= FURNITURE_COUNT_RANGE[0]:
            break
        add(_SMALL_FURNITURE[int(rng.integers(len(_SMALL_FURNITURE)))], PLACEMENT_TRIES * 4)
    return tuple(boxes)


def _sample_decals(
    rng: np.random.Generator, width: float, depth: float, height: float
) -> tuple[Decal, ...]:
    decals: list[Decal] = []
    taken: dict[int, list[tuple[float, float, float, float]]] = {s: [] for s in WALL_SURFACES}

    def place(label: int, w: float, h: float, v0: float, material: Material) -> None:
        for _attempt in range(8):
            surface = int(rng.integers(4))
            along = depth if surface in (SURFACE_WALL_X0, SURFACE_WALL_X1) else width
            if w > along - 0.3 or v0 + h > height - 0.1:
                continue
            u0 = float(rng.uniform(0.15, along - 0.15 - w))
            rect = (u0, u0 + w, v0, v0 + h)
            if any(_rects_overlap(rect, other, 0.1) for other in taken[surface]):
                continue
            taken[surface].append(rect)
            decals.append(Decal(label, surface, rect, material))
            return

    def phase() -> float:
        return float(rng.uniform(0.0, 64.0))

    if rng.random() < 0.6:
        c = _jitter_colour(rng, _pick(rng, _WOODS + _LAMINATES[:1]))
        place(
            NYU40_IDS["door"],
            float(rng.uniform(0.8, 1.0)),
            float(rng.uniform(1.95, 2.1)),
            0.0,
            Material(c, "door", (c[0] * 0.7, c[1] * 0.7, c[2] * 0.7), 0.1, 0.3, phase()),
        )
    for _ in range(int(rng.integers(0, 3))):
        sky = _jitter_colour(rng, (0.82, 0.88, 0.95), 0.05)
        frame = _jitter_colour(rng, _pick(rng, ((0.95, 0.95, 0.95), (0.45, 0.32, 0.2))), 0.02)
        place(
            NYU40_IDS["window"],
            float(rng.uniform(0.8, 1.8)),
            float(rng.uniform(1.0, 1.4)),
            float(rng.uniform(0.8, 1.1)),
            Material(sky, "window", frame, 0.05, 0.2, phase()),
        )
    for _ in range(int(rng.integers(0, 5))):
        c = (
            float(rng.uniform(0.2, 0.9)),
            float(rng.uniform(0.2, 0.9)),
            float(rng.uniform(0.2, 0.9)),
        )
        frame = _jitter_colour(
            rng, _pick(rng, ((0.1, 0.1, 0.1), (0.9, 0.9, 0.88), (0.6, 0.45, 0.2))), 0.02
        )
        place(
            NYU40_IDS["picture"],
            float(rng.uniform(0.3, 1.0)),
            float(rng.uniform(0.3, 0.8)),
            float(rng.uniform(1.2, 1.6)),
            Material(c, "picture", frame, float(rng.uniform(0.1, 0.3)), 0.5, phase()),
        )
    if rng.random() < 0.15:
        place(
            NYU40_IDS["whiteboard"],
            float(rng.uniform(1.2, 2.0)),
            float(rng.uniform(0.9, 1.2)),
            float(rng.uniform(0.85, 1.0)),
            Material((0.95, 0.95, 0.95), "board", (0.6, 0.6, 0.62), 0.5, 0.03, phase()),
        )
    if rng.random() < 0.25:
        w = float(rng.uniform(0.8, 1.3))
        place(
            NYU40_IDS["television"],
            w,
            w * 0.58,
            float(rng.uniform(1.0, 1.3)),
            Material((0.06, 0.06, 0.07), "screen", (0.02, 0.02, 0.02), 0.5, 0.05, phase()),
        )
    if rng.random() < 0.4:
        w, d = float(rng.uniform(0.8, 2.0)), float(rng.uniform(0.6, 1.4))
        if w < width - 0.4 and d < depth - 0.4:
            x0 = float(rng.uniform(0.2, width - 0.2 - w))
            z0 = float(rng.uniform(0.2, depth - 0.2 - d))
            c = _jitter_colour(rng, _pick(rng, _FABRICS + _CARPETS))
            c2 = _jitter_colour(rng, _pick(rng, _FABRICS))
            decals.append(
                Decal(
                    NYU40_IDS["floor mat"],
                    SURFACE_FLOOR,
                    (x0, x0 + w, z0, z0 + d),
                    Material(c, "mat", c2, float(rng.uniform(0.08, 0.25)), 0.5, phase()),
                )
            )
    return tuple(decals)


def _distance_to_wall(x: float, z: float, yaw: float, width: float, depth: float) -> float:
    """Horizontal distance from ``(x, z)`` along heading ``yaw`` to the room boundary."""
    dx, dz = math.sin(yaw), math.cos(yaw)
    tx = ((width - x) / dx if dx > 0 else -x / dx) if abs(dx) > 1e-9 else math.inf
    tz = ((depth - z) / dz if dz > 0 else -z / dz) if abs(dz) > 1e-9 else math.inf
    return min(tx, tz)


def scene_layout(seed: int, index: int) -> SceneLayout:
    """Sample the scene parameters of frame ``index`` of the synthrooms set ``seed``.

    The result depends only on ``(seed, index)``: not on the output size, the other frames, or
    the order in which frames are rendered.

    Args:
        seed: Data-set seed (non-negative).
        index: Frame index (non-negative).

    Returns:
        The layout that :func:`render_layout` turns into pixels.
    """
    if seed < 0 or index < 0:
        raise ValueError(f"seed and index must be non-negative, got seed={seed}, index={index}")
    rng = np.random.default_rng([seed, index])
    width = float(rng.uniform(*ROOM_WIDTH_RANGE))
    depth = float(rng.uniform(*ROOM_DEPTH_RANGE))
    height = float(rng.uniform(*ROOM_HEIGHT_RANGE))

    cam_x = float(rng.uniform(CAMERA_WALL_MARGIN, width - CAMERA_WALL_MARGIN))
    cam_z = float(rng.uniform(CAMERA_WALL_MARGIN, depth - CAMERA_WALL_MARGIN))
    cam_y = float(rng.uniform(*CAMERA_HEIGHT_RANGE))
    # look at a point in the middle part of the room, so the view is "into the room"; a camera
    # standing in that middle part could still face a wall at arm's length, so retry a few times
    want = min(CAMERA_MIN_VIEW_DISTANCE, 0.6 * max(width, depth))
    best_yaw, best_dist = 0.0, -1.0
    for _attempt in range(CAMERA_YAW_TRIES):
        tx = width * float(rng.uniform(0.3, 0.7))
        tz = depth * float(rng.uniform(0.3, 0.7))
        yaw = math.atan2(tx - cam_x, tz - cam_z) + float(rng.uniform(-0.5, 0.5))
        dist = _distance_to_wall(cam_x, cam_z, yaw, width, depth)
        if dist > best_dist:
            best_yaw, best_dist = yaw, dist
        if dist >= want:
            break
    yaw = best_yaw
    pitch = float(rng.uniform(*CAMERA_PITCH_RANGE))
    camera = Camera((cam_x, cam_y, cam_z), yaw, pitch)

    wall_mat, floor_mat, ceiling_mat = _sample_room_materials(rng)
    boxes = _sample_furniture(rng, width, depth, (cam_x, cam_z))
    decals = _sample_decals(rng, width, depth, height)

    lights = tuple(
        PointLight(
            (
                float(rng.uniform(0.2, 0.8)) * width,
                height - float(rng.uniform(0.05, 0.4)),
                float(rng.uniform(0.2, 0.8)) * depth,
            ),
            float(rng.uniform(0.5, 0.9)),
            float(rng.uniform(2.5, 4.5)),
        )
        for _ in range(int(rng.integers(1, 3)))
    )
    sun = rng.normal(size=3)
    sun[1] = -abs(sun[1]) - 0.3
    warm = float(rng.uniform(-0.08, 0.08))
    return SceneLayout(
        width=width,
        depth=depth,
        height=height,
        camera=camera,
        boxes=boxes,
        decals=decals,
        lights=lights,
        wall_material=wall_mat,
        floor_material=floor_mat,
        ceiling_material=ceiling_mat,
        sun_direction=(float(sun[0]), float(sun[1]), float(sun[2])),
        sun_intensity=float(rng.uniform(0.05, 0.35)),
        ambient=float(rng.uniform(0.3, 0.45)),
        light_tint=(1.0 + warm, 1.0, 1.0 - warm),
        noise_sigma=float(rng.uniform(2.0, 4.0)),
        key=(int(seed), int(index)),
    )

"""Procedural indoor scenes ("synthrooms") rendered by vectorised numpy ray casting.

Each frame is a box-shaped room (floor, ceiling, four walls) with 2-8 box-shaped furniture
pieces standing on the floor and flat decals (pictures, windows, doors, ...) on the walls and
floor. Every pixel gets an RGB colour, a metric z-depth (Kinect-style distance along the optical
axis) and an NYU-40 class id (0-based), so the frames stand in for NYU Depth V2 in tests and
smoke runs without any download.

Geometry conventions:
    World: ``y`` points up, the floor is ``y = 0``, the room spans ``x`` in ``[0, width]`` and
    ``z`` in ``[0, depth]``. A yaw of 0 looks along ``+z``, ``pi / 2`` along ``+x``; a positive
    pitch looks up. Camera frame as in OpenCV: ``x`` right, ``y`` down, ``z`` forward.
    Pixel ``(row i, col j)`` is sampled through the image point ``(u, v) = (j + 0.5, i + 0.5)``
    with NYU Kinect intrinsics scaled to the output size (see :func:`camera_intrinsics`).

Example:
    >>> frame = render_scene(seed=0, index=3, size=(240, 320))
    >>> frame["image"].shape, frame["depth"].dtype, frame["seg"].dtype
    ((240, 320, 3), dtype('float32'), dtype('uint8'))
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeVar

import numpy as np

_T = TypeVar("_T")

__all__ = [
    "NYU40_NAMES",
    "NYU40_IDS",
    "NYU40_STRUCTURE",
    "NYU40_FURNITURE",
    "NYU40_DECALS",
    "IGNORE_LABEL",
    "SURFACE_WALL_X0",
    "SURFACE_WALL_X1",
    "SURFACE_WALL_Z0",
    "SURFACE_WALL_Z1",
    "SURFACE_FLOOR",
    "SURFACE_CEILING",
    "Material",
    "Camera",
    "Box",
    "Decal",
    "PointLight",
    "SceneLayout",
    "camera_intrinsics",
    "scene_layout",
    "render_layout",
    "render_scene",
    "render_batch",
]

# --------------------------------------------------------------------------------------------
# Labels
# --------------------------------------------------------------------------------------------

NYU40_NAMES: tuple[str, ...] = (
    "wall", "floor", "cabinet", "bed", "chair", "sofa", "table", "door", "window", "bookshelf",
    "picture", "counter", "blinds", "desk", "shelves", "curtain", "dresser", "pillow", "mirror",
    "floor mat", "clothes", "ceiling", "books", "refridgerator", "television", "paper", "towel",
    "shower curtain", "box", "whiteboard", "person", "night stand", "toilet", "sink", "lamp",
    "bathtub", "bag", "otherstructure", "otherfurniture", "otherprop",
)  # fmt: skip
"""NYU-40 class names; the 0-based class id is the position in this tuple."""

NYU40_IDS: dict[str, int] = {name: i for i, name in enumerate(NYU40_NAMES)}
"""All NYU-40 names -> 0-based class ids."""

NYU40_STRUCTURE: dict[str, int] = {name: NYU40_IDS[name] for name in ("wall", "floor", "ceiling")}
"""Room surfaces -> 0-based NYU-40 ids."""

NYU40_FURNITURE: dict[str, int] = {
    name: NYU40_IDS[name]
    for name in (
        "cabinet", "bed", "chair", "sofa", "table", "bookshelf", "counter", "desk", "dresser",
        "refridgerator", "night stand",
    )
}  # fmt: skip
"""Box-shaped furniture classes the renderer places -> 0-based NYU-40 ids."""

NYU40_DECALS: dict[str, int] = {
    name: NYU40_IDS[name]
    for name in ("door", "window", "picture", "floor mat", "television", "whiteboard")
}
"""Flat classes drawn on walls / floor (label only, no depth change) -> 0-based NYU-40 ids."""

IGNORE_LABEL = 255
"""Label of pixels without a class (only rays that hit nothing, which a closed room has none of)."""

WALL = NYU40_IDS["wall"]
FLOOR = NYU40_IDS["floor"]
CEILING = NYU40_IDS["ceiling"]

# Surface indices of the room; furniture box k gets surface index NUM_ROOM_SURFACES + k.
SURFACE_WALL_X0 = 0  # plane x = 0, wall coordinates (u, v) = (z, y)
SURFACE_WALL_X1 = 1  # plane x = width, (u, v) = (z, y)
SURFACE_WALL_Z0 = 2  # plane z = 0, (u, v) = (x, y)
SURFACE_WALL_Z1 = 3  # plane z = depth, (u, v) = (x, y)
SURFACE_FLOOR = 4  # plane y = 0, (u, v) = (x, z)
SURFACE_CEILING = 5  # plane y = height, (u, v) = (x, z)
NUM_ROOM_SURFACES = 6
WALL_SURFACES = (SURFACE_WALL_X0, SURFACE_WALL_X1, SURFACE_WALL_Z0, SURFACE_WALL_Z1)

_ROOM_NORMALS: tuple[tuple[float, float, float], ...] = (
    (1.0, 0.0, 0.0),
    (-1.0, 0.0, 0.0),
    (0.0, 0.0, 1.0),
    (0.0, 0.0, -1.0),
    (0.0, 1.0, 0.0),
    (0.0, -1.0, 0.0),
)  # pointing into the room

# --------------------------------------------------------------------------------------------
# Camera and sampling ranges
# --------------------------------------------------------------------------------------------

NYU_WIDTH, NYU_HEIGHT = 640, 480
NYU_FX, NYU_FY, NYU_CX, NYU_CY = 518.86, 519.47, 325.58, 253.74
KINECT_BASELINE_M = 0.075  # IR projector <-> camera, sets the width of shadow holes

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

_NEAR_EPS = 1e-3  # corners closer than this to the camera plane disable screen-space culling
_BOX_EDGE_WIDTH = 0.02  # metres of darkened rim on furniture faces, so box edges read as edges
_BOX_EDGE_SHADE = 0.72

# --------------------------------------------------------------------------------------------
# Scene description
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Material:
    """Surface appearance: base colour(s) and a procedural pattern.

    Attributes:
        color: Base albedo, RGB in [0, 1].
        pattern: One of ``plain``, ``wood``, ``planks``, ``checker``, ``stripes``, ``shelves``,
            ``picture``, ``window``, ``door``, ``screen``, ``board``, ``mat``.
        color2: Second colour used by two-tone patterns (grain, tiles, frames).
        scale: Pattern period in metres.
        contrast: Strength of the pattern / noise modulation.
        phase: Offset into the noise lattice, so surfaces sharing a pattern still differ.
    """

    color: tuple[float, float, float] = (0.7, 0.7, 0.7)
    pattern: str = "plain"
    color2: tuple[float, float, float] = (0.5, 0.5, 0.5)
    scale: float = 0.5
    contrast: float = 0.1
    phase: float = 0.0


@dataclass(frozen=True)
class Camera:
    """Pinhole camera pose.

    Attributes:
        position: ``(x, y, z)`` in metres, ``y`` is the height above the floor.
        yaw: Heading in radians; 0 looks along ``+z``, ``pi / 2`` along ``+x``.
        pitch: Elevation in radians; positive looks up.
    """

    position: tuple[float, float, float]
    yaw: float = 0.0
    pitch: float = 0.0


@dataclass(frozen=True)
class Box:
    """A furniture piece: a box standing on the floor, rotated about the vertical axis.

    Attributes:
        label: 0-based NYU-40 class id.
        center: ``(x, z)`` of the footprint centre in metres.
        size: ``(width, height, depth)`` in metres along the box's local ``x``, ``y``, ``z``.
        yaw: Rotation about ``y`` in radians (local ``z`` = world ``(sin yaw, 0, cos yaw)``).
        material: Appearance.
    """

    label: int
    center: tuple[float, float]
    size: tuple[float, float, float]
    yaw: float = 0.0
    material: Material = Material()


@dataclass(frozen=True)
class Decal:
    """A flat labelled rectangle lying on a room plane; it changes label and colour, not depth.

    Attributes:
        label: 0-based NYU-40 class id.
        surface: Room surface index (``SURFACE_WALL_*`` or ``SURFACE_FLOOR``).
        rect: ``(u0, u1, v0, v1)`` in the plane's coordinates (see ``SURFACE_*`` constants).
        material: Appearance; patterns such as ``picture`` draw a frame using the rect size.
    """

    label: int
    surface: int
    rect: tuple[float, float, float, float]
    material: Material = Material()


@dataclass(frozen=True)
class PointLight:
    """Isotropic point light.

    Attributes:
        position: ``(x, y, z)`` in metres.
        intensity: Diffuse strength at distance 0 before the ``falloff`` roll-off.
        falloff: Distance in metres at which the contribution has halved.
    """

    position: tuple[float, float, float]
    intensity: float = 1.0
    falloff: float = 3.0


@dataclass(frozen=True)
class SceneLayout:
    """Everything needed to render one frame, independent of the output size.

    Attributes:
        width: Room extent along ``x`` in metres.
        depth: Room extent along ``z`` in metres.
        height: Room height in metres.
        camera: Camera pose (must be strictly inside the room and outside every box).
        boxes: Furniture.
        decals: Flat labelled rectangles on walls / floor.
        lights: Point lights.
        wall_material: Appearance of the four walls.
        floor_material: Appearance of the floor.
        ceiling_material: Appearance of the ceiling.
        sun_direction: Direction a directional fill light travels (need not be normalised).
        sun_intensity: Strength of that light.
        ambient: Ambient light term.
        light_tint: RGB multiplier of all light (white balance).
        noise_sigma: Std of Gaussian sensor noise on the 0..255 scale.
        key: Integers seeding the per-frame sensor noise and depth holes.
    """

    width: float
    depth: float
    height: float
    camera: Camera
    boxes: tuple[Box, ...] = ()
    decals: tuple[Decal, ...] = ()
    lights: tuple[PointLight, ...] = ()
    wall_material: Material = Material((0.85, 0.83, 0.78))
    floor_material: Material = Material((0.55, 0.4, 0.28), "planks", (0.45, 0.32, 0.2), 0.18, 0.2)
    ceiling_material: Material = Material((0.92, 0.92, 0.9), contrast=0.03)
    sun_direction: tuple[float, float, float] = (0.3, -0.8, 0.5)
    sun_intensity: float = 0.2
    ambient: float = 0.35
    light_tint: tuple[float, float, float] = (1.0, 1.0, 1.0)
    noise_sigma: float = 3.0
    key: tuple[int, ...] = (0,)


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
        size = tuple(float(v) for v in rng.uniform(spec.size_lo, spec.size_hi))
        material = _sample_material(rng, _pick(rng, spec.materials))
        for _attempt in range(tries):
            placed = _place_box(rng, name, size, width, depth, taken)  # type: ignore[arg-type]
            if placed is not None:
                x, z, yaw = placed
                boxes.append(Box(NYU40_FURNITURE[name], (x, z), size, yaw, material))  # type: ignore[arg-type]
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


# --------------------------------------------------------------------------------------------
# Camera geometry
# --------------------------------------------------------------------------------------------


def _parse_size(size: int | tuple[int, int]) -> tuple[int, int]:
    if isinstance(size, (int, np.integer)):
        h = w = int(size)
    else:
        try:
            h, w = (int(v) for v in size)
        except (TypeError, ValueError):
            raise ValueError(f"size must be an int or an (H, W) pair, got {size!r}") from None
    if h < 1 or w < 1:
        raise ValueError(f"size must be positive, got (H, W) = ({h}, {w})")
    return h, w


def camera_intrinsics(size: int | tuple[int, int]) -> tuple[float, float, float, float]:
    """NYU Kinect intrinsics scaled to an output of ``size``.

    Args:
        size: ``S`` for ``S x S`` or ``(H, W)``.

    Returns:
        ``(fx, fy, cx, cy)`` in pixels; ``fx, cx`` scale with ``W / 640``, ``fy, cy`` with
        ``H / 480``.
    """
    h, w = _parse_size(size)
    sx, sy = w / NYU_WIDTH, h / NYU_HEIGHT
    return NYU_FX * sx, NYU_FY * sy, NYU_CX * sx, NYU_CY * sy


@functools.lru_cache(maxsize=16)
def _ray_grid(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """Normalised image coordinates: ``a`` (1, W) = (u - cx) / fx, ``b`` (H, 1) = (v - cy) / fy."""
    fx, fy, cx, cy = camera_intrinsics((h, w))
    a = ((np.arange(w, dtype=np.float64) + 0.5 - cx) / fx).astype(np.float32)[None, :]
    b = ((np.arange(h, dtype=np.float64) + 0.5 - cy) / fy).astype(np.float32)[:, None]
    a.flags.writeable = False
    b.flags.writeable = False
    return a, b


def _camera_basis(yaw: float, pitch: float) -> tuple[tuple[float, float, float], ...]:
    """World vectors of the camera's right, down and forward axes."""
    cy, sy, cp, sp = math.cos(yaw), math.sin(yaw), math.cos(pitch), math.sin(pitch)
    forward = (sy * cp, sp, cy * cp)
    right = (cy, 0.0, -sy)
    down = (sp * sy, -cp, sp * cy)
    return right, down, forward


def _box_corners(box: Box) -> np.ndarray:
    hx, hz = box.size[0] / 2, box.size[2] / 2
    c, s = math.cos(box.yaw), math.sin(box.yaw)
    lx = np.array([-hx, hx, hx, -hx])
    lz = np.array([-hz, -hz, hz, hz])
    x = box.center[0] + lx * c + lz * s
    z = box.center[1] - lx * s + lz * c
    return np.stack(
        [np.concatenate([x, x]), np.repeat([0.0, box.size[1]], 4), np.concatenate([z, z])], axis=1
    )


def _screen_rect(
    corners: np.ndarray,
    position: tuple[float, float, float],
    basis: tuple[tuple[float, float, float], ...],
    intrinsics: tuple[float, float, float, float],
    h: int,
    w: int,
) -> tuple[int, int, int, int] | None:
    """Pixel rectangle ``(r0, r1, c0, c1)`` that contains the projection of ``corners``."""
    rel = corners - np.asarray(position)
    basis_m = np.asarray(basis)  # rows: right, down, forward
    cam = rel @ basis_m.T
    zc = cam[:, 2]
    if (zc <= 0).all():
        return None
    if (zc < _NEAR_EPS).any():
        # part of the box is behind the camera: its projection is unbounded, test every pixel
        return 0, h, 0, w
    fx, fy, cx, cy = intrinsics
    u = fx * cam[:, 0] / zc + cx
    v = fy * cam[:, 1] / zc + cy
    c0 = max(0, math.floor(u.min() - 0.5) - 1)
    c1 = min(w, math.ceil(u.max() - 0.5) + 2)
    r0 = max(0, math.floor(v.min() - 0.5) - 1)
    r1 = min(h, math.ceil(v.max() - 0.5) + 2)
    if c0 >= c1 or r0 >= r1:
        return None
    return r0, r1, c0, c1


# --------------------------------------------------------------------------------------------
# Ray casting
# --------------------------------------------------------------------------------------------


@dataclass
class _Trace:
    """Result of casting one ray per pixel.

    Attributes:
        t: (H, W) float32 z-depth of the nearest hit (the ray parameter, since ``d`` below has
            camera-``z`` component 1).
        sid: (H, W) uint8 surface index of the nearest hit.
        dx: (H, W) world ray direction, x component.
        dy: (H, 1) y component (constant along a row).
        dz: (H, W) z component.
        box_rects: Per box, the pixel rectangle ``(r0, r1, c0, c1)`` its hits lie in, or None.
    """

    t: np.ndarray
    sid: np.ndarray
    dx: np.ndarray
    dy: np.ndarray
    dz: np.ndarray
    box_rects: list[tuple[int, int, int, int] | None]


def _trace(layout: SceneLayout, h: int, w: int) -> _Trace:
    """Cast one ray per pixel through the room and its furniture."""
    a, b = _ray_grid(h, w)
    cam = layout.camera
    right, down, fwd = _camera_basis(cam.yaw, cam.pitch)
    dx = a * np.float32(right[0]) + (b * np.float32(down[0]) + np.float32(fwd[0]))
    dy = b * np.float32(down[1]) + np.float32(fwd[1])  # right has no y component: one value per row
    dz = a * np.float32(right[2]) + (b * np.float32(down[2]) + np.float32(fwd[2]))
    px, py, pz = (float(v) for v in cam.position)
    if not (0 < px < layout.width and 0 < py < layout.height and 0 < pz < layout.depth):
        raise ValueError(f"camera position {cam.position} is not strictly inside the room")

    # Room: the exit point of the inside of the box [0, W] x [0, H] x [0, D]. Numerators are
    # positive, so dividing by |d| turns d == 0 (either sign) into +inf rather than -inf.
    with np.errstate(divide="ignore"):
        mx = dx > 0
        tx = np.where(mx, np.float32(layout.width - px), np.float32(px))
        tx /= np.abs(dx)
        mz = dz > 0
        tz = np.where(mz, np.float32(layout.depth - pz), np.float32(pz))
        tz /= np.abs(dz)
        my = dy > 0
        ty = np.where(my, np.float32(layout.height - py), np.float32(py)) / np.abs(dy)
    use_z = tz < tx
    sid = np.where(use_z, mz.view(np.uint8) + np.uint8(SURFACE_WALL_Z0), mx.view(np.uint8))
    t = np.minimum(tx, tz, out=tx)
    sid_y = my.view(np.uint8) + np.uint8(SURFACE_FLOOR)
    use_y = ty < t
    np.copyto(sid, np.broadcast_to(sid_y, sid.shape), where=use_y)
    np.minimum(t, ty, out=t)

    intrinsics = camera_intrinsics((h, w))
    basis = (right, down, fwd)
    rects: list[tuple[int, int, int, int] | None] = []
    for k, box in enumerate(layout.boxes):
        rect = _screen_rect(_box_corners(box), cam.position, basis, intrinsics, h, w)
        rects.append(rect)
        if rect is None:
            continue
        r0, r1, c0, c1 = rect
        _intersect_box(
            box,
            (px, py, pz),
            dx[r0:r1, c0:c1],
            dy[r0:r1],
            dz[r0:r1, c0:c1],
            t[r0:r1, c0:c1],
            sid[r0:r1, c0:c1],
            NUM_ROOM_SURFACES + k,
        )
    return _Trace(t, sid, dx, dy, dz, rects)


def _intersect_box(
    box: Box,
    origin: tuple[float, float, float],
    dx: np.ndarray,
    dy: np.ndarray,
    dz: np.ndarray,
    t: np.ndarray,
    sid: np.ndarray,
    surface: int,
) -> None:
    """Slab test in the box's own frame; writes nearer hits into the views ``t`` and ``sid``."""
    c, s = math.cos(box.yaw), math.sin(box.yaw)
    hx, hy, hz = box.size[0] / 2, box.size[1] / 2, box.size[2] / 2
    rx, rz = origin[0] - box.center[0], origin[2] - box.center[1]
    ox, oy, oz = rx * c - rz * s, origin[1] - hy, rx * s + rz * c
    c32, s32 = np.float32(c), np.float32(s)
    with np.errstate(divide="ignore", invalid="ignore"):
        inv = np.float32(1.0) / (dx * c32 - dz * s32)
        t1 = np.float32(-hx - ox) * inv
        t2 = np.float32(hx - ox) * inv
        near = np.minimum(t1, t2)
        far = np.maximum(t1, t2, out=t1)
        np.reciprocal(dx * s32 + dz * c32, out=inv)
        np.multiply(inv, np.float32(-hz - oz), out=t2)
        inv *= np.float32(hz - oz)
        np.maximum(near, np.minimum(t2, inv), out=near)
        np.minimum(far, np.maximum(t2, inv, out=t2), out=far)
        inv_y = np.float32(1.0) / dy  # (rows, 1): cheap
        y1 = np.float32(-hy - oy) * inv_y
        y2 = np.float32(hy - oy) * inv_y
        np.maximum(near, np.minimum(y1, y2), out=near)
        np.minimum(far, np.maximum(y1, y2), out=far)
        hit = near <= far
        hit &= near > 0
        hit &= near < t
    np.copyto(t, near, where=hit)
    np.copyto(sid, np.uint8(surface), where=hit)


# --------------------------------------------------------------------------------------------
# Appearance
# --------------------------------------------------------------------------------------------
# Colours are handled channel-first, (3, n): numpy's broadcasting over a trailing axis of
# length 3 is several times slower than three contiguous rows.

_NOISE_BITS = 6
_NOISE_N = 1 << _NOISE_BITS
_NOISE_MASK = _NOISE_N - 1
# Fixed random values (per-plank tones); a constant of the renderer, not of any frame.
_NOISE_TABLE = np.random.default_rng(0x5EED).random(_NOISE_N * _NOISE_N, dtype=np.float32)
_TWO_PI = np.float32(2.0 * math.pi)
_F0, _F1, _F2, _F3 = np.float32(0.0), np.float32(1.0), np.float32(2.0), np.float32(3.0)

_TEX_BITS = 9
_TEX_MASK = (1 << _TEX_BITS) - 1
_TEX_PER_UNIT = 32  # texels per noise unit; the texture repeats every 16 units


def _make_noise_texture() -> np.ndarray:
    """Fractal (3-octave) value noise baked into a periodic texture in [0, 1], flattened."""
    n = 1 << _TEX_BITS
    rng = np.random.default_rng(0x7E47)
    tex = np.zeros((n, n), dtype=np.float32)
    for octave, weight in enumerate((0.6, 0.28, 0.12)):
        cells = (n // _TEX_PER_UNIT) << octave
        lattice = rng.random((cells, cells), dtype=np.float32)
        x = (np.arange(n, dtype=np.float32) + np.float32(0.5)) * np.float32(cells / n)
        x0 = np.floor(x)
        i0 = x0.astype(np.intp)
        f = x - x0
        f = f * f * (_F3 - _F2 * f)
        i1 = (i0 + 1) % cells  # wrap so the texture tiles
        rows = lattice[i0] * (_F1 - f)[:, None] + lattice[i1] * f[:, None]
        tex += np.float32(weight) * (rows[:, i0] * (_F1 - f)[None, :] + rows[:, i1] * f[None, :])
    tex -= tex.min()
    tex /= tex.max()
    return tex.ravel()


_NOISE_TEXTURE = _make_noise_texture()


def _noise(s: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Fractal noise in [0, 1] at ``(s, t)`` (features about one unit across); cheap lookup.

    Nearest-texel lookup into a pre-baked texture: a fraction of the cost of evaluating value
    noise, and the texel (1/32 unit) is finer than a pixel's footprint at the scales used.
    Coordinates are truncated towards zero, so keep them non-negative to avoid a seam at 0.
    """
    k = np.float32(_TEX_PER_UNIT)
    i = (s * k).astype(np.int32)
    j = (t * k).astype(np.int32)
    i &= _TEX_MASK
    i <<= _TEX_BITS
    j &= _TEX_MASK
    i |= j
    return _NOISE_TEXTURE.take(i)


def _col(c: Sequence[float]) -> np.ndarray:
    return np.asarray(c, dtype=np.float32)[:, None]


def _mix(c1: np.ndarray, c2: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Per point blend (3, n) of two (3, 1) colours."""
    return c1 + (c2 - c1) * w


def _frame_distance(s: np.ndarray, t: np.ndarray, w: float, h: float) -> np.ndarray:
    """Distance of a point of a ``w x h`` rectangle to its border."""
    return np.minimum(np.minimum(s, np.float32(w) - s), np.minimum(t, np.float32(h) - t))


def _albedo(
    mat: Material, s: np.ndarray, t: np.ndarray, extent: tuple[float, float] | None = None
) -> np.ndarray:
    """Albedo (3, n) float32 of ``mat`` at surface coordinates ``s, t`` (metres).

    For decals ``s, t`` run from the rectangle's corner and ``extent`` is its ``(w, h)``.
    """
    col = _col(mat.color)
    col2 = _col(mat.color2)
    inv_scale = np.float32(1.0 / max(mat.scale, 1e-3))
    contrast = np.float32(mat.contrast)
    ph = np.float32(mat.phase)
    pattern = mat.pattern
    ss = s * inv_scale
    ts = t * inv_scale

    if pattern == "plain":
        m = _noise(ss + ph, ts)
        m *= _F2 * contrast
        m += _F1 - contrast
        return col * m
    if pattern in ("wood", "shelves"):
        # grain runs along t; noise bends the rings
        g = _noise(ss * np.float32(0.5) + ph, t * _F2)
        g *= np.float32(1.5)
        g += ss
        g *= _TWO_PI
        np.sin(g, out=g)
        g *= np.float32(0.5) * contrast
        g += np.float32(0.5) * contrast
        out = _mix(col, col2, g)
        if pattern == "shelves":
            out[:, ts % _F1 < np.float32(0.08)] *= np.float32(0.45)
        return out
    if pattern == "planks":
        plank_f = np.floor(ss)
        plank = plank_f.astype(np.int32)
        tone = _NOISE_TABLE.take(((plank * 7 + int(mat.phase)) & _NOISE_MASK) << _NOISE_BITS)
        grain = _noise(ss * np.float32(4.0) + ph, t * np.float32(1.5))
        wgt = contrast * (np.float32(1.2) * tone + np.float32(0.8) * grain)
        out = _mix(col, col2, np.minimum(wgt, _F1, out=wgt))
        out[:, (ss - plank_f) < np.float32(0.04)] *= np.float32(0.6)
        return out
    if pattern == "checker":
        fs = np.floor(ss)
        ft = np.floor(ts)
        out = _mix(col, col2, (fs + ft) % _F2)
        out[:, np.minimum(ss - fs, ts - ft) < np.float32(0.03)] = col * np.float32(0.75)
        return out
    if pattern == "stripes":
        return _mix(col, col2, (ss % _F1 < np.float32(0.5)).astype(np.float32))
    if pattern == "mat":
        out = _mix(col, col2, (np.sin(_TWO_PI * ss) > 0).astype(np.float32))
        if extent is not None:
            out[:, _frame_distance(s, t, *extent) < np.float32(0.06)] = col2 * np.float32(0.7)
        return out

    w, h = extent if extent is not None else (1.0, 1.0)
    if pattern == "picture":
        # an abstract painting: three independent noise fields as colour channels
        out = np.stack(
            [
                _noise(ss + ph, ts),
                _noise(ss + (ph + np.float32(5.3)), ts + np.float32(9.1)),
                _noise(ss + (ph + np.float32(10.7)), ts + np.float32(3.7)),
            ]
        )
        out *= np.float32(0.8)
        out += col * np.float32(0.35)
        out[:, _frame_distance(s, t, w, h) < np.float32(0.03)] = col2
        return out
    if pattern == "window":
        # sky brightening towards the top, white or wooden frame with a cross of mullions
        out = col * (np.float32(0.85) + np.float32(0.25 / h) * t)
        bar = np.float32(0.025)
        frame = (_frame_distance(s, t, w, h) < np.float32(0.05)) | (
            np.abs(s - np.float32(w / 2)) < bar
        )
        frame |= np.abs(t - np.float32(h * 0.6)) < bar
        out[:, frame] = col2
        return out
    if pattern == "door":
        g = _noise(s * np.float32(8.0) + ph, t * np.float32(0.7))
        out = col * (np.float32(0.9) + np.float32(0.2) * g)
        d = _frame_distance(s, t, w, h)
        out[:, (d < np.float32(0.04)) | ((d > np.float32(0.12)) & (d < np.float32(0.14)))] = col2
        knob = (s - np.float32(w - 0.1)) ** 2 + (t - _F1) ** 2 < np.float32(0.03**2)
        out[:, knob] = np.float32(0.75)
        return out
    if pattern == "screen":
        out = col * (_F1 + np.float32(0.6 / max(w, 1e-3)) * s)
        out[:, _frame_distance(s, t, w, h) < np.float32(0.025)] = col2
        return out
    if pattern == "board":
        m = _noise(ss + ph, ts)
        m *= _F2 * contrast
        m += _F1 - contrast
        out = col * m
        out[:, _frame_distance(s, t, w, h) < np.float32(0.025)] = col2
        return out
    raise ValueError(f"unknown material pattern {pattern!r}")


def _dot_normal(n: Sequence, vx: np.ndarray, vy: np.ndarray, vz: np.ndarray) -> np.ndarray:
    """``n . v`` for a normal given as floats (planes) or arrays (boxes); skips zero terms."""
    terms = [
        nc * vc
        for nc, vc in zip(n, (vx, vy, vz), strict=True)
        if not (isinstance(nc, float) and nc == 0.0)
    ]
    out = terms[0]
    for term in terms[1:]:
        out = out + term
    return out


def _shade(
    layout: SceneLayout, x: np.ndarray, y: np.ndarray, z: np.ndarray, n: Sequence
) -> np.ndarray:
    """Scalar irradiance (ambient + directional + Lambertian point lights) per point."""
    sun = np.asarray(layout.sun_direction, dtype=np.float64)
    sun = sun / max(float(np.linalg.norm(sun)), 1e-9)
    sun_term = _dot_normal(n, *(np.float32(-c) for c in sun))
    base = np.maximum(sun_term, _F0) * np.float32(layout.sun_intensity) + np.float32(layout.ambient)
    out = np.empty(x.shape, dtype=np.float32)
    out[...] = base
    for light in layout.lights:
        lx = np.float32(light.position[0]) - x
        ly = np.float32(light.position[1]) - y
        lz = np.float32(light.position[2]) - z
        d2 = lx * lx
        d2 += ly * ly
        d2 += lz * lz
        ndl = _dot_normal(n, lx, ly, lz)
        np.maximum(ndl, _F0, out=ndl)
        f2 = np.float32(light.falloff**2)
        # cos(theta) / (1 + d^2 / falloff^2), written with one sqrt and one division
        ndl *= np.float32(light.intensity) * f2
        ndl /= np.sqrt(d2) * (d2 + f2)
        out += ndl
    return out


def _plane_coords(
    surface: int, x: np.ndarray, y: np.ndarray, z: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    if surface in (SURFACE_WALL_X0, SURFACE_WALL_X1):
        return z, y
    if surface in (SURFACE_WALL_Z0, SURFACE_WALL_Z1):
        return x, y
    return x, z


def _group_pixels(tr: _Trace, n_boxes: int) -> list[tuple[int, np.ndarray]]:
    """Flat pixel indices of each visible surface, in surface order."""
    w = tr.sid.shape[1]
    sid_flat = tr.sid.ravel()
    groups = []
    for k in range(NUM_ROOM_SURFACES):
        idx = np.flatnonzero(sid_flat == k)
        if idx.size:
            groups.append((k, idx))
    for b in range(n_boxes):
        rect = tr.box_rects[b]
        if rect is None:
            continue
        r0, r1, c0, c1 = rect
        # a box's hits lie inside its screen rectangle, so only that part is searched
        rr, cc = np.nonzero(tr.sid[r0:r1, c0:c1] == NUM_ROOM_SURFACES + b)
        if rr.size:
            groups.append((NUM_ROOM_SURFACES + b, (rr + r0) * w + (cc + c0)))
    return groups


def _colour_and_labels(
    layout: SceneLayout, tr: _Trace
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Shade every hit.

    Pixels are processed grouped by surface (so each group is a contiguous slice).

    Returns:
        ``order`` (H*W,) the pixel permutation used, ``rgb`` (3, H*W) float32 linear colour in
        ~[0, 1] and ``seg`` (H*W,) uint8 labels, both in ``order``.
    """
    h, w = tr.t.shape
    groups = _group_pixels(tr, len(layout.boxes))
    order = np.concatenate([idx for _, idx in groups])
    t = tr.t.ravel().take(order)
    cx, cy, cz = (np.float32(v) for v in layout.camera.position)
    hit_x = tr.dx.ravel().take(order)
    hit_x *= t
    hit_x += cx
    hit_y = np.broadcast_to(tr.dy, (h, w)).ravel().take(order)
    hit_y *= t
    hit_y += cy
    hit_z = tr.dz.ravel().take(order)
    hit_z *= t
    hit_z += cz

    rgb = np.empty((3, order.size), dtype=np.float32)
    seg = np.empty(order.size, dtype=np.uint8)
    room_materials = (layout.wall_material,) * 4 + (layout.floor_material, layout.ceiling_material)
    room_labels = (WALL,) * 4 + (FLOOR, CEILING)
    decals_by_surface: dict[int, list[Decal]] = {}
    for decal in layout.decals:
        decals_by_surface.setdefault(decal.surface, []).append(decal)

    start = 0
    for k, idx in groups:
        sl = slice(start, start + idx.size)
        start += idx.size
        x, y, z = hit_x[sl], hit_y[sl], hit_z[sl]
        if k < NUM_ROOM_SURFACES:
            normal: Sequence = _ROOM_NORMALS[k]
            seg[sl] = room_labels[k]
            u, v = _plane_coords(k, x, y, z)
            albedo = _albedo(room_materials[k], u, v)
            for decal in decals_by_surface.get(k, ()):
                u0, u1, v0, v1 = (np.float32(c) for c in decal.rect)
                inside = (u >= u0) & (u <= u1) & (v >= v0) & (v <= v1)
                sel = np.flatnonzero(inside)
                if not sel.size:
                    continue
                seg[sl][sel] = decal.label
                albedo[:, sel] = _albedo(
                    decal.material, u[sel] - u0, v[sel] - v0, (float(u1 - u0), float(v1 - v0))
                )
        else:
            box = layout.boxes[k - NUM_ROOM_SURFACES]
            seg[sl] = box.label
            normal, albedo = _box_surface(box, x, y, z)
        albedo *= _shade(layout, x, y, z, normal)
        rgb[:, sl] = albedo
    return order, rgb, seg


def _box_surface(
    box: Box, x: np.ndarray, y: np.ndarray, z: np.ndarray
) -> tuple[tuple[np.ndarray, ...], np.ndarray]:
    """World normals and albedo (3, n) of hit points on a box."""
    c, s = np.float32(math.cos(box.yaw)), np.float32(math.sin(box.yaw))
    hx, hy, hz = (np.float32(v / 2) for v in box.size)
    rx = x - np.float32(box.center[0])
    rz = z - np.float32(box.center[1])
    lx = rx * c - rz * s
    lz = rx * s + rz * c
    ly = y - hy
    qx = np.abs(lx) / hx
    qy = np.abs(ly) / hy
    qz = np.abs(lz) / hz
    # the face hit is the one whose slab the point lies on, i.e. the largest normalised coordinate
    face_x = (qx >= qy) & (qx >= qz)
    face_y = ~face_x & (qy >= qz)
    face_z = ~(face_x | face_y)
    fx = np.where(face_x, np.copysign(_F1, lx), _F0)
    fz = np.where(face_z, np.copysign(_F1, lz), _F0)
    nx = fx * c + fz * s
    nz = fz * c - fx * s
    ny = np.where(face_y, np.copysign(_F1, ly), _F0)

    # face coordinates: (z, y) on x faces, (x, z) on the top / bottom, (x, y) on z faces
    fs = np.where(face_x, lz, lx)
    ft = np.where(face_y, lz, ly)
    albedo = _albedo(box.material, fs + np.float32(box.size[0] + box.size[2]), ft + hy)
    rim_s = np.where(face_x, hz, hx) - np.abs(fs)
    rim_t = np.where(face_y, hz, hy) - np.abs(ft)
    albedo[:, np.minimum(rim_s, rim_t) < np.float32(_BOX_EDGE_WIDTH)] *= np.float32(_BOX_EDGE_SHADE)
    return (nx, ny, nz), albedo


# --------------------------------------------------------------------------------------------
# Depth holes
# --------------------------------------------------------------------------------------------

_HOLE_JUMP_REL = 0.04  # relative depth step that counts as a discontinuity
_HOLE_JUMP_ABS = 0.05  # metres
_HOLE_EDGE_DROPOUT = 0.35  # probability that a pixel next to a discontinuity is lost
_HOLE_GLASS_PROB = 0.5  # probability that all window / TV pixels of a frame read invalid
_HOLE_MAX_SHADOW_PX = 32


def _kinect_holes(
    depth: np.ndarray, seg: np.ndarray, rng: np.random.Generator, fx: float
) -> np.ndarray:
    """Mask (H, W) of pixels a structured-light sensor would fail to measure."""
    h, w = depth.shape
    mask = np.zeros((h, w), dtype=bool)

    # Projector shadow: the projector sits beside the IR camera, so background just left of a
    # foreground edge receives no pattern; the band's width is the disparity difference.
    far = depth[:, :-1]
    near = depth[:, 1:]
    step = far - near
    edge = (step > np.maximum(np.float32(_HOLE_JUMP_ABS), np.float32(_HOLE_JUMP_REL) * far)) & (
        near > 0
    )
    rows, cols = np.nonzero(edge)
    if rows.size:
        zn = near[rows, cols]
        zf = far[rows, cols]
        width_px = fx * KINECT_BASELINE_M * (1.0 / zn - 1.0 / zf)
        width_px = np.minimum(
            width_px + rng.uniform(0.0, 1.5, rows.size), _HOLE_MAX_SHADOW_PX
        ).astype(np.int64)
        for k in range(int(width_px.max()) + 1 if width_px.size else 0):
            sel = width_px > k
            c = cols[sel] - k
            ok = c >= 0
            mask[rows[sel][ok], c[ok]] = True

    # Ragged borders: random dropout of pixels on either side of any depth discontinuity.
    jump_h = np.abs(depth[:, 1:] - depth[:, :-1]) > np.float32(_HOLE_JUMP_REL) * depth[:, 1:]
    jump_v = np.abs(depth[1:, :] - depth[:-1, :]) > np.float32(_HOLE_JUMP_REL) * depth[1:, :]
    border = np.zeros((h, w), dtype=bool)
    border[:, 1:] |= jump_h
    border[:, :-1] |= jump_h
    border[1:, :] |= jump_v
    border[:-1, :] |= jump_v
    mask |= border & (rng.random((h, w), dtype=np.float32) < _HOLE_EDGE_DROPOUT)

    # A few blobs (specular or absorbing spots).
    yy = np.arange(h, dtype=np.float32)[:, None]
    xx = np.arange(w, dtype=np.float32)[None, :]
    for _ in range(int(rng.integers(1, 6))):
        cy_, cx_ = rng.uniform(0, h), rng.uniform(0, w)
        ry = max(1.0, rng.uniform(0.01, 0.06) * h)
        rx = max(1.0, rng.uniform(0.01, 0.06) * w)
        r0, r1 = max(0, int(cy_ - ry)), min(h, int(cy_ + ry) + 1)
        c0, c1 = max(0, int(cx_ - rx)), min(w, int(cx_ + rx) + 1)
        if r0 >= r1 or c0 >= c1:
            continue
        d = ((yy[r0:r1] - cy_) / ry) ** 2 + ((xx[:, c0:c1] - cx_) / rx) ** 2
        mask[r0:r1, c0:c1] |= d <= 1.0

    # Glass and dark screens often return nothing.
    for name in ("window", "television"):
        if rng.random() < _HOLE_GLASS_PROB:
            mask |= seg == NYU40_IDS[name]
    return mask


# --------------------------------------------------------------------------------------------
# Public rendering API
# --------------------------------------------------------------------------------------------


_NOISE_BANK_SIZE = 1 << 21


@functools.lru_cache(maxsize=1)
def _noise_bank() -> np.ndarray:
    return np.random.default_rng(0xB0A7).standard_normal(_NOISE_BANK_SIZE, dtype=np.float32)


def _sensor_noise(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Standard normal noise of ``shape``.

    Drawing ~200k normals costs more than the whole ray cast, so frames take a random window
    of a fixed bank of i.i.d. normals instead (fresh draws only when the bank is too small).
    """
    count = math.prod(shape)
    if count > _NOISE_BANK_SIZE // 2:
        return rng.standard_normal(shape, dtype=np.float32)
    offset = int(rng.integers(0, _NOISE_BANK_SIZE - count + 1))
    return _noise_bank()[offset : offset + count].reshape(shape)


def render_layout(
    layout: SceneLayout,
    size: int | tuple[int, int] = 256,
    *,
    holes: bool = False,
    max_depth: float = 10.0,
) -> dict[str, np.ndarray]:
    """Render a (possibly hand-built) layout.

    Args:
        layout: Scene to render; the camera must be strictly inside the room.
        size: ``S`` for ``S x S`` or ``(H, W)``.
        holes: Add Kinect-like invalid depth (0) at discontinuities, blobs and glass. Labels and
            image are unaffected.
        max_depth: Depths beyond this many metres are set to 0 (invalid).

    Returns:
        ``image`` (H, W, 3) uint8, ``depth`` (H, W) float32 metres with 0 = invalid and ``seg``
        (H, W) uint8 0-based NYU-40 ids (``IGNORE_LABEL`` where nothing was hit).
    """
    h, w = _parse_size(size)
    if not max_depth > 0:
        raise ValueError(f"max_depth must be positive, got {max_depth}")
    n = h * w
    tr = _trace(layout, h, w)
    order, rgb, seg_sorted = _colour_and_labels(layout, tr)

    # sensor noise and quantisation, still in surface order (the noise is i.i.d. anyway)
    rng = np.random.default_rng([*layout.key, 1])
    rgb *= _col(layout.light_tint) * np.float32(255.0)
    if layout.noise_sigma > 0:
        rgb += _sensor_noise(rng, rgb.shape) * np.float32(layout.noise_sigma)
    rgb += np.float32(0.5)  # round rather than truncate in the uint8 cast
    np.clip(rgb, _F0, np.float32(255.0), out=rgb)
    rgb8 = rgb.astype(np.uint8)

    # back to raster order: one inverse permutation, then 1-D gathers
    inverse = np.empty(n, dtype=np.intp)
    inverse[order] = np.arange(n, dtype=np.intp)
    image = np.empty((n, 3), dtype=np.uint8)
    for c in range(3):
        image[:, c] = rgb8[c].take(inverse)
    seg = seg_sorted.take(inverse)

    t = tr.t
    missed = ~np.isfinite(t.ravel())
    if missed.any():
        seg[missed] = IGNORE_LABEL
        image[missed] = 0
    depth = np.where(t <= np.float32(max_depth), t, _F0)
    image = image.reshape(h, w, 3)
    seg = seg.reshape(h, w)

    if holes:
        hole_rng = np.random.default_rng([*layout.key, 2])
        depth[_kinect_holes(depth, seg, hole_rng, camera_intrinsics((h, w))[0])] = 0.0
    return {"image": image, "depth": depth, "seg": seg}


def render_scene(
    seed: int,
    index: int,
    size: int | tuple[int, int] = 256,
    *,
    holes: bool = False,
    max_depth: float = 10.0,
) -> dict[str, np.ndarray]:
    """Render frame ``index`` of the synthrooms set ``seed``.

    Args:
        seed: Data-set seed (non-negative).
        index: Frame index (non-negative).
        size: ``S`` for ``S x S`` or ``(H, W)``.
        holes: Add Kinect-like invalid depth; labels and image are unaffected.
        max_depth: Depths beyond this many metres are set to 0 (invalid).

    Returns:
        ``{"image": uint8 (H, W, 3), "depth": float32 (H, W) metres (0 = invalid),
        "seg": uint8 (H, W) 0-based NYU-40 ids, 255 = ignore}``.
    """
    return render_layout(scene_layout(seed, index), size, holes=holes, max_depth=max_depth)


def render_batch(
    seed: int,
    indices: Sequence[int],
    size: int | tuple[int, int] = 256,
    *,
    holes: bool = False,
    max_depth: float = 10.0,
) -> dict[str, np.ndarray]:
    """Render several frames and stack them.

    Args:
        seed: Data-set seed.
        indices: Frame indices; each frame is identical to ``render_scene(seed, index, ...)``.
        size: ``S`` for ``S x S`` or ``(H, W)``.
        holes: Add Kinect-like invalid depth.
        max_depth: Depths beyond this many metres are set to 0 (invalid).

    Returns:
        ``image`` (N, H, W, 3) uint8, ``depth`` (N, H, W) float32, ``seg`` (N, H, W) uint8.
    """
    h, w = _parse_size(size)
    n = len(indices)
    out = {
        "image": np.empty((n, h, w, 3), dtype=np.uint8),
        "depth": np.empty((n, h, w), dtype=np.float32),
        "seg": np.empty((n, h, w), dtype=np.uint8),
    }
    for i, index in enumerate(indices):
        frame = render_scene(seed, int(index), (h, w), holes=holes, max_depth=max_depth)
        for key, arr in frame.items():
            out[key][i] = arr
    return out

"""Scene description: room surface indices and the frozen dataclasses a frame is rendered from."""

from __future__ import annotations

from dataclasses import dataclass

# Surface indices of the room; furniture box k gets surface index NUM_ROOM_SURFACES + k.
SURFACE_WALL_X0 = 0  # plane x = 0, wall coordinates (u, v) = (z, y)
SURFACE_WALL_X1 = 1  # plane x = width, (u, v) = (z, y)
SURFACE_WALL_Z0 = 2  # plane z = 0, (u, v) = (x, y)
SURFACE_WALL_Z1 = 3  # plane z = depth, (u, v) = (x, y)
SURFACE_FLOOR = 4  # plane y = 0, (u, v) = (x, z)
SURFACE_CEILING = 5  # plane y = height, (u, v) = (x, z)
NUM_ROOM_SURFACES = 6
WALL_SURFACES = (SURFACE_WALL_X0, SURFACE_WALL_X1, SURFACE_WALL_Z0, SURFACE_WALL_Z1)


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

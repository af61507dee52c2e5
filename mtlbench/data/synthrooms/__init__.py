"""Procedural indoor scenes ("synthrooms") rendered by vectorised numpy ray casting.

Each frame is a box-shaped room (floor, ceiling, four walls) with 2-8 box-shaped furniture
pieces standing on the floor and flat decals (pictures, windows, doors, ...) on the walls and
floor. Every pixel gets an RGB colour, a metric z-depth (Kinect-style distance along the optical
axis), an NYU-40 class id (0-based) and the exact unit normal of the surface it hit (camera
frame of :mod:`mtlbench.data.normals`: x right, y up, z toward the viewer), so the frames stand
in for NYU Depth V2 in tests and smoke runs without any download.

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

# Each module imports only from those before it in: labels, scene, sensor, layout, raycast,
# shading, frames.
# Underscored names are shared between these modules but are not part of the package's API.
from mtlbench.data.synthrooms.frames import render_batch, render_layout, render_scene
from mtlbench.data.synthrooms.labels import (
    IGNORE_LABEL,
    NYU40_DECALS,
    NYU40_FURNITURE,
    NYU40_IDS,
    NYU40_NAMES,
    NYU40_STRUCTURE,
)
from mtlbench.data.synthrooms.layout import scene_layout
from mtlbench.data.synthrooms.scene import (
    SURFACE_CEILING,
    SURFACE_FLOOR,
    SURFACE_WALL_X0,
    SURFACE_WALL_X1,
    SURFACE_WALL_Z0,
    SURFACE_WALL_Z1,
    Box,
    Camera,
    Decal,
    Material,
    PointLight,
    SceneLayout,
)
from mtlbench.data.synthrooms.sensor import camera_intrinsics

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

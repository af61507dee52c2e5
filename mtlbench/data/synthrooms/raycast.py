"""Ray casting: z-depth and surface hit of one ray per pixel through the room and its furniture."""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np

from mtlbench.data.synthrooms.scene import (
    NUM_ROOM_SURFACES,
    SURFACE_FLOOR,
    SURFACE_WALL_Z0,
    Box,
    SceneLayout,
)
from mtlbench.data.synthrooms.sensor import camera_intrinsics

_NEAR_EPS = 1e-3  # corners closer than this to the camera plane disable screen-space culling


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

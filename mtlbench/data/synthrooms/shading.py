"""Appearance of the hits: procedural textures, Lambertian shading and per-pixel labels."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from mtlbench.data.synthrooms.labels import CEILING, FLOOR, WALL
from mtlbench.data.synthrooms.raycast import _Trace
from mtlbench.data.synthrooms.scene import (
    NUM_ROOM_SURFACES,
    SURFACE_WALL_X0,
    SURFACE_WALL_X1,
    SURFACE_WALL_Z0,
    SURFACE_WALL_Z1,
    Box,
    Decal,
    Material,
    SceneLayout,
)

# Colours are handled channel-first, (3, n): numpy's broadcasting over a trailing axis of
# length 3 is several times slower than three contiguous rows.

_ROOM_NORMALS: tuple[tuple[float, float, float], ...] = (
    (1.0, 0.0, 0.0),
    (-1.0, 0.0, 0.0),
    (0.0, 0.0, 1.0),
    (0.0, 0.0, -1.0),
    (0.0, 1.0, 0.0),
    (0.0, -1.0, 0.0),
)  # indexed by room surface, pointing into the room

_BOX_EDGE_WIDTH = 0.02  # metres of darkened rim on furniture faces, so box edges read as edges
_BOX_EDGE_SHADE = 0.72

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
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Shade every hit.

    Pixels are processed grouped by surface (so each group is a contiguous slice).

    Returns:
        ``order`` (H*W,) the pixel permutation used, ``rgb`` (3, H*W) float32 linear colour in
        ~[0, 1], ``seg`` (H*W,) uint8 labels and ``normals`` (3, H*W) float32 world unit normals
        of the hit surfaces (facing the camera), all in ``order``. The normals are the ones the
        shading uses, so they are exact rather than estimated from depth.
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
    normals = np.empty((3, order.size), dtype=np.float32)
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
        for c in range(3):
            normals[c, sl] = normal[c]  # a float (planes) or an array (box faces)
    return order, rgb, seg, normals


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

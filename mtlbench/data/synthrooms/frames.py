"""Whole frames: a layout ray cast, shaded, passed through the sensor model and stacked."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from mtlbench.data.synthrooms.labels import IGNORE_LABEL
from mtlbench.data.synthrooms.layout import scene_layout
from mtlbench.data.synthrooms.raycast import _camera_basis, _trace
from mtlbench.data.synthrooms.scene import SceneLayout
from mtlbench.data.synthrooms.sensor import (
    _kinect_holes,
    _parse_size,
    _sensor_noise,
    camera_intrinsics,
)
from mtlbench.data.synthrooms.shading import _F0, _col, _colour_and_labels


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
        ``image`` (H, W, 3) uint8, ``depth`` (H, W) float32 metres with 0 = invalid, ``seg``
        (H, W) uint8 0-based NYU-40 ids (``IGNORE_LABEL`` where nothing was hit) and
        ``normals`` (H, W, 3) float32: the exact unit normal of each hit surface in the camera
        frame of :mod:`mtlbench.data.normals` (x right, y up, z toward the viewer), ``(0, 0, 0)``
        exactly where ``depth`` is 0 (nothing hit, beyond ``max_depth`` or a hole).
    """
    h, w = _parse_size(size)
    if not max_depth > 0:
        raise ValueError(f"max_depth must be positive, got {max_depth}")
    n = h * w
    tr = _trace(layout, h, w)
    order, rgb, seg_sorted, normals_world = _colour_and_labels(layout, tr)

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
    normals = _camera_normals(layout, normals_world, inverse)

    t = tr.t
    missed = ~np.isfinite(t.ravel())
    if missed.any():
        seg[missed] = IGNORE_LABEL
        image[missed] = 0
    depth = np.where(t <= np.float32(max_depth), t, _F0)
    seg = seg.reshape(h, w)

    if holes:
        hole_rng = np.random.default_rng([*layout.key, 2])
        depth[_kinect_holes(depth, seg, hole_rng, camera_intrinsics((h, w))[0])] = 0.0
    normals = normals.reshape(h, w, 3)
    normals[depth == 0] = 0.0  # invalid exactly where depth is
    return {"image": image.reshape(h, w, 3), "depth": depth, "seg": seg, "normals": normals}


def _camera_normals(layout: SceneLayout, world: np.ndarray, inverse: np.ndarray) -> np.ndarray:
    """(H*W, 3) float32 camera-frame normals from (3, H*W) world normals in shading order.

    The camera's right / down / forward axes are the rows of the world-to-camera rotation; the
    y and z flips turn OpenCV's (right, down, forward) into (right, up, toward the viewer).
    """
    right, down, fwd = _camera_basis(layout.camera.yaw, layout.camera.pitch)
    rot = np.array([right, [-c for c in down], [-c for c in fwd]], dtype=np.float64)
    # gather to raster order, then rotate; einsum's own loop, since a BLAS call for a 3×3
    # factor costs more in thread wake-ups than the arithmetic
    return np.einsum("cn,cd->nd", world.take(inverse, axis=1), rot.T.astype(np.float32))


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
        "seg": uint8 (H, W) 0-based NYU-40 ids, 255 = ignore, "normals": float32 (H, W, 3) exact
        camera-frame unit normals, 0 where depth is}`` (see :func:`render_layout`).
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
        ``image`` (N, H, W, 3) uint8, ``depth`` (N, H, W) float32, ``seg`` (N, H, W) uint8,
        ``normals`` (N, H, W, 3) float32.
    """
    h, w = _parse_size(size)
    n = len(indices)
    out: dict[str, np.ndarray] = {
        "image": np.empty((n, h, w, 3), dtype=np.uint8),
        "depth": np.empty((n, h, w), dtype=np.float32),
        "seg": np.empty((n, h, w), dtype=np.uint8),
        "normals": np.empty((n, h, w, 3), dtype=np.float32),
    }
    for i, index in enumerate(indices):
        frame = render_scene(seed, int(index), (h, w), holes=holes, max_depth=max_depth)
        for key, arr in frame.items():
            out[key][i] = arr
    return out

"""The Kinect-like sensor: NYU intrinsics, RGB sensor noise and depth holes."""

from __future__ import annotations

import functools
import math

import numpy as np

from mtlbench.data.synthrooms.labels import NYU40_IDS

NYU_WIDTH, NYU_HEIGHT = 640, 480
NYU_FX, NYU_FY, NYU_CX, NYU_CY = 518.86, 519.47, 325.58, 253.74
KINECT_BASELINE_M = 0.075  # IR projector <-> camera, sets the width of shadow holes


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


# --------------------------------------------------------------------------------------------
# RGB noise
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

"""Surface normals: the camera-frame convention, normals from depth, and NYUD normal-file readers.

Convention (used everywhere in mtlbench): unit vectors in the CAMERA frame with ``x`` to the right
of the image, ``y`` UP in the image and ``z`` TOWARD the viewer (out of the screen), i.e. the
OpenGL camera axes. A visible surface faces the camera, so its normal has ``n · ray < 0`` for the
viewing ray: a wall straight ahead is ``(0, 0, 1)``, a floor seen from above is ``(0, 1, 0)``.
Arrays are float32 ``H×W×3`` (channels x, y, z), or ``B×3×H×W`` tensors; invalid pixels are
``(0, 0, 0)``.

Pixel model: pixel ``(row i, col j)`` is the ray through the image point ``(u, v) = (j + 0.5,
i + 0.5)`` with ``x_cv = (u - cx) / fx · z``, ``y_cv = (v - cy) / fy · z`` (OpenCV axes, ``y``
down, ``z`` forward): the synthrooms renderer's model, under which resizing a frame scales all
four intrinsics by the size ratio (:func:`scale_intrinsics`). The NYU toolbox back-projects
1-based column ``j + 1`` instead of ``j + 0.5``; half a pixel of principal point moves ray
directions by under 0.06° at 640×480, far below what normals resolve.

Normals from depth (:func:`normals_from_depth`) are total-least-squares plane fits over a square
window of back-projected points, the method of the NYU ground truth (see the function). The
NYUD normal files are float ``.npy`` or 8-bit images, each with its own channel order and signs;
:func:`decode_normals_png` and :func:`read_nyud_mt_normals` convert them into the convention above
(see ``LADICKY_AXES`` and ``NYUD_MT_AXES`` for what is verified about each).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor


class Intrinsics(NamedTuple):
    """Pinhole intrinsics in pixels: focal lengths and principal point."""

    fx: float
    fy: float
    cx: float
    cy: float


# NYU Depth V2 toolbox, camera_params.m ("RGB Intrinsic Parameters", fx_rgb, fy_rgb, cx_rgb,
# cy_rgb; calibrated with the RGBDemo tool) for the 640×480 Kinect RGB frame that the labeled
# set's depth is registered to. Same values in Silberman's rgb_plane2rgb_world.m copies.
KINECT_INTRINSICS = Intrinsics(
    fx=5.1885790117450188e02, fy=5.1946961112127485e02, cx=3.2558244941119034e02, cy=2.5373616633400465e02
)
KINECT_SIZE = (480, 640)  # (H, W) of the frame KINECT_INTRINSICS belong to


def scale_intrinsics(
    intrinsics: Intrinsics, size: tuple[int, int], from_size: tuple[int, int] = KINECT_SIZE
) -> Intrinsics:
    """Intrinsics of a frame resized from ``from_size`` to ``size`` (both ``(H, W)``).

    Under the half-pixel model of this module a resize (``align_corners=False``, what torch and
    OpenCV do) maps image point ``u`` to ``u · W'/W``, so every intrinsic scales with its axis'
    ratio; the synthrooms renderer's ``camera_intrinsics`` is this with the rounded NYU values.
    Crops are not covered: they shift ``cx, cy`` by the crop offset instead.
    """
    (h, w), (h0, w0) = size, from_size
    if min(h, w, h0, w0) < 1:
        raise ValueError(f"sizes must be positive, got {size} from {from_size}")
    sx, sy = w / w0, h / h0
    return Intrinsics(intrinsics.fx * sx, intrinsics.fy * sy, intrinsics.cx * sx, intrinsics.cy * sy)


# --------------------------------------------------------------------------------------------
# Normals from depth
# --------------------------------------------------------------------------------------------

# Best of 3..25 against the NYU ground truth of frame 433 at 640×480 (median 4.1° vs 4.8° at 19,
# 8.4° at 15, 18.9° at 9: raw Kinect depth is quantised, so small windows see the steps).
DEFAULT_WINDOW = 21
DEFAULT_MIN_VALID = 0.5
_CHUNK_PIXELS = 1 << 20  # frames per pass ~ this many pixels: bounds the float64 temporaries (~1 GB)


def _box_sum(x: Tensor, window: int) -> Tensor:
    """Sum over a ``window × window`` neighbourhood (zero outside the image), B×C×H×W.

    Summed-area table: four lookups per pixel whatever the window (float64 keeps the
    differences of large prefix sums exact enough).
    """
    r = window // 2
    h, w = x.shape[-2:]
    c = F.pad(x, (r + 1, r, r + 1, r)).cumsum(-1).cumsum(-2)
    k = window
    return c[..., k:k + h, k:k + w] - c[..., :h, k:k + w] - c[..., k:k + h, :w] + c[..., :h, :w]


def _smallest_eigvec(
    a00: Tensor, a01: Tensor, a02: Tensor, a11: Tensor, a12: Tensor, a22: Tensor
) -> tuple[Tensor, Tensor, Tensor]:
    """Unit eigenvector ``(vx, vy, vz)`` of the smallest eigenvalue of symmetric 3×3 matrices.

    Closed form (trigonometric eigenvalues, then the longest cross product of two rows of
    ``A - λ_min I``, which is orthogonal to all three): elementwise ops on same-shaped tensors,
    identical on CPU and GPU, no solver calls. Inputs should be float64: a plane's thickness
    eigenvalue is ~1e-3 of the others or less.
    """
    q = (a00 + a11 + a22) / 3
    b00, b11, b22 = a00 - q, a11 - q, a22 - q
    p2 = b00 * b00 + b11 * b11 + b22 * b22 + 2 * (a01 * a01 + a02 * a02 + a12 * a12)
    p = torch.sqrt(p2 / 6).clamp_min(1e-300)
    det = (b00 * (b11 * b22 - a12 * a12) - a01 * (a01 * b22 - a12 * a02) + a02 * (a01 * a12 - b11 * a02)) / (p * p * p)
    phi = torch.acos((det / 2).clamp(-1.0, 1.0)) / 3
    lam = q + 2 * p * torch.cos(phi + 2 * math.pi / 3)  # the smallest of q + 2p cos(phi + 2πk/3)
    d00, d11, d22 = a00 - lam, a11 - lam, a22 - lam
    # rows r0 = (d00, a01, a02), r1 = (a01, d11, a12), r2 = (a02, a12, d22): their cross products
    c01 = (a01 * a12 - a02 * d11, a02 * a01 - d00 * a12, d00 * d11 - a01 * a01)
    c02 = (a01 * d22 - a02 * a12, a02 * a02 - d00 * d22, d00 * a12 - a01 * a02)
    c12 = (d11 * d22 - a12 * a12, a12 * a02 - a01 * d22, a01 * a12 - d11 * a02)
    n01, n02, n12 = (c[0] * c[0] + c[1] * c[1] + c[2] * c[2] for c in (c01, c02, c12))
    use01 = (n01 >= n02) & (n01 >= n12)
    use02 = ~use01 & (n02 >= n12)
    best = torch.where(use01, n01, torch.where(use02, n02, n12))
    inv = torch.rsqrt(best.clamp_min(1e-300))
    vx, vy, vz = (torch.where(use01, u, torch.where(use02, v, w)) * inv for u, v, w in zip(c01, c02, c12))
    return vx, vy, vz


def normals_from_depth(
    depth: Tensor,
    fx: float,
    fy: float,
    cx: float,
    cy: float,
    window: int = DEFAULT_WINDOW,
    min_valid: float = DEFAULT_MIN_VALID,
) -> Tensor:
    """Surface normals (B×3×H×W, our camera frame) from metric z-depth (B×H×W, 0 = invalid).

    Each pixel gets the normal of the total-least-squares plane through the valid back-projected
    points of the ``window × window`` square around it: the eigenvector of the smallest
    eigenvalue of their 3×3 covariance, turned to face the camera. The covariance entries are box
    filters of the masked point coordinates and their products (float64, so the centring
    ``E[pp^T] - E[p]E[p]^T`` keeps millimetre flatness at metres of depth), so the cost does not
    depend on the content and one call serves a whole batch on CPU or GPU.

    This is the NYU ground truth's method: Silberman et al.'s ``compute_local_planes``
    (ECCV 2012 support-inference code, used for the normals of Ladicky et al. 2014 and
    Eigen & Fergus 2015) fits a least-squares plane to the 3-D points of a window around each
    pixel and orients it by the viewing ray. Differences: it runs on the colorization-filled
    depth, samples a sparse 19×19 window (offsets 0, ±1, ±3, ±6, ±9), drops neighbours whose depth
    differs from the centre's by over 5 % (so planes do not straddle occlusion edges) and fits
    ``[x y z 1]`` homogeneously without centring. Here the window is dense, there is no
    depth-jump gate (a box filter cannot depend on the centre pixel), the fit is centred, and
    raw depth with holes is fine: holes just drop out of the sums.

    Args:
        depth: B×H×W metres, 0 (or non-finite) = invalid.
        fx, fy, cx, cy: Intrinsics of this frame under the half-pixel model (module docstring);
            :func:`scale_intrinsics` of :data:`KINECT_INTRINSICS` for resized NYU frames.
        window: Odd side of the square neighbourhood in pixels (≥ 3).
        min_valid: Fraction of the window's in-image pixels that must have valid depth; pixels
            with fewer, or with invalid depth themselves, or whose neighbours are collinear, get
            ``(0, 0, 0)``.

    Returns:
        B×3×H×W unit normals (x right, y up, z toward the viewer) in ``depth``'s floating dtype
        (float32 for integer input), zero where invalid.
    """
    if depth.dim() != 3:
        raise ValueError(f"depth must be B×H×W, got shape {tuple(depth.shape)}")
    if window < 3 or window % 2 == 0:
        raise ValueError(f"window must be an odd integer >= 3, got {window}")
    if not 0 < min_valid <= 1:
        raise ValueError(f"min_valid must be in (0, 1], got {min_valid}")
    out_dtype = depth.dtype if depth.is_floating_point() else torch.float32
    b, h, w = depth.shape
    step = max(1, _CHUNK_PIXELS // max(1, h * w))
    if b > step:
        return torch.cat([normals_from_depth(depth[i:i + step], fx, fy, cx, cy, window, min_valid)
                          for i in range(0, b, step)])
    z = depth.to(torch.float64)
    valid = torch.isfinite(z) & (z > 0)
    z = torch.where(valid, z, torch.zeros((), dtype=z.dtype, device=z.device))
    m = valid.to(torch.float64)

    # ray directions (a, b, 1) in OpenCV axes: x right, y down, z forward
    a = ((torch.arange(w, dtype=torch.float64, device=z.device) + 0.5 - cx) / fx).view(1, 1, w)
    bb = ((torch.arange(h, dtype=torch.float64, device=z.device) + 0.5 - cy) / fy).view(1, h, 1)
    x, y = a * z, bb * z  # zero where invalid, so the sums below only see valid points

    moments = torch.stack([m, x, y, z, x * x, x * y, x * z, y * y, y * z, z * z], 1)
    s = _box_sum(moments, window)
    n = s[:, 0]
    inv_n = 1.0 / n.clamp_min(1.0)
    mx, my, mz = s[:, 1] * inv_n, s[:, 2] * inv_n, s[:, 3] * inv_n
    cxx = s[:, 4] * inv_n - mx * mx
    cxy = s[:, 5] * inv_n - mx * my
    cxz = s[:, 6] * inv_n - mx * mz
    cyy = s[:, 7] * inv_n - my * my
    cyz = s[:, 8] * inv_n - my * mz
    czz = s[:, 9] * inv_n - mz * mz
    # scale-free problem: normalise by the trace so thresholds and the solver see O(1) numbers
    tr = (cxx + cyy + czz).clamp_min(1e-300)
    vx, vy, vz = _smallest_eigvec(cxx / tr, cxy / tr, cxz / tr, cyy / tr, cyz / tr, czz / tr)

    # face the camera (n · ray < 0 with ray = (a, b, 1)), and OpenCV → x right, y up, z back
    flip = torch.where(vx * a + vy * bb + vz > 0, -1.0, 1.0)
    # windows are clipped at the image border: count against the in-image part
    r = window // 2
    ii = torch.arange(h, device=z.device)
    jj = torch.arange(w, device=z.device)
    rows = (ii + r).clamp_max(h - 1) - (ii - r).clamp_min(0) + 1
    cols = (jj + r).clamp_max(w - 1) - (jj - r).clamp_min(0) + 1
    inside = (rows.view(h, 1) * cols.view(1, w)).to(torch.float64)
    ok = valid & (n >= min_valid * inside - 1e-9) & (n >= 3)
    # collinear or coincident neighbours: the two largest eigenvalues are not both present
    ok &= (cxx * cyy - cxy * cxy + cxx * czz - cxz * cxz + cyy * czz - cyz * cyz) / (tr * tr) > 1e-6
    zero = torch.zeros((), dtype=out_dtype, device=z.device)
    # where, not a product: degenerate windows may hold NaN, and invalid must be +0.0
    parts = ((vx, flip), (vy, -flip), (vz, -flip))
    return torch.stack([torch.where(ok, (v * f).to(out_dtype), zero) for v, f in parts], 1)


def kinect_normals(depth: Tensor, window: int | None = None) -> Tensor:
    """Normals of NYU Depth V2 frames (N×H×W metres, 0 = invalid) as N×H×W×3 float32.

    :func:`normals_from_depth` with :data:`KINECT_INTRINSICS` scaled to the frame's size (the
    frames must be whole Kinect frames, resized or not; not crops) and, by default,
    :data:`DEFAULT_WINDOW` scaled with the width (the window is meant in 640×480 pixels),
    channel-last like the other per-pixel arrays of a dataset.
    """
    if depth.dim() != 3:
        raise ValueError(f"depth must be N×H×W, got shape {tuple(depth.shape)}")
    h, w = depth.shape[1:]
    if window is None:
        window = max(3, 2 * round(DEFAULT_WINDOW * w / KINECT_SIZE[1] / 2 - 0.5) + 1)
    k = scale_intrinsics(KINECT_INTRINSICS, (h, w))
    return normals_from_depth(depth, *k, window=window).permute(0, 2, 3, 1).contiguous()


# --------------------------------------------------------------------------------------------
# Normal files
# --------------------------------------------------------------------------------------------

Axes = tuple[str, str, str]
"""Which of our signed axes each file channel holds, e.g. ``("x", "-z", "y")``: channel 0 is our
``x``, channel 1 is ``-z`` (pointing away from the viewer), channel 2 is our ``y``."""

OUR_AXES: Axes = ("x", "y", "z")

# NYU toolbox-crop normals, the kind Ladicky et al. 2014 released (nyu_normals_gt, PNG,
# n = px/255·2-1) and Eigen & Fergus 2015 used, as verified on a real file:
# DrSleep/multi-task-refinenet
# examples/ExpNYUD_three/norm_gt_000433.png (grey 127 outside the toolbox's projection mask,
# 1-based rows 45:471 and cols 41:601, the crop of Silberman's compute_local_planes pipeline).
# Its channels are (right, away from the viewer, up): the back wall decodes to ch1 ≈ -0.9, the
# floor to ch2 ≈ +1, and of all 48 signed channel permutations, fitting against normals_from_depth
# of the frame's own depth picks this one (median 4.1° vs 20.3° for the next; tests/data/test_normals_data.py).
LADICKY_AXES: Axes = ("x", "-z", "y")

# NYUD-MT (MTI-Net / ATRC / InvPT releases). What the loaders establish: channel 0 is the image's
# horizontal axis (every RandomHorizontalFlip negates normals[..., 0]: SimonVandenhende/
# Multi-Task-Learning-PyTorch data/custom_transforms.py, prismformore/Multi-Task-Transformer
# TaskPrompter/data/transforms.py). Nothing in those repositories pins the order or sign of
# channels 1-2 (NYUD trains with rotation 0, so the in-plane rotation code never runs on it),
# and no release file was available to check. ASSUMED: the same order as the toolbox-crop file
# above, the NYU normals of the work NYUD-MT descends from (ASTMT's NYUD_MT, which the later
# releases repackage). Check one release file (a wall facing the camera must come out near
# (0, 0, 1), the floor near (0, 1, 0)) and pass ``axes`` if it differs.
NYUD_MT_AXES: Axes = LADICKY_AXES

_AXIS_INDEX = {"x": 0, "y": 1, "z": 2}


def _parse_axes(axes: Axes) -> tuple[list[int], np.ndarray]:
    """Our axis index and sign for each file channel; rejects non-permutations."""
    idx, sign = [], []
    for a in axes:
        neg = a.startswith("-")
        name = a.lstrip("+-")
        if name not in _AXIS_INDEX:
            raise ValueError(f"bad axis {a!r} in {axes!r}: use x, y, z with an optional sign")
        idx.append(_AXIS_INDEX[name])
        sign.append(-1.0 if neg else 1.0)
    if sorted(idx) != [0, 1, 2]:
        raise ValueError(f"axes {axes!r} must name x, y and z once each")
    return idx, np.asarray(sign, dtype=np.float32)


def to_camera_frame(normals: np.ndarray, axes: Axes) -> np.ndarray:
    """Reorder and flip a file's channels (``…×3``) into our convention; see :data:`Axes`."""
    idx, sign = _parse_axes(axes)
    out = np.empty(normals.shape, dtype=np.float32)
    out[..., idx] = normals.astype(np.float32, copy=False) * sign
    return out


def from_camera_frame(normals: np.ndarray, axes: Axes) -> np.ndarray:
    """Inverse of :func:`to_camera_frame`: our convention into a file's channel order."""
    idx, sign = _parse_axes(axes)
    return normals.astype(np.float32, copy=False)[..., idx] * sign


def _clean(n: np.ndarray, min_norm: float) -> np.ndarray:
    """Unit vectors where ``|n| >= min_norm`` (and finite), ``(0, 0, 0)`` elsewhere."""
    n = np.where(np.isfinite(n), n, 0).astype(np.float32)
    length = np.linalg.norm(n, axis=-1, keepdims=True)
    ok = length >= min_norm
    return np.where(ok, n / np.where(ok, length, 1), 0).astype(np.float32)


def decode_normals_png(rgb: np.ndarray, axes: Axes = NYUD_MT_AXES, min_norm: float = 0.5) -> np.ndarray:
    """H×W×3 uint8 normal image → H×W×3 float32 unit normals in our convention.

    The NYUD PNG/JPEG encoding (ASTMT ``_load_normals``, InvPT/TaskPrompter ``_load_normals``,
    Ladicky's ``nyu_normals_gt``): ``n = px / 255 · 2 - 1`` per channel, channels as ``axes``. The
    mid-grey fill outside the valid area (127 or 128 → |n| < 0.01) and anything else shorter
    than ``min_norm`` is invalid and comes back as ``(0, 0, 0)``; the rest is renormalised (8-bit
    quantisation leaves lengths in 0.99..1.01).
    """
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[-1] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"expected an H×W×3 uint8 image, got {rgb.dtype} {rgb.shape}")
    n = rgb.astype(np.float32) * np.float32(2.0 / 255.0) - np.float32(1.0)
    return _clean(to_camera_frame(n, axes), min_norm)


def encode_normals_png(normals: np.ndarray, axes: Axes = NYUD_MT_AXES) -> np.ndarray:
    """Our H×W×3 normals → uint8 image in the NYUD encoding (invalid ``(0, 0, 0)`` → 128 grey).

    The inverse of :func:`decode_normals_png` up to 8-bit rounding; the MTI-Net/ASTMT evaluation
    reads prediction PNGs back with ``2 · px / 255 - 1``.
    """
    n = from_camera_frame(np.asarray(normals), axes)
    return np.clip(np.rint((n + 1.0) * 127.5), 0, 255).astype(np.uint8)


def read_nyud_mt_normals(path: str | Path, axes: Axes = NYUD_MT_AXES) -> np.ndarray:
    """One NYUD-MT ``normals/`` file → H×W×3 float32 unit normals in our convention.

    Formats, by release (file type decides):
        ``.npy``: MTI-Net and ATRC's ``NYUD_MT.tgz`` (SimonVandenhende/Multi-Task-Learning-PyTorch
            data/nyud.py ``np.load``, brdav/atrc src/data/nyud.py): float H×W×3 (channel-last:
            the loaders index ``[:, :, 0]`` and cv2.resize them), unit vectors, invalid pixels are
            ``(0, 0, 0)`` (evaluation/eval_normals.py: ``valid_mask = norm != 0``;
            AddIgnoreRegions turns norm-0 pixels into 255 = ignore).
        ``.png``: InvPT/TaskPrompter's copy (prismformore/Multi-Task-Transformer
            TaskPrompter/data/nyud.py): uint8 RGB, ``2 · px / 255 - 1``.
        ``.jpg``: ASTMT's original NYUD_MT (facebookresearch/astmt fblib/dataloaders/nyud.py),
            same decoding as PNG (JPEG noise included).

    A 3×H×W ``.npy`` is accepted too. ``axes`` says which of our axes each channel holds; the
    default is :data:`NYUD_MT_AXES` (see the note there on what is and is not verified).
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".npy":
        n = np.load(path)
        if n.ndim == 3 and n.shape[-1] != 3 and n.shape[0] == 3:
            n = np.moveaxis(n, 0, -1)
        if n.ndim != 3 or n.shape[-1] != 3:
            raise ValueError(f"{path}: expected H×W×3 normals, got shape {n.shape}")
        # exact zeros mark invalid; real normals are unit length (allow resampling shrinkage)
        return _clean(to_camera_frame(n.astype(np.float32), axes), 1e-3)
    if suffix in (".png", ".jpg", ".jpeg"):
        from PIL import Image

        with Image.open(path) as im:
            rgb = np.asarray(im.convert("RGB"))
        return decode_normals_png(rgb, axes)
    raise ValueError(f"{path}: unknown normals file type {suffix!r} (expected .npy, .png or .jpg)")


def angular_error_deg(pred: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Angle in degrees between two ``…×3`` normal fields where both are non-zero (flattened).

    The per-pixel error of the NYUD normal benchmarks (ASTMT / MTI-Net eval_normals.py), whose
    mean, median and % under 11.25°, 22.5°, 30° are the reported numbers.
    """
    p = _clean(np.asarray(pred, dtype=np.float32), 1e-6)
    t = _clean(np.asarray(target, dtype=np.float32), 1e-6)
    both = (np.abs(p).sum(-1) > 0) & (np.abs(t).sum(-1) > 0)
    pb, tb = p[both].astype(np.float64), t[both].astype(np.float64)
    # atan2 of |p×t| and p·t: exact near 0°, where float32 arccos bottoms out at 0.02°
    cross = np.linalg.norm(np.cross(pb, tb), axis=-1)
    return np.degrees(np.arctan2(cross, (pb * tb).sum(-1)))

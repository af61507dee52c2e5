"""Depth-boundary errors (DBE) of iBims-1, batched in torch.

Koch et al., "Evaluation of CNN-based Single-Image Depth Estimation Methods" (ECCV workshops
2018) measure how well a predicted depth map reproduces depth discontinuities. Edges of the
prediction are extracted with Canny (on the map normalised to [0, 1] by its min/max, σ = √2,
hysteresis thresholds 0.15/0.3, as ``skimage.feature.canny``). With ``D_gt`` the Euclidean
distance to the nearest ground-truth edge, ``D_est`` the one to the nearest predicted edge and
θ = 10 px:

- accuracy ``dbe_acc`` = mean of ``D_gt`` over the predicted edges with ``D_gt < θ``; θ when
  there are none (then ``dbe_comp`` is θ too, as in the official script);
- completeness ``dbe_comp`` = (Σ_pred-edges min(D_gt, θ) + Σ_gt-edges min(D_est, θ)) /
  (#pred edges + #gt edges);
- an image without ground-truth edges gets NaN for both (to be skipped when averaging).

**Proxy ground truth.** iBims-1 has hand-annotated depth edges; NYUv2 has none. Here the
ground-truth edges are the same Canny applied to the normalised ground-truth depth. The numbers
measure agreement with the edges Canny finds in the ground truth, so they are **not comparable to
iBims-1 tables**.

Masking: min/max normalisation uses only valid pixels, and Canny gets the valid mask the way
``skimage.feature.canny(..., mask=valid)`` does (smoothing renormalised over valid pixels; no edge
on a pixel with an invalid 8-neighbour or on the image border). Both maps use the same mask.

Canny follows ``skimage.feature.canny`` step by step (Gaussian of σ truncated at 4σ with zero
padding renormalised by the smoothed mask, ``scipy.ndimage.sobel`` gradients (unnormalised,
edge-replicated), absolute thresholds on the gradient magnitude, non-maximum suppression
interpolated between the two neighbours around the gradient direction, 8-connected hysteresis),
in float32. The Gaussian and Sobel filters are kornia's (``gaussian_blur2d`` with zero padding,
``spatial_gradient`` unnormalised), equal to scipy's up to float32 round-off. The magnitude,
suppression and hysteresis are written here: ``kornia.filters.sobel`` and ``kornia.filters.canny``
differ from skimage (``tests/metrics/test_boundary.py`` shows where). On smooth images, rendered
and real NYUv2 depth maps the edges are identical to skimage's; they can differ only at exact ties
(a step exactly between two pixel rows, a perfectly linear ramp above the high threshold), where
skimage's own choice is float round-off: scipy smooths in float64, which would cost three times
as much here.

It is organised for speed on CPU: dense filtering runs on cache-sized groups of maps;
everything after thresholding runs on the sparse list of candidate pixels, with hysteresis done
as connected components by hooking and pointer jumping (a handful of rounds instead of one
dilation per pixel of edge length).
"""

from __future__ import annotations

import numpy as np
import torch
from kornia.filters import gaussian_blur2d, spatial_gradient
from torch import Tensor

from mtlbench.metrics.geometry import truncated_sq_edt_at

__all__ = ["canny", "chamfer_errors", "depth_boundary_errors"]


def _gaussian(x: Tensor, sigma: float) -> Tensor:
    """``scipy.ndimage.gaussian_filter(mode='constant')``, truncated at 4σ, over the last two dims."""
    r = int(4.0 * sigma + 0.5)
    maps = x.reshape(-1, 1, *x.shape[-2:])
    return gaussian_blur2d(maps, 2 * r + 1, (sigma, sigma), border_type="constant").view(x.shape)


def _sobel(x: Tensor) -> Tensor:
    """``scipy.ndimage.sobel`` of N×H×W maps as N×2×H×W: along columns (axis 1), then along rows
    (axis 0); unnormalised, border replicated (scipy's 'reflect' at 1 px)."""
    return spatial_gradient(x[:, None], mode="sobel", order=1, normalized=False)[:, 0]


def _eroded(valid: Tensor) -> Tensor:
    """Pixels whose whole 3×3 neighbourhood is valid and inside the map (c×H×W bool)."""
    rows = valid[:, :, :-2] & valid[:, :, 1:-1] & valid[:, :, 2:]
    out = torch.zeros_like(valid)
    out[:, 1:-1, 1:-1] = rows[:, :-2] & rows[:, 1:-1] & rows[:, 2:]
    return out


def _flat_nonzero(mask: Tensor) -> Tensor:
    """Sorted int64 flat indices of the ``True`` entries of a bool tensor."""
    if mask.device.type == "cpu":
        # torch.nonzero on CPU is single-threaded and several times slower than numpy's
        return torch.from_numpy(np.flatnonzero(mask.numpy()))
    return mask.reshape(-1).nonzero().squeeze(1)


def _components_with_seed(u: Tensor, v: Tensor, n: int, seed: Tensor) -> Tensor:
    """For a graph on ``n`` nodes with undirected edges ``u``–``v``: whether each node's connected
    component contains a node flagged in ``seed``.

    Shiloach–Vishkin style: every node points to a smaller node of its component; pointers jump
    until they reach roots, then the roots at both ends of every edge are hooked to the smaller
    one, until no edge joins two roots. Rounds grow roughly logarithmically with component size.

    Args:
        u: int64 edge ends.
        v: int64 other edge ends.
        n: number of nodes.
        seed: int64 indices of the flagged nodes.
    """
    parent = torch.arange(n, device=seed.device)
    if u.numel():
        # start from each node's smallest neighbour: chains along the edge curves
        parent.scatter_reduce_(0, u, v, reduce="amin")
        parent.scatter_reduce_(0, v, u, reduce="amin")
        while True:
            while True:
                jumped = parent.index_select(0, parent)
                if torch.equal(jumped, parent):
                    break
                parent = jumped
            pu, pv = parent.index_select(0, u), parent.index_select(0, v)
            low = torch.minimum(pu, pv)
            hooked = parent.clone()
            hooked.scatter_reduce_(0, pu, low, reduce="amin")
            hooked.scatter_reduce_(0, pv, low, reduce="amin")
            if torch.equal(hooked, parent):
                break
            parent = hooked
    good = torch.zeros(n, dtype=torch.bool, device=seed.device)
    good[parent.index_select(0, seed)] = True
    return good.index_select(0, parent)


# Dense work runs on groups of maps of about this many pixels: small enough to stay in cache
# between the dozens of passes over them, large enough to amortise per-call overhead.
_CHUNK_PIXELS = 1 << 18


class _CannyState:
    """Thinned candidates (non-maximum suppressed, above the low threshold) gathered over chunks,
    with the 8-neighbour links between them."""

    def __init__(self) -> None:
        self.points: list[Tensor] = []
        self.strong: list[Tensor] = []
        self.u: list[Tensor] = []
        self.v: list[Tensor] = []
        self.count = 0
        self._lut: Tensor | None = None

    def add_chunk(self, x: Tensor, valid: Tensor | None, sigma: float, low: Tensor,
                  high: Tensor, base: int, bleed: Tensor | None, eroded: Tensor | None) -> None:
        """Canny up to hysteresis on c×H×W float32 maps whose first pixel has flat index ``base``.

        Args:
            x: maps, c×H×W float32 contiguous.
            valid: c×H×W bool, or ``None`` with ``bleed``/``eroded`` given for all-valid maps.
            sigma: Gaussian σ.
            low: per-map low threshold, c float32.
            high: per-map high threshold, c float32.
            base: flat index of ``x[0, 0, 0]`` in the whole batch.
            bleed: smoothed all-ones map plus eps (1×H×W), when ``valid`` is ``None``.
            eroded: interior mask (1×H×W), when ``valid`` is ``None``.
        """
        c, h, w = x.shape
        eps = torch.finfo(torch.float32).eps
        if valid is None:
            assert bleed is not None and eroded is not None  # the caller's contract (see Args)
            smoothed = _gaussian(x, sigma).div_(bleed)
        else:
            # the masked map and the mask itself in one call
            both = _gaussian(torch.stack([torch.where(valid, x, 0.0), valid.float()]), sigma)
            smoothed = both[0].div_(both[1].add_(eps))
            del both
            eroded = _eroded(valid)
        grad = _sobel(smoothed)
        del smoothed
        gj, gi = grad[:, 0], grad[:, 1]
        # not kornia.filters.sobel's magnitude: its 1e-6 under the root is a 1e-3 floor, as large
        # as a real edge once thresholds scale with a shallow map's range
        mag2 = gi * gi
        mag2.addcmul_(gj, gj)
        # candidates: squared magnitude above the low threshold with slack (the exact test on the
        # float32 magnitude is done on the survivors) inside the eroded mask
        low2 = (low.double().square() * (1 - 1e-5)).float().view(c, 1, 1)
        cand = mag2 >= low2
        cand &= eroded
        p = _flat_nonzero(cand)
        del cand
        mag = mag2.view(-1)
        m = mag.index_select(0, p).sqrt_()
        # not kornia.filters.canny, which rounds the direction to 45° and keeps border edges.
        # Non-maximum suppression: the magnitude, interpolated between the neighbour along the
        # dominant gradient axis and the diagonal neighbour next to it, on both sides
        at = p + torch.div(p, h * w, rounding_mode="floor").mul_(h * w)  # p's place in grad
        b = grad.view(-1).index_select(0, at)
        a = grad.view(-1).index_select(0, at.add_(h * w))
        same = (a > 0) == (b > 0)  # gradient towards the main diagonal (skimage's sign rule)
        aa, ab = a.abs_(), b.abs_()
        rowmajor = aa >= ab
        step = same.long().mul_(2 * w).sub_(w)  # row step (±W) towards the diagonal side
        major = torch.where(rowmajor, step, 1)
        diag = step + 1
        wgt = torch.minimum(aa, ab).div_(torch.maximum(aa, ab))
        # skimage's arithmetic: float32 product for the diagonal term, the rest in float64
        rest = 1 - wgt.double()
        m64 = m.double()
        keep = None
        for sign in (1, -1):
            near = mag.index_select(0, p + sign * diag).sqrt_().mul_(wgt).double()
            near += mag.index_select(0, p + sign * major).sqrt_().double().mul_(rest)
            keep = near <= m64 if keep is None else keep.logical_and_(near <= m64)
        assert keep is not None
        sel = _flat_nonzero(keep)
        p, m = p.index_select(0, sel), m.index_select(0, sel)
        img = torch.div(p, h * w, rounding_mode="floor")
        sel = _flat_nonzero(m >= low.index_select(0, img))
        p, m, img = p.index_select(0, sel), m.index_select(0, sel), img.index_select(0, sel)
        # links to the forward half of the 8-neighbourhood (p is never on a map border)
        k = p.numel()
        if self._lut is None or self._lut.numel() < c * h * w:
            self._lut = torch.full((c * h * w,), -1, dtype=torch.long, device=x.device)
        lut = self._lut
        lut[p] = torch.arange(k, device=x.device)
        if k:
            offsets = torch.tensor([1, w - 1, w, w + 1], device=x.device)
            nb = lut.index_select(0, (p[None, :] + offsets[:, None]).view(-1))
            has = _flat_nonzero(nb >= 0)
            self.u.append(has % k + self.count)
            self.v.append(nb.index_select(0, has) + self.count)
            lut[p] = -1  # reset only what was written; the table is reused for the next chunk
        self.points.append(p + base)
        self.strong.append(m >= high.index_select(0, img))
        self.count += k

    def edges(self) -> Tensor:
        """Flat indices (sorted by chunk, then position) of the pixels kept by hysteresis: the
        8-connected components of the thinned candidates that hold a strong pixel.

        kornia's hysteresis exists only inside ``kornia.filters.canny`` (after its own
        suppression), as one dilation per round."""
        if not self.points:
            return torch.zeros(0, dtype=torch.long)
        points = torch.cat(self.points)
        strong = torch.cat(self.strong)
        if not bool(strong.any()):
            return points[:0]
        u = torch.cat(self.u) if self.u else points[:0]
        v = torch.cat(self.v) if self.v else points[:0]
        good = _components_with_seed(u, v, self.count, _flat_nonzero(strong))
        return points[good]


def _chunks(n: int, h: int, w: int) -> int:
    """Maps per dense chunk."""
    return max(1, min(n, _CHUNK_PIXELS // max(h * w, 1)))


def _all_valid_aux(h: int, w: int, sigma: float, device: torch.device) -> tuple[Tensor, Tensor]:
    """Smoothed all-ones map plus eps and the interior mask, shared by all-valid maps."""
    ones = torch.ones(1, h, w, device=device)
    bleed = _gaussian(ones, sigma).add_(torch.finfo(torch.float32).eps)
    eroded = torch.zeros(1, h, w, dtype=torch.bool, device=device)
    eroded[:, 1:-1, 1:-1] = True
    return bleed, eroded


def _as_maps(x: Tensor) -> Tensor:
    """N×H×W float32 view of a B×H×W (or B×1×H×W) tensor."""
    if x.dim() == 4 and x.shape[1] == 1:
        x = x[:, 0]
    if x.dim() != 3:
        raise ValueError(f"expected B×H×W maps, got shape {tuple(x.shape)}")
    return x.float().contiguous()


@torch.no_grad()
def canny(x: Tensor, sigma: float = 2**0.5, low: float = 0.15, high: float = 0.3,
          valid: Tensor | None = None) -> Tensor:
    """Canny edges of each map, following ``skimage.feature.canny`` (module docstring).

    Args:
        x: B×H×W float maps (computed in float32).
        sigma: standard deviation of the Gaussian smoothing.
        low: low hysteresis threshold, absolute, on the Sobel gradient magnitude.
        high: high hysteresis threshold, absolute.
        valid: B×H×W bool mask of meaningful pixels (``skimage``'s ``mask``); ``None``: all.

    Returns:
        B×H×W bool edge maps.
    """
    if high < low:
        raise ValueError(f"low threshold {low} above high threshold {high}")
    maps = _as_maps(x)
    n, h, w = maps.shape
    if valid is not None:
        valid = valid.reshape(maps.shape).bool().contiguous()
    lo = torch.full((n,), low, dtype=torch.float32, device=maps.device)
    hi = torch.full((n,), high, dtype=torch.float32, device=maps.device)
    out = torch.zeros(n * h * w, dtype=torch.bool, device=maps.device)
    out[_canny_flat([maps], valid, sigma, [lo], [hi])] = True
    return out.view(n, h, w)


def _canny_flat(stacks: list[Tensor], valid: Tensor | None, sigma: float, lows: list[Tensor],
                highs: list[Tensor]) -> Tensor:
    """Canny edges of the maps of several N×H×W stacks (sharing ``valid``), as flat indices into
    their concatenation.

    Args:
        stacks: N×H×W float32 contiguous maps each.
        valid: N×H×W bool or ``None``.
        sigma: Gaussian σ.
        lows: per-map low thresholds, N float32 per stack (inf: no edges).
        highs: per-map high thresholds, likewise.
    """
    n, h, w = stacks[0].shape
    state = _CannyState()
    if h < 3 or w < 3 or n == 0:
        return torch.zeros(0, dtype=torch.long, device=stacks[0].device)
    bleed = eroded = None
    if valid is None:
        bleed, eroded = _all_valid_aux(h, w, sigma, stacks[0].device)
    c = _chunks(n, h, w)
    for s, (maps, lo, hi) in enumerate(zip(stacks, lows, highs)):
        for i in range(0, n, c):
            j = min(i + c, n)
            state.add_chunk(maps[i:j], None if valid is None else valid[i:j], sigma, lo[i:j], hi[i:j],
                            (s * n + i) * h * w, bleed, eroded)
    return state.edges().to(stacks[0].device)


def _chamfer(d_pred: Tensor, d_gt: Tensor, img_pred: Tensor, img_gt: Tensor, n: int,
             limit: float) -> tuple[Tensor, Tensor]:
    """acc/comp per image from the distances of predicted edges to the GT edges (``d_pred``) and of
    GT edges to the predicted ones (``d_gt``), float64, with the image of each edge pixel."""
    lim = float(limit)
    near = (d_pred < lim).nonzero().squeeze(1)
    zeros = torch.zeros(n, dtype=torch.float64, device=d_pred.device)
    n_near = zeros.index_add(0, img_pred[near], torch.ones_like(d_pred[near]))
    s_near = zeros.index_add(0, img_pred[near], d_pred[near])
    n_all = zeros.index_add(0, img_pred, torch.ones_like(d_pred))
    n_gt = zeros.index_add(0, img_gt, torch.ones_like(d_gt))
    n_all += n_gt
    s_comp = zeros.index_add(0, img_pred, d_pred.clamp(max=lim)).index_add(0, img_gt, d_gt.clamp(max=lim))
    # official rule: no predicted edge within θ of the ground truth → both errors are θ
    none = n_near == 0
    acc = torch.where(none, lim, s_near / n_near.clamp(min=1))
    comp = torch.where(none, lim, s_comp / n_all.clamp(min=1))
    nan = torch.full_like(acc, float("nan"))
    return torch.where(n_gt == 0, nan, acc), torch.where(n_gt == 0, nan, comp)


def _chamfer_flat(pred_pts: Tensor, gt_pts: Tensor, n: int, h: int, w: int,
                  limit: float) -> tuple[Tensor, Tensor]:
    """acc/comp for edge sets given as sorted flat indices into N·H·W."""
    device = gt_pts.device
    masks = torch.zeros(2, n * h * w, dtype=torch.bool, device=device)
    masks[0, gt_pts] = True
    masks[1, pred_pts] = True
    # squared distances only where they are needed: at the edge pixels of the other set
    sq = truncated_sq_edt_at(masks.view(2 * n, h, w), limit, torch.cat([pred_pts, gt_pts + n * h * w]))
    d = sq.double().sqrt_()
    d_pred, d_gt = d[:pred_pts.numel()], d[pred_pts.numel():]
    return _chamfer(d_pred, d_gt, pred_pts // (h * w), gt_pts // (h * w), n, limit)


@torch.no_grad()
def chamfer_errors(edges_pred: Tensor, edges_gt: Tensor, limit: float = 10.0) -> tuple[Tensor, Tensor]:
    """iBims-1 accuracy and completeness of predicted edges against ground-truth edges.

    Args:
        edges_pred: B×H×W bool predicted edges.
        edges_gt: B×H×W bool ground-truth edges.
        limit: truncation distance θ in pixels.

    Returns:
        ``(acc, comp)``, each B float64; θ for both where no predicted edge is closer than θ to a
        ground-truth edge, NaN for both where the ground truth has no edge.
    """
    if edges_pred.shape != edges_gt.shape or edges_pred.dim() != 3:
        raise ValueError(f"expected two B×H×W edge maps, got {tuple(edges_pred.shape)} and {tuple(edges_gt.shape)}")
    n, h, w = edges_gt.shape
    pred_pts = edges_pred.bool().reshape(-1).nonzero().squeeze(1)
    gt_pts = edges_gt.bool().reshape(-1).nonzero().squeeze(1)
    return _chamfer_flat(pred_pts, gt_pts, n, h, w, limit)


def _thresholds(x: Tensor, valid: Tensor | None, low: float, high: float) -> tuple[Tensor, Tensor]:
    """Thresholds equivalent to normalising each map to [0, 1] by its min/max over valid pixels.

    Canny is linear in its input up to an offset, which smoothing keeps and Sobel removes, so
    scaling the thresholds by each map's range equals normalising the map (and skips two passes).
    Flat maps and maps without a valid pixel get infinite thresholds: no edges.
    """
    if valid is None:
        lo, hi = x.amin(dim=(1, 2)), x.amax(dim=(1, 2))
    else:
        lo = torch.where(valid, x, float("inf")).amin(dim=(1, 2))
        hi = torch.where(valid, x, float("-inf")).amax(dim=(1, 2))
    span = hi - lo
    span = torch.where(torch.isfinite(span) & (span > 0), span, float("inf"))
    return low * span, high * span


@torch.no_grad()
def depth_boundary_errors(pred: Tensor, gt: Tensor, valid: Tensor | None = None,
                          limit: float = 10.0) -> tuple[Tensor, Tensor]:
    """iBims-1 depth-boundary errors per image, with Canny edges of the ground truth as the
    ground-truth edges (module docstring: a proxy, not comparable to iBims-1 tables).

    Args:
        pred: B×H×W predicted depth, metres.
        gt: B×H×W ground-truth depth, metres.
        valid: B×H×W bool mask of valid ground-truth pixels; ``None``: all.
        limit: truncation distance θ in pixels.

    Returns:
        ``(acc, comp)``, each B float64 in pixels; NaN where the ground truth has no edge.
    """
    p, g = _as_maps(pred), _as_maps(gt)
    if p.shape != g.shape:
        raise ValueError(f"pred {tuple(p.shape)} and gt {tuple(g.shape)} differ in shape")
    n, h, w = g.shape
    if valid is not None:
        valid = valid.reshape(g.shape).bool().contiguous()
        if bool(valid.all()):
            valid = None  # the cheaper all-valid path gives the same edges
    g_lo, g_hi = _thresholds(g, valid, 0.15, 0.3)
    p_lo, p_hi = _thresholds(p, valid, 0.15, 0.3)
    points = _canny_flat([g, p], valid, 2**0.5, [g_lo, p_lo], [g_hi, p_hi])
    split = n * h * w
    cut = int(torch.searchsorted(points, split))  # points are sorted: GT maps first
    return _chamfer_flat(points[cut:] - split, points[:cut], n, h, w, limit)

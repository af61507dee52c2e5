"""An independent check of every metric mtlbench reports: numpy float64 re-implementations written
from the published definitions (docs/evaluation.md, the module docstrings; the peers are MTI-Net's
``eval_depth``/``SemsegMeter``/``eval_normals``, LibMTL's NYUv2 metrics and Dollár's
``edgesEvalDir``), run against :mod:`mtlbench.metrics` and Δm on seeded random inputs with invalid
pixels. They share no code with the implementations: plain loops, boolean indexing and
concatenation, where the implementations stream masked sums.

Agreement is to 1e-9 relative (both sides are float64; the tolerance leaves room only for
summation order), except the normals median (a histogram: within one 0.001° bin) and δ/threshold
fractions, which are exact.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from mtlbench.metrics import DepthMetrics, NormalsMetrics, SegMetrics
from mtlbench.metrics.edge import ods_ois_ap
from mtlbench.metrics.normals import BIN
from mtlbench.report import results as R

REL = 1e-9


def _close(got: dict[str, float], ref: dict[str, float], rel: float = REL) -> None:
    assert set(got) == set(ref), set(got) ^ set(ref)
    bad = {k: (got[k], ref[k]) for k in ref if not math.isclose(got[k], ref[k], rel_tol=rel, abs_tol=1e-12)}
    assert not bad, bad


# --------------------------------------------------------------------------------------------- depth


def _depth_np(p: np.ndarray, g: np.ndarray) -> dict[str, float]:
    """The definitions over the valid pixels ``p``, ``g`` (1-D, metres, p clipped)."""
    d = np.log(p) - np.log(g)
    ratio = np.maximum(p / g, g / p)
    return {
        "mae": np.mean(np.abs(p - g)),
        "rmse": math.sqrt(np.mean((p - g) ** 2)),
        "abs_rel": np.mean(np.abs(p - g) / g),
        "sq_rel": np.mean((p - g) ** 2 / g),
        "rmse_log": math.sqrt(np.mean(d**2)),
        "log10": np.mean(np.abs(np.log10(p) - np.log10(g))),
        "silog": 100 * math.sqrt(np.var(d)),  # sqrt(mean d² − (mean d)²), computed two-pass
        **{f"delta{k}": np.mean(ratio < 1.25**k) for k in (1, 2, 3)},
    }


def _depth_reference(pred: np.ndarray, gt: np.ndarray, max_depth: float, min_depth: float,
                     cap: float) -> dict[str, float]:
    ps, gs, per_image = [], [], []
    for p_img, g_img in zip(pred.astype(np.float64), gt.astype(np.float64)):
        with np.errstate(invalid="ignore"):
            valid = (g_img > min_depth) & (g_img <= cap)
        if not valid.any():
            continue  # no valid pixel: not an image of the per-image mean
        p = np.clip(p_img[valid], min_depth, cap)
        ps.append(p)
        gs.append(g_img[valid])
        per_image.append(_depth_np(p, g_img[valid]))
    out = _depth_np(np.concatenate(ps), np.concatenate(gs))
    out["mae_norm"] = out["mae"] / max_depth
    out["rmse_norm"] = out["rmse"] / max_depth
    out.update({f"{k}_img": float(np.mean([m[k] for m in per_image])) for k in list(per_image[0])})
    return out


@pytest.mark.parametrize(("seed", "max_depth", "min_depth", "cap"), [(0, 10.0, 1e-3, None), (1, 10.0, 0.5, 8.0),
                                                                     (2, 80.0, 1e-3, None)])
def test_depth_against_numpy(seed, max_depth, min_depth, cap):
    rng = np.random.default_rng(seed)
    batches = []
    for b, h, w in ((3, 24, 32), (2, 24, 32), (1, 24, 32)):
        g = rng.uniform(0.0, 1.3 * max_depth, size=(b, 1, h, w)).astype(np.float32)
        g[rng.random(g.shape) < 0.1] = 0.0  # no measurement
        g[rng.random(g.shape) < 0.01] = np.nan  # a broken measurement is invalid too
        p = (np.nan_to_num(g, nan=1.0) * rng.uniform(0.5, 1.6, size=g.shape)
             + rng.normal(0, 0.3, size=g.shape)).astype(np.float32)  # some below 0: clipped
        batches.append((p, g))
    batches[1][1][1] = 0.0  # an image with no valid pixel
    m = DepthMetrics(max_depth, min_depth=min_depth, cap=cap, boundaries=False)
    for p, g in batches:
        m.update(torch.from_numpy(p), {"depth": torch.from_numpy(g)})
    pred = np.concatenate([p for p, _ in batches])[:, 0]
    gt = np.concatenate([g for _, g in batches])[:, 0]
    _close(m.compute(), _depth_reference(pred, gt, max_depth, min_depth, max_depth if cap is None else cap))


# --------------------------------------------------------------------------------------- segmentation


def _seg_reference(pred: np.ndarray, gt: np.ndarray, c: int) -> dict[str, float]:
    """SemsegMeter's confusion matrix; IoU per class present in gt or prediction (mmseg's nan-mean)."""
    labelled = (gt >= 0) & (gt < c)
    cm = np.zeros((c, c), dtype=np.int64)
    np.add.at(cm, (gt[labelled], pred[labelled]), 1)
    tp = np.diag(cm).astype(np.float64)
    gt_n, pred_n = cm.sum(1).astype(np.float64), cm.sum(0).astype(np.float64)
    total = cm.sum()
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = tp / (gt_n + pred_n - tp)  # NaN for a class in neither
        acc = tp / gt_n  # NaN for a class without ground truth
    out = {"pixel_acc": tp.sum() / total, "mean_acc": float(np.nanmean(acc)), "miou": float(np.nanmean(iou)),
           "fwiou": float(np.nansum(gt_n / total * iou))}
    out.update({f"iou/{i}": float(iou[i]) for i in range(c) if not np.isnan(iou[i])})
    return out


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_seg_against_numpy(seed):
    rng = np.random.default_rng(seed)
    c = 7
    gt = rng.integers(0, c, size=(4, 20, 30))
    pred = np.where(rng.random(gt.shape) < 0.6, gt, rng.integers(0, c, size=gt.shape))
    gt[rng.random(gt.shape) < 0.15] = 255  # unlabelled
    gt[gt == 5] = 255  # class 5 only predicted
    gt[gt == 6] = 255
    pred[pred == 6] = 0  # class 6 in neither: no IoU, out of the means
    m = SegMetrics(c)
    for i in range(0, 4, 2):
        m.update(torch.from_numpy(pred[i:i + 2]), {"seg": torch.from_numpy(gt[i:i + 2])})
    got = m.compute()
    assert "iou/6" not in got and "iou/5" in got
    _close(got, _seg_reference(pred, gt, c))


# ---------------------------------------------------------------------------------------------- normals


def _normals_reference(pred: np.ndarray, gt: np.ndarray) -> dict[str, float]:
    """MTI-Net's eval_normals: both normalised (+1e-12), degrees of acos of the clipped dot product,
    pooled over the valid pixels (ground-truth norm >= 0.5, finite)."""
    p = np.moveaxis(pred.astype(np.float64), 1, -1).reshape(-1, 3)
    g = np.moveaxis(gt.astype(np.float64), 1, -1).reshape(-1, 3)
    norm = np.linalg.norm(g, axis=1)
    valid = np.isfinite(norm) & (norm >= 0.5)
    p, g = p[valid], g[valid]
    p = p / (np.linalg.norm(p, axis=1, keepdims=True) + 1e-12)
    g = g / np.linalg.norm(g, axis=1, keepdims=True)
    deg = np.degrees(np.arccos(np.clip(np.sum(p * g, axis=1), -1, 1)))
    return {"mean": deg.mean(), "median": float(np.median(deg)), "rmse": math.sqrt(np.mean(deg**2)),
            "within_11.25": np.mean(deg < 11.25), "within_22.5": np.mean(deg < 22.5), "within_30": np.mean(deg < 30)}


@pytest.mark.parametrize("seed", [0, 1])
def test_normals_against_numpy(seed):
    rng = np.random.default_rng(seed)
    gt = rng.normal(size=(4, 3, 18, 22))
    gt /= np.linalg.norm(gt, axis=1, keepdims=True)
    gt[np.broadcast_to(rng.random((4, 1, 18, 22)) < 0.15, gt.shape)] = 0.0  # stored zeros
    gt[0, :, 0, :4] *= 0.3  # too short: invalid
    gt[1, 1, 2, 3] = np.nan
    pred = (gt + rng.normal(scale=0.5, size=gt.shape)) * rng.uniform(0.2, 3.0, size=(4, 1, 18, 22))
    pred = np.nan_to_num(pred, nan=0.3)
    gt, pred = gt.astype(np.float32), pred.astype(np.float32)
    m = NormalsMetrics()
    m.update(torch.from_numpy(pred[:3]), {"normals": torch.from_numpy(gt[:3])})
    m.update(torch.from_numpy(pred[3:]), {"normals": torch.from_numpy(gt[3:])})
    got, ref = m.compute(), _normals_reference(pred, gt)
    assert abs(got.pop("median") - ref.pop("median")) <= BIN
    # acos loses digits near 0° (atan2 does not): 1e-6° there, far below 1e-9 of the mean
    _close(got, ref)


# -------------------------------------------------------------------------------------------------- Δm

# the metrics of each variant and their directions, from docs/evaluation.md (MTI-Net's one metric
# per task; Nash-MTL's every metric), normals as MTI-Net / LibMTL report them
DELTA_MTI = {"depth/rmse": -1, "seg/miou": 1, "edge/ods": 1, "normals/mean": -1}
DELTA_ALL = {
    **{f"depth/{k}": -1 for k in ("rmse", "mae", "abs_rel", "sq_rel", "rmse_log", "log10", "silog")},
    **{f"depth/delta{k}": 1 for k in (1, 2, 3)},
    **{f"seg/{k}": 1 for k in ("miou", "pixel_acc", "mean_acc", "fwiou")},
    **{f"edge/{k}": 1 for k in ("ods", "ois", "ap")},
    "normals/mean": -1, "normals/median": -1, "normals/within_11.25": 1, "normals/within_22.5": 1,
    "normals/within_30": 1,
}


def _delta_reference(multi: dict[str, float], single: dict[str, float], signs: dict[str, int]) -> float:
    """Δm = 1/K Σ_k (−1)^{l_k} (M_multi,k − M_single,k) / M_single,k · 100."""
    return 100 * float(np.mean([signs[k] * (multi[k] - single[k]) / single[k] for k in signs]))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_delta_m_against_the_formula(seed):
    rng = np.random.default_rng(seed)
    keys = sorted(set(DELTA_ALL) | {"depth/mae_norm", "depth/rmse_img", "edge/ods_threshold", "seg/iou/wall",
                                    "normals/rmse"})  # the extra keys are in neither variant
    single = {k: float(rng.uniform(0.1, 2.0)) for k in keys}
    multi = {k: v * float(rng.uniform(0.7, 1.3)) for k, v in single.items()}
    tasks = ["depth", "seg", "edge", "normals"]
    for variant, signs in (("mti", DELTA_MTI), ("all", DELTA_ALL)):
        assert sorted(R.delta_keys(tasks, variant)) == sorted(signs)
        got = R.delta_m(multi, single, tasks, variant)
        assert got is not None and math.isclose(got, _delta_reference(multi, single, signs), rel_tol=1e-12)
    # a subset of tasks averages over theirs only
    sub = {k: s for k, s in DELTA_ALL.items() if k.startswith("seg/")}
    assert math.isclose(R.delta_m(multi, single, ["seg"], "all"), _delta_reference(multi, single, sub),
                        rel_tol=1e-12)


# ------------------------------------------------------------------------------------------------ edges


def _prf_np(cnt_p, sum_p, cnt_r, sum_r):
    eps = np.finfo(np.float64).eps  # MATLAB's eps
    p = cnt_p / np.maximum(eps, sum_p)
    r = cnt_r / np.maximum(eps, sum_r)
    return p, r, 2 * p * r / np.maximum(eps, p + r)


def _edges_reference(counts: np.ndarray) -> dict[str, float]:
    """``edgesEvalDir`` on per-image counts N×4×K (matched predicted, predicted, matched gt, gt),
    thresholds k/(K+1): ``findBestRPF`` for ODS, per-image best thresholds for OIS, interpolated
    precision at recall 0:0.01:1 for AP."""
    c = counts.astype(np.float64)
    k = c.shape[2]
    t = np.arange(1, k + 1) / (k + 1)
    p, r, f = _prf_np(*c.sum(0))
    # findBestRPF: 100 samples on each segment between adjacent thresholds; the first best wins
    if k == 1:
        best = (f[0], p[0], r[0], t[0])
    else:
        a = np.linspace(0, 1, 100)
        best = (-1.0, 0.0, 0.0, 0.0)
        for j in range(1, k):
            rj = r[j] * a + r[j - 1] * (1 - a)
            pj = p[j] * a + p[j - 1] * (1 - a)
            tj = t[j] * a + t[j - 1] * (1 - a)
            fj = 2 * pj * rj / np.maximum(np.finfo(np.float64).eps, pj + rj)
            i = int(np.argmax(fj))
            if fj[i] > best[0]:
                best = (fj[i], pj[i], rj[i], tj[i])
    # OIS: each image at its own best threshold (first of ties, not interpolated), counts summed
    at_best = np.zeros(4)
    for img in c:
        _, _, f_img = _prf_np(*img)
        at_best += img[:, int(np.argmax(f_img))]
    ois_p, ois_r, ois = _prf_np(*at_best)
    # AP: one point per distinct recall, the highest threshold's (MATLAB's old ``unique`` keeps the last)
    last = {}
    for j in range(k):
        last[r[j]] = j
    ru = np.array(sorted(last))
    pu = np.array([p[last[v]] for v in ru])
    ap = 0.0
    if len(ru) > 1:
        q = np.arange(101) / 100
        inside = (q >= ru[0]) & (q <= ru[-1])
        ap = float(np.interp(q[inside], ru, pu).sum() / 100)
    return {"ods": best[0], "ods_precision": best[1], "ods_recall": best[2], "ods_threshold": best[3],
            "ois": ois, "ois_precision": ois_p, "ois_recall": ois_r, "ap": ap}


def _random_counts(rng: np.random.Generator, n: int, k: int) -> np.ndarray:
    """Counts as a sweep of rising thresholds makes them: fewer predictions and rising precision,
    falling recall, matched <= all; some images without ground truth, thresholds without
    predictions, and recalls that repeat."""
    out = np.zeros((n, 4, k), dtype=np.int64)
    for i in range(n):
        gt = 0 if i % 5 == 4 else int(rng.integers(1, 400))
        pred = np.sort(rng.integers(0, 600, size=k))[::-1]
        pred[rng.integers(max(1, k // 2), k + 1):] = 0
        precision = np.sort(rng.uniform(0.05, 1.0, size=k))
        recall = np.sort(rng.uniform(0.0, 1.0, size=k))[::-1]
        recall[k // 3: k // 3 + 3] = recall[k // 3]  # a flat stretch: repeated recall
        matched_gt = np.floor(gt * recall).astype(np.int64)
        matched_gt[pred == 0] = 0
        out[i] = np.stack([np.floor(pred * precision).astype(np.int64), pred, matched_gt, np.full(k, gt)])
    return out


@pytest.mark.parametrize(("seed", "n", "k"), [(0, 7, 99), (1, 3, 9), (2, 12, 30), (3, 2, 1)])
def test_edge_scores_from_counts_against_numpy(seed, n, k):
    counts = _random_counts(np.random.default_rng(seed), n, k)
    _close(ods_ois_ap(torch.from_numpy(counts)), _edges_reference(counts))

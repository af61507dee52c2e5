"""Truncated distance transforms and the disk maximum filter against independent computations:
scipy's exact Euclidean distance transform and a brute-force numpy loop."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage

from mtlbench.metrics.geometry import disk_max, disk_offsets, truncated_edt, truncated_sq_edt, truncated_sq_edt_at


def _reference_edt(mask: np.ndarray, limit: float) -> np.ndarray:
    """scipy's exact EDT per map, clamped to ``limit`` (``limit`` everywhere for an empty map)."""
    out = np.full(mask.shape, float(limit))
    for i, m in enumerate(mask):
        if m.any():
            out[i] = np.minimum(ndimage.distance_transform_edt(~m), limit)
    return out


def _masks(rng: np.random.Generator) -> list[np.ndarray]:
    """Random sparse and dense masks, an empty one, border pixels, non-square and thin shapes."""
    cases = [
        rng.random((3, 37, 53)) < 0.01,
        rng.random((2, 64, 41)) < 0.002,
        rng.random((2, 23, 17)) < 0.3,
        rng.random((1, 5, 90)) < 0.02,
        rng.random((2, 90, 4)) < 0.02,
    ]
    empty = np.zeros((2, 30, 40), dtype=bool)
    empty[1, 7, 9] = True  # one map empty, one with a single pixel
    cases.append(empty)
    border = np.zeros((1, 32, 48), dtype=bool)
    border[0, 0, 5] = border[0, 31, 47] = border[0, 12, 0] = True  # corners and edges only
    cases.append(border)
    return cases


@pytest.mark.parametrize("limit", [4, 10, 4.5, 1])
def test_truncated_edt_equals_scipy(limit: float) -> None:
    rng = np.random.default_rng(0)
    for mask in _masks(rng):
        got = truncated_edt(torch.from_numpy(mask), limit).double().numpy()
        np.testing.assert_allclose(got, _reference_edt(mask, limit), rtol=0, atol=1e-5)


@pytest.mark.parametrize("limit", [4, 10])
def test_squared_distances_are_exact_integers_below_limit(limit: float) -> None:
    rng = np.random.default_rng(1)
    for mask in _masks(rng):
        sq, far = truncated_sq_edt(torch.from_numpy(mask), limit)
        sq = sq.long().numpy()
        ref = np.rint(_reference_edt(mask, np.inf) ** 2)  # inf for an empty map
        near = ref < limit**2
        np.testing.assert_array_equal(sq[near], ref[near])
        assert (sq[~near] >= limit**2).all() and (sq <= far).all()
        # the sparse variant at random pixels agrees with the dense one
        flat = torch.from_numpy(rng.permutation(mask.size)[:300])
        at = truncated_sq_edt_at(torch.from_numpy(mask), limit, flat).numpy()
        dense = sq.reshape(-1)[flat.numpy()]
        both_far = (at >= limit**2) & (dense >= limit**2)
        np.testing.assert_array_equal(at[~both_far], dense[~both_far])


def test_truncated_edt_hand_case() -> None:
    mask = torch.zeros(1, 5, 7, dtype=torch.bool)
    mask[0, 2, 3] = True
    got = truncated_edt(mask, 2.5)[0]
    assert got[2, 3] == 0 and got[2, 5] == 2 and got[0, 3] == 2
    assert got[1, 4] == pytest.approx(2**0.5) and got[0, 4] == pytest.approx(5**0.5)
    assert got[0, 0] == 2.5 and got[4, 6] == 2.5  # 3.6 px away: clamped


def test_limit_must_be_positive() -> None:
    with pytest.raises(ValueError):
        truncated_edt(torch.zeros(1, 3, 3, dtype=torch.bool), 0)


def _brute_disk_max(x: np.ndarray, radius: float) -> np.ndarray:
    _, h, w = x.shape
    out = np.full_like(x, -np.inf)
    r = int(np.ceil(radius))
    for i in range(h):
        for j in range(w):
            for dy in range(-r, r + 1):
                for dx in range(-r, r + 1):
                    ii, jj = i + dy, j + dx
                    if dy * dy + dx * dx <= radius * radius and 0 <= ii < h and 0 <= jj < w:
                        out[:, i, j] = np.maximum(out[:, i, j], x[:, ii, jj])
    return out


@pytest.mark.parametrize("radius", [0.5, 1, 1.5, 2.3, 3, 4.2])
def test_disk_max_equals_brute_force(radius: float) -> None:
    x = np.random.default_rng(2).standard_normal((2, 11, 14)).astype(np.float32)
    np.testing.assert_array_equal(disk_max(torch.from_numpy(x), radius).numpy(), _brute_disk_max(x, radius))


def test_disk_offsets() -> None:
    assert sorted(disk_offsets(1)) == [(-1, 0), (0, -1), (0, 0), (0, 1), (1, 0)]
    assert len(disk_offsets(1.5)) == 9
    assert len(disk_offsets(2)) == 13

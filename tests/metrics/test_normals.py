"""Surface-normal metrics: hand angles, validity, the histogram median, bad predictions, streaming and
reduction, against a numpy computation of the NYUD-MT protocol."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from mtlbench.errors import BadPredictionError
from mtlbench.metrics import NormalsMetrics
from mtlbench.metrics.normals import BIN, angular_error, median_from_histogram
from mtlbench.metrics.records import key_metric, lookup, records_for

KEYS = ("mean", "median", "rmse", "within_11.25", "within_22.5", "within_30")


def _maps(vectors: list[tuple[float, float, float]]) -> torch.Tensor:
    """1×3×1×N normal maps from a list of vectors."""
    return torch.tensor(vectors, dtype=torch.float32).T.reshape(1, 3, 1, len(vectors))


def _score(pred: list, gt: list) -> dict[str, float]:
    m = NormalsMetrics()
    m.update(_maps(pred), {"normals": _maps(gt)})
    return m.compute()


def _at_angles(degrees: list[float]) -> tuple[torch.Tensor, torch.Tensor]:
    """Predictions at the given angles from a ground truth of +z (float64, 1×3×1×N)."""
    a = torch.tensor(degrees, dtype=torch.float64).deg2rad()
    pred = torch.stack([a.sin(), torch.zeros_like(a), a.cos()]).reshape(1, 3, 1, -1)
    gt = torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64).view(1, 3, 1, 1).expand_as(pred)
    return pred, gt


def test_hand_angles():
    z, x = (0.0, 0.0, 1.0), (1.0, 0.0, 0.0)
    assert _score([z], [z])["mean"] == 0.0  # identical: exactly 0 (acos would give ~1e-6°)
    assert _score([x], [z])["mean"] == pytest.approx(90.0, abs=1e-12)  # orthogonal
    assert _score([(0.0, 0.0, -1.0)], [z])["mean"] == pytest.approx(180.0, abs=1e-12)  # opposite
    assert _score([(1.0, 0.0, 1.0)], [z])["mean"] == pytest.approx(45.0, abs=1e-12)  # a 45° rotation about y
    # 45° about an arbitrary axis: a unit vector and its rotation by Rodrigues' formula
    axis = np.array([1.0, 2.0, 2.0]) / 3.0
    n = np.array([2.0, -1.0, 0.0]) / math.sqrt(5)  # perpendicular to the axis
    rotated = n * math.cos(math.pi / 4) + np.cross(axis, n) * math.sin(math.pi / 4)
    assert _score([tuple(rotated)], [tuple(n)])["mean"] == pytest.approx(45.0, abs=1e-5)  # float32 inputs


def test_lengths_do_not_matter_and_a_zero_prediction_is_90_degrees():
    z = (0.0, 0.0, 1.0)
    assert _score([(3.0, 0.0, 3.0)], [z])["mean"] == pytest.approx(45.0, abs=1e-12)
    assert _score([(0.0, 0.0, 1e-30)], [z])["mean"] == 0.0
    # no direction: 90°, as MTI-Net's evaluation (its normalisation leaves 0, the dot product is 0)
    assert _score([(0.0, 0.0, 0.0)], [z])["mean"] == 90.0


def test_all_keys_of_a_hand_set():
    # angles 0, 10, 20, 30.5, 60 from +z; one invalid pixel of each kind in between
    pred, gt = _at_angles([0.0, 10.0, 20.0, 30.5, 60.0, 5.0, 5.0, 5.0, 5.0])
    gt = gt.clone()
    gt[0, :, 0, 5] = 0.0  # stored zero: invalid
    gt[0, :, 0, 6] = torch.tensor([0.0, 0.3, 0.3])  # norm 0.42 < 0.5: invalid
    gt[0, :, 0, 7] = torch.tensor([0.0, float("nan"), 1.0])  # non-finite: invalid
    gt[0, :, 0, 8] = torch.tensor([0.0, 0.0, 0.6])  # norm 0.6: valid, at 5°
    m = NormalsMetrics()
    m.update(pred, {"normals": gt})
    got = m.compute()
    angles = [0.0, 10.0, 20.0, 30.5, 60.0, 5.0]
    assert set(got) == set(KEYS) == set(m.names)
    assert got["mean"] == pytest.approx(sum(angles) / 6, rel=1e-12)
    assert got["rmse"] == pytest.approx(math.sqrt(sum(a * a for a in angles) / 6), rel=1e-12)
    assert got["median"] == pytest.approx((10.0 + 20.0) / 2, abs=BIN)  # sorted: 0 5 10 | 20 30.5 60
    assert (got["within_11.25"], got["within_22.5"], got["within_30"]) == (3 / 6, 4 / 6, 4 / 6)


@pytest.mark.parametrize(("angles", "median"), [
    ([10.0, 20.0, 30.0, 40.0, 50.0], 30.0),  # odd: the middle one
    ([10.0, 20.0, 30.0, 40.0], 25.0),  # even: the mean of the two middle ones, from different bins
    ([1.0, 1.0, 100.0, 100.0], 50.5),  # a gap between the middle two
    ([7.25] * 8, 7.25),  # one bin holds them all
    ([179.9999, 180.0, 180.0], 180.0),  # the last bin includes 180°
])
def test_median_of_known_sets(angles, median):
    pred, gt = _at_angles(angles)
    m = NormalsMetrics()
    m.update(pred, {"normals": gt})
    assert m.compute()["median"] == pytest.approx(median, abs=BIN)
    assert m.compute()["median"] == pytest.approx(float(np.median(angles)), abs=BIN)


def test_median_from_histogram_interpolates_inside_the_bin():
    hist = torch.zeros(10, dtype=torch.int64)
    hist[3] = 4  # four values in [3, 4) (unit bins): order statistics placed at 3.125, 3.375, 3.625, 3.875
    assert median_from_histogram(hist, 1.0) == pytest.approx((3.375 + 3.625) / 2)
    hist[7] = 1  # five values: the third is 3.625
    assert median_from_histogram(hist, 1.0) == pytest.approx(3.625)
    assert math.isnan(median_from_histogram(torch.zeros(5, dtype=torch.int64), 1.0))


def test_non_finite_predictions_at_valid_pixels_raise_with_their_count():
    pred, gt = _at_angles([10.0, 20.0, 30.0, 40.0])
    gt = gt.clone()
    pred = pred.clone()
    pred[0, 0, 0, 0] = float("nan")
    pred[0, 2, 0, 1] = float("inf")
    gt[0, :, 0, 3] = 0.0
    pred[0, :, 0, 3] = float("nan")  # invalid ground truth: not looked at
    m = NormalsMetrics()
    m.update(pred, {"normals": gt})
    with pytest.raises(BadPredictionError, match=r"normals predictions hold 2 pixels with a non-finite component .* "
                                         r"must return finite vectors"):
        m.compute()
    m.reset()
    m.update(pred[..., 2:], {"normals": gt[..., 2:]})
    assert m.compute()["mean"] == pytest.approx(30.0, abs=1e-12)


def test_shapes_are_checked():
    m = NormalsMetrics()
    with pytest.raises(ValueError, match="B×3×H×W"):
        m.update(torch.zeros(1, 2, 4, 4), {"normals": torch.zeros(1, 2, 4, 4)})
    with pytest.raises(ValueError, match="B×3×H×W"):
        m.update(torch.zeros(1, 3, 4, 4), {"normals": torch.zeros(1, 3, 4, 5)})
    assert m.compute() == {}


def _random(seed: int, b: int = 3, h: int = 17, w: int = 19) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    gt = torch.nn.functional.normalize(torch.randn(b, 3, h, w, generator=gen), dim=1)
    gt[torch.rand(b, 1, h, w, generator=gen).expand_as(gt) < 0.2] = 0.0  # invalid pixels
    # predictions near the ground truth (errors of all sizes), not unit length
    pred = (gt + 0.6 * torch.randn(b, 3, h, w, generator=gen)) * (0.5 + torch.rand(b, 1, h, w, generator=gen))
    return pred, gt


def _reference_np(pred: np.ndarray, gt: np.ndarray) -> dict[str, float]:
    """MTI-Net's eval_normals in numpy: normalise (+1e-12), acos of the clipped dot product, pooled."""
    p = np.moveaxis(pred.astype(np.float64), 1, -1)
    g = np.moveaxis(gt.astype(np.float64), 1, -1)
    valid = np.linalg.norm(g, axis=-1) >= 0.5
    p = p / (np.linalg.norm(p, axis=-1, keepdims=True) + 1e-12)
    g = g / (np.linalg.norm(g, axis=-1, keepdims=True) + 1e-12)
    deg = np.rad2deg(np.arccos(np.clip((p * g).sum(-1), -1, 1)))[valid]
    return {"mean": deg.mean(), "median": float(np.median(deg)), "rmse": math.sqrt(np.mean(deg**2)),
            "within_11.25": np.mean(deg < 11.25), "within_22.5": np.mean(deg < 22.5), "within_30": np.mean(deg < 30)}


def test_streaming_and_reduction_equal_one_pass_and_numpy():
    pred, gt = _random(0)
    whole = NormalsMetrics()
    whole.update(pred, {"normals": gt})
    first, second = NormalsMetrics(), NormalsMetrics()
    first.update(pred[:1], {"normals": gt[:1]})
    first.update(pred[1:2], {"normals": gt[1:2]})
    second.update(pred[2:], {"normals": gt[2:]})

    class Pair:  # the other process's summed state added, in ``summed`` order
        active = True

        def __init__(self) -> None:
            self.state = [getattr(second, n) for n in second.summed]

        def sum_(self, t: torch.Tensor) -> torch.Tensor:
            return t + self.state.pop(0)

    first.reduce(Pair(), torch.device("cpu"))
    got, expected = first.compute(), whole.compute()
    assert got == {k: pytest.approx(v, rel=1e-12) for k, v in expected.items()}
    ref = _reference_np(pred.numpy(), gt.numpy())
    # acos near 0° is ill-conditioned (~1e-6° there), the rest agrees to float64
    assert {k: got[k] for k in KEYS if k != "median"} == {k: pytest.approx(ref[k], rel=1e-9) for k in KEYS
                                                          if k != "median"}
    assert got["median"] == pytest.approx(ref["median"], abs=BIN)


def test_angular_error_agrees_with_acos_away_from_the_ends():
    pred, gt = _random(1)
    ours = angular_error(pred, gt)
    p = torch.nn.functional.normalize(pred.double(), dim=1)
    g = torch.nn.functional.normalize(gt.double(), dim=1)
    theirs = torch.rad2deg(torch.acos((p * g).sum(1).clamp(-1, 1)))
    valid = gt.norm(dim=1) > 0.5
    assert torch.allclose(ours[valid], theirs[valid], rtol=0, atol=1e-6)
    # the metric's own (buffered, component-wise) computation gives the same angles
    m = NormalsMetrics()
    m.update(pred, {"normals": gt})
    got = m.compute()
    assert got["mean"] == pytest.approx(float(ours[valid].mean()), rel=1e-12)
    assert got["rmse"] == pytest.approx(float(ours[valid].square().mean().sqrt()), rel=1e-12)


def test_records():
    assert set(NormalsMetrics.names) == set(KEYS)
    assert all(lookup("normals", k) for k in KEYS)
    assert key_metric("normals") == "mean"
    assert NormalsMetrics().higher_is_better == {"within_11.25", "within_22.5", "within_30"}
    assert [r.name for r in records_for("normals")] == list(KEYS)  # console order
    assert [lookup("normals", k).percent for k in KEYS] == [False, False, False, True, True, True]
    assert lookup("normals", "mean").header == "mean angle °"
    # Δm ``all`` takes Nash-MTL's / LibMTL's five normals metrics, not the RMSE
    assert [k for k in KEYS if lookup("normals", k).in_delta_all] == ["mean", "median", "within_11.25",
                                                                       "within_22.5", "within_30"]

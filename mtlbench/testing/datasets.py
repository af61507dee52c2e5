"""check_dataset: the dataset contract."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from mtlbench.data.datasets import SPLITS, DatasetSplits, DenseDataset
from mtlbench.registry import DATASETS
from mtlbench.tasks import LABEL, DatasetInfo
from mtlbench.testing.common import Report, _named

# -- datasets ----------------------------------------------------------------------------------------

# how a dataset stores targets other than labels (float32 depth, float16 normals, uint8 edge maps):
# batches hold them as float32, so a wider type only doubles the memory the frames take
_STORED = (torch.float32, torch.float16, torch.uint8)


def _check_split(name: str, split: str, ds: Any, info: DatasetInfo, size: int) -> None:
    """The promises of one split's arrays, sample format and scoring ground truth."""

    where = f"{name}: the {split} split"
    assert isinstance(ds, DenseDataset), f"{where} is a {type(ds).__name__}, not a DenseDataset"
    n = len(ds)
    assert n > 0, f"{where} is empty"
    assert ds.info == info, f"{where} carries another DatasetInfo than the splits' ({ds.info})"
    a = ds.arrays
    frame = (n, size, size)
    for key, dtype, shape in (("image", torch.uint8, (*frame, 3)), ("index", torch.int64, (n,))):
        t = getattr(a, key)
        assert t.dtype == dtype and tuple(t.shape) == shape, \
            f"{where}: {key} is {t.dtype} {tuple(t.shape)}, not {dtype} {shape}"
    missing, extra = [k for k in info.targets if k not in a.targets], [k for k in a.targets if k not in info.targets]
    assert not missing and not extra, f"{where}: " + "; ".join(
        ([f"the frames carry no {', '.join(missing)}, which info.targets lists"] if missing else [])
        + ([f"the frames carry {', '.join(extra)}, which info.targets does not list"] if extra else []))
    assert len(a.index.unique()) == n, f"{where}: a frame index appears twice"
    for key, spec in info.targets.items():
        t = a.targets[key]
        want = frame if spec.channels == 1 and t.dim() == 3 else (*frame, spec.channels)
        assert tuple(t.shape) == want, f"{where}: {key} is {tuple(t.shape)}, not {want} ({spec.kind}, " \
                                       f"{spec.channels} channel(s))"
        if spec.kind == LABEL:
            assert not t.is_floating_point(), f"{where}: {key} is {t.dtype}, not integer labels"
            labels = t.long()
            bad = labels[((labels < 0) | (labels >= info.num_classes)) & (labels != info.ignore_index)]
            assert bad.numel() == 0, \
                f"{where}: {key} labels {sorted(set(bad.unique().tolist()))[:5]} are neither classes " \
                f"0..{info.num_classes - 1} nor the ignore label {info.ignore_index}"
        else:
            assert t.dtype in _STORED, \
                f"{where}: {key} is {t.dtype} {tuple(t.shape)}, not {' or '.join(map(str, _STORED))} {want}"
            assert bool(torch.isfinite(t.float()).all()), f"{where}: {key} has values that are not finite"
    if "depth" in a.targets:
        assert (a.depth >= 0).all(), f"{where}: depth is not metres ≥ 0 (0 marks invalid pixels)"
    if "normals" in a.targets:
        norms = a.normals.float().norm(dim=-1)
        assert (((norms - 1).abs() < 1e-2) | (norms == 0)).all(), \
            f"{where}: normals are neither unit vectors nor the zero vector (invalid)"
    if "edge" in a.targets:
        values = a.edge.unique().tolist()[:5]
        assert bool(((a.edge == 0) | (a.edge == 1)).all()), f"{where}: edge has values {values}, not {{0, 1}}"

    sample = ds[0]
    image = sample.get("image")
    assert isinstance(image, Tensor) and tuple(image.shape) == (3, size, size) and image.dtype == torch.float32 \
        and 0 <= float(image.min()) and float(image.max()) <= 1, \
        f"{where}: sample['image'] is not float32 3×{size}×{size} in [0, 1]"
    for key, spec in info.targets.items():
        value = sample.get(key)
        layout: tuple[int, ...] = (size, size) if spec.kind == LABEL else (spec.channels, size, size)
        assert isinstance(value, Tensor) and tuple(value.shape) == layout, \
            f"{where}: sample[{key!r}] is {getattr(value, 'shape', value)!r}, not {layout}"
        assert (value.dtype == torch.int64) == (spec.kind == LABEL), \
            f"{where}: sample[{key!r}] is {value.dtype}: labels are int64, other targets float"
    assert isinstance(sample.get("index"), int), f"{where}: sample['index'] is not an int"

    s = ds.scoring
    if s is not None:
        scored = (n, *s.size)
        for key, t in s.targets.items():
            assert key in info.targets and tuple(t.shape[:3]) == scored, \
                f"{where}: scoring ground truth {key} is {tuple(t.shape)}, not one frame per split frame at its " \
                f"crop size {scored}"


def check_dataset(dataset: str | Callable[..., Any], root: str = "", size: int = 32, **options: Any) -> Report:
    """Check a dataset (a registered name or its factory, ``factory(root, size, progress,
    **options)``) against the sample format of
    :mod:`mtlbench.data.datasets`, built at ``size`` from ``root`` (where it reads files):

    - the factory gives :class:`~mtlbench.data.datasets.DatasetSplits` whose train, val and test
      splits are non-empty :class:`~mtlbench.data.datasets.DenseDataset` s;
    - its ``info`` is a :class:`~mtlbench.tasks.DatasetInfo` with one class or more, a
      finite positive ``max_depth`` (its depth range), no class names or one per class, an ``ignore_index`` that is no
      class, and every split carries it;
    - each split's arrays: image N×size×size×3 uint8, index N int64 with no repeat, and exactly
      the targets ``info.targets`` lists, each N×size×size (one channel) or N×size×size×C as
      declared: labels integer classes or the ignore label, others finite float32, float16 or
      uint8 numbers; depth ≥ 0 (0 = invalid), normals unit or zero, edge maps in {0, 1};
    - no frame (by index) is in two splits;
    - where there is depth, some pixel has valid depth (0 < depth ≤ info.max_depth); where there are
      labels, some pixel has a class;
    - a sample (``split[0]``) is in the documented format: image 3×H×W float32 in [0, 1], each
      target as batches hold it (labels H×W int64, others C×H×W float) and an int index;
    - where a split has scoring ground truth, it holds one frame per split frame at its crop size;
    - two builds, one after the other (torch's global generator not reseeded), give equal arrays,
      info and scoring ground truth.
    """

    name, factory = _named(DATASETS, dataset, "dataset")
    report = Report(name)

    def build() -> Any:  # unseeded: frames and splits must not hang on torch's global generator
        return factory(root, size, None, **options)

    splits = build()
    assert isinstance(splits, DatasetSplits), f"{name}: the factory returned {type(splits).__name__}, not DatasetSplits"
    info = splits.info
    assert isinstance(info, DatasetInfo), f"{name}: info is a {type(info).__name__}, not a DatasetInfo"
    assert isinstance(info.num_classes, int) and info.num_classes >= 1, \
        f"{name}: info.num_classes is {info.num_classes!r}, not an int ≥ 1"
    assert math.isfinite(info.max_depth) and info.max_depth > 0, \
        f"{name}: info.max_depth is {info.max_depth}, not a depth range in metres (finite, positive)"
    assert len(info.class_names) in (0, info.num_classes), \
        f"{name}: {len(info.class_names)} class names for {info.num_classes} classes"
    assert not 0 <= info.ignore_index < info.num_classes, \
        f"{name}: the ignore label {info.ignore_index} is one of the {info.num_classes} classes"
    report.ok("info")
    for split in SPLITS:
        _check_split(name, split, splits[split], info, size)
    report.ok("train, val and test arrays, samples and scoring")
    indices = {split: set(splits[split].arrays.index.tolist()) for split in SPLITS}
    for k, first in enumerate(SPLITS):
        for second in SPLITS[k + 1:]:
            both = sorted(indices[first] & indices[second])
            assert not both, f"{name}: frames {both[:5]} are in both the {first} and the {second} split"
    report.ok("splits disjoint")
    arrays = [splits[s].arrays for s in SPLITS]
    if "depth" in info.targets:
        assert any(bool(((a.depth > 0) & (a.depth <= info.max_depth)).any()) for a in arrays), \
            f"{name}: no pixel has valid depth (0 < depth ≤ {info.max_depth})"
    for key in (k for k, t in info.targets.items() if t.kind == LABEL):
        assert any(bool((a.targets[key].long() != info.ignore_index).any()) for a in arrays), \
            f"{name}: no pixel of {key} has a class"
    report.ok("valid targets")
    report.notes["frames"] = ", ".join(f"{s} {len(splits[s])}" for s in SPLITS)

    again = build()
    assert again.info == info, f"{name}: not deterministic: a second build has another info ({again.info})"
    for split in SPLITS:
        a, b = splits[split], again[split]
        for what, one, two in (("arrays", a.arrays, b.arrays), ("scoring", a.scoring, b.scoring)):
            assert (one is None) == (two is None), f"{name}: not deterministic: the {split} {what} differ"
            for key, value in ({**vars(one), **one.targets} if one is not None else {}).items():
                if isinstance(value, Tensor):
                    other = {**vars(two), **two.targets}.get(key)
                    assert isinstance(other, Tensor) and other.shape == value.shape and torch.equal(other, value), \
                        f"{name}: not deterministic: a second build has another {split} {key}"
    report.ok("deterministic")
    return report

"""check_task: the task contract (mtlbench.tasks.base.Task)."""

from __future__ import annotations

import math
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from mtlbench.options import resolve_options
from mtlbench.registry import LOSSES, TASKS
from mtlbench.tasks import HEADS, DatasetInfo, Task
from mtlbench.tasks.base import CONTINUOUS, LABEL, Target
from mtlbench.testing.common import Report, _default_info, _named
from mtlbench.testing.losses import _drawn_target, _synthetic_batch


def check_task(task: str | Callable[..., Any], info: DatasetInfo | None = None, size: tuple[int, int] = (12, 16),
               **options: Any) -> Report:
    """Check a task (a registered name or its factory, ``factory(info, **options)``) against the
    contract of ``docs/plugins.md``, built for ``info`` (default: 5 classes, 10 m, depth, seg and
    normals; the task's own target is added where ``info`` does not declare it):

    - the factory gives a :class:`~mtlbench.tasks.base.Task` with a head width ≥ 1, a head kind
      models know, a registered default loss for this task, and a key metric among its metrics'
      keys whose direction is known;
    - ``missing`` accepts ``info`` and names what a dataset with no targets lacks;
    - ``derive`` adds nothing but its own target and edits no other;
    - ``predict`` keeps the batch and pixel grid, gives finite values, leaves the raw output as it
      was and is deterministic;
    - its metrics, updated with the predictions against ``score_target``, give finite numbers for
      exactly their declared keys, and two half batches give what the whole batch gives;
    - ``colorize`` draws one frame as H×W×3 uint8 and ``save`` writes a file named after the stem.
    """

    name, factory = _named(TASKS, task, "task")
    entry = TASKS.entry(name) if name in TASKS else None
    if entry is not None and entry.options:

        options = resolve_options(f"task {name}", entry.options, options, "options")
    report = Report(name)
    base = info or _default_info()
    spec = factory(base, **options)
    assert isinstance(spec, Task), f"{name}: the factory returned {type(spec).__name__}, not a Task"
    assert isinstance(spec.out_channels, int) and spec.out_channels >= 1, \
        f"{name}: out_channels is {spec.out_channels!r}, not an int ≥ 1"
    assert spec.head in HEADS, f"{name}: head {spec.head!r} is not one of {', '.join(HEADS)}"
    assert spec.default_loss in LOSSES, f"{name}: its default loss {spec.default_loss!r} is not registered"
    loss_task = LOSSES.entry(spec.default_loss).meta.get("task")
    assert loss_task in (None, spec.name), f"{name}: its default loss {spec.default_loss} is a {loss_task} loss"
    metric = spec.metrics()
    assert spec.key_metric in metric.names, \
        f"{name}: key metric {spec.key_metric!r} is not among its metrics' keys ({', '.join(metric.names)})"
    assert isinstance(spec.higher_is_better, bool), f"{name}: the direction of {spec.key_metric} is unknown"
    report.ok("definition")

    if spec.target_key not in base.targets and spec.derive.__func__ is Task.derive:  # type: ignore[attr-defined]
        kind = Target(LABEL) if spec.head == "classes" else Target(CONTINUOUS, spec.out_channels)
        base = DatasetInfo(base.num_classes, base.max_depth, base.class_names, base.ignore_index,
                           {**base.targets, spec.target_key: kind})
    assert spec.missing(base) is None, f"{name}: missing() refuses a dataset with its targets: {spec.missing(base)}"
    empty = DatasetInfo(base.num_classes, base.max_depth, base.class_names, base.ignore_index, {})
    lacks = spec.missing(empty)
    assert isinstance(lacks, str) and lacks, f"{name}: missing() accepts a dataset whose frames carry no target"
    report.ok("missing")

    b, (h, w) = 4, size
    gen = torch.Generator().manual_seed(0)
    batch = {k: v for k, v in _synthetic_batch(base, b, size, gen).items() if k in base.targets or k == "image"}
    if spec.target_key in base.targets and spec.target_key not in batch:
        batch[spec.target_key] = _drawn_target(spec, base, b, size, gen)
    before = {k: v.clone() for k, v in batch.items()}
    derived = dict(batch)
    spec.derive(derived)
    extra = set(derived) - set(batch)
    assert extra <= {spec.target_key}, f"{name}: derive() added {sorted(extra)}, not only its own target"
    changed = [k for k in batch if k != spec.target_key and not torch.equal(derived[k], before[k])]
    assert not changed, f"{name}: derive() changed {changed}, which are other tasks' targets"
    assert spec.target_key in derived, f"{name}: a batch of a dataset with its targets has no {spec.target_key!r}"
    report.ok("derive")

    output = torch.randn(b, spec.out_channels, h, w, generator=gen)
    raw = output.clone()
    pred = spec.predict(output)
    assert torch.equal(output, raw), f"{name}: predict() edited the raw head output in place"
    assert isinstance(pred, Tensor) and pred.shape[0] == b and tuple(pred.shape[-2:]) == (h, w), \
        f"{name}: predict() gave {tuple(getattr(pred, 'shape', ()))}, not a batch of {b} at {h}×{w}"
    assert bool(torch.isfinite(pred.float()).all()), f"{name}: predict() gave values that are not finite"
    assert torch.equal(spec.predict(output), pred), f"{name}: predict() is not deterministic"
    report.ok("predict")

    targets = {**derived, spec.target_key: spec.score_target(derived, base)}
    whole, halves = spec.metrics(), spec.metrics()
    whole.update(pred, targets)
    for part in (slice(0, b // 2), slice(b // 2, b)):
        halves.update(pred[part], {k: v[part] for k, v in targets.items()})
    got, split = whole.compute(), halves.compute()
    assert set(got) == set(whole.names), \
        f"{name}: its metrics computed {sorted(got)}, not their declared keys {sorted(whole.names)}"
    bad = [k for k, v in got.items() if not math.isfinite(v)]
    assert not bad, f"{name}: metrics {bad} are not finite on a batch with valid targets"
    differ = [k for k in got if abs(got[k] - split[k]) > 1e-5 * max(1.0, abs(got[k]))]
    assert not differ, f"{name}: metrics {differ} differ when the batch comes in two halves (state not streamed)"
    report.ok("metrics")

    image = spec.colorize(pred[0, 0] if pred.dim() == 4 and pred.shape[1] == 1 else pred[0])
    assert isinstance(image, Tensor) and image.dtype == torch.uint8 and tuple(image.shape) == (h, w, 3), \
        f"{name}: colorize() gave {getattr(image, 'dtype', None)} {tuple(getattr(image, 'shape', ()))}, " \
        f"not uint8 {(h, w, 3)}"
    with tempfile.TemporaryDirectory() as folder:
        written = spec.save(pred[0], Path(folder) / "frame")
        assert Path(written).is_file() and Path(written).name.startswith("frame"), \
            f"{name}: save() wrote no file named after its stem ({written})"
    report.ok("colorize and save")
    return report

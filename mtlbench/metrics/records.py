"""One record per metric: its label, unit, direction and place in tables and in Δm.

Every report reads these records, so adding a metric means computing it in its metric class and
registering one :class:`MetricRecord` here (or, for a plugin task, with :func:`register`):

- the console table (``mtlbench.report.console.metrics_table``) shows the records with an
  ``order``, sorted by it;
- ``mtlbench compare`` offers every record as a column (``task/name``), with the header, unit,
  percent flag and direction arrow of the record;
- Δm ``mti`` takes each task's ``key`` metric, Δm ``all`` every ``in_delta_all`` metric, each
  signed by its direction; the key metric also defines "better" for a task;
- the metric classes' ``higher_is_better`` is read from the records.

Two kinds of key are not spelled out one by one:

- per-image depth variants (``rmse_img``) are ordinary records derived from the pooled ones by
  :func:`per_image` (same unit, percent flag and direction; never key, never in Δm);
- per-class IoU keys (``iou/wall``) are covered by one *family* record named ``iou/<class>``:
  :func:`lookup` of ``iou/wall`` returns it with ``<class>`` replaced by ``wall`` in name,
  label and column.

Records of tasks nobody registered: :func:`records_for` returns ``()`` and reports show the raw
keys. This module imports no torch, so ``mtlbench compare`` stays light.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
from dataclasses import dataclass

from mtlbench.errors import MtlbenchError

_FAMILY = re.compile(r"^(?P<prefix>.+/)(?P<slot><\w+>)$")  # ``iou/<class>``


@dataclass(frozen=True)
class MetricRecord:
    """What reports need to know of one metric key of one task.

    Attributes:
        name: the key in ``metrics.json`` (``rmse``), or a family ``prefix/<slot>`` (``iou/<class>``).
        task: the task computing it.
        label: the console table's text for it, unit included where it helps (``RMSE m``).
        column: the result tables' header, without the unit (``RMSE``).
        unit: unit of the stored value (``m``, ``px``; ``""`` for ratios).
        higher_is_better: ``True``/``False``; ``None`` for a value with no better side (an
            operating point such as ``ods_threshold``): no arrow, never key, never in Δm.
        percent: tables show 100 × the value with a ``%`` header.
        key: the task's key metric (Δm ``mti``, "better" for the task); one per task.
        in_delta_all: enters Δm ``all``.
        order: place in the console table (ascending); ``None``: not in the console table.
    """

    name: str
    task: str
    label: str
    column: str
    higher_is_better: bool | None
    unit: str = ""
    percent: bool = False
    key: bool = False
    in_delta_all: bool = False
    order: int | None = None

    @property
    def family(self) -> bool:
        """A record standing for many keys (``iou/<class>``)."""
        return _FAMILY.match(self.name) is not None

    @property
    def header(self) -> str:
        """The column header with its unit (``RMSE m``, ``mIoU %``), no arrow."""
        unit = "%" if self.percent else self.unit
        return f"{self.column} {unit}" if unit else self.column

    @property
    def arrow(self) -> str:
        return {True: "↑", False: "↓", None: ""}[self.higher_is_better]

    def matches(self, metric: str) -> bool:
        """``metric`` is this record's key, or one of its family's."""
        m = _FAMILY.match(self.name)
        if m is None:
            return metric == self.name
        return metric.startswith(m["prefix"]) and len(metric) > len(m["prefix"])

    def instance(self, metric: str) -> MetricRecord:
        """This family's record for ``metric`` (``iou/wall``); a plain record is returned as is."""
        m = _FAMILY.match(self.name)
        if m is None:
            return self
        part = metric[len(m["prefix"]):]
        return dataclasses.replace(self, name=metric, label=self.label.replace(m["slot"], part),
                                   column=self.column.replace(m["slot"], part))


_RECORDS: dict[tuple[str, str], MetricRecord] = {}  # (task, name) → record, in registration order


def register(record: MetricRecord) -> MetricRecord:
    """Add ``record``; a second record of the same task and name, or a second key metric of a
    task, is an error. Returns the record."""
    where = f"metric record {record.task}/{record.name}"
    if (record.task, record.name) in _RECORDS:
        raise MtlbenchError(f"{where} is registered already")
    if "<" in record.name and not record.family:
        raise MtlbenchError(f"{where}: a family record is named prefix/<slot>, e.g. iou/<class>")
    if (record.key or record.in_delta_all) and (record.higher_is_better is None or record.family):
        raise MtlbenchError(f"{where}: a key or Δm metric must be one key (no family) with a direction")
    if record.key:
        other = next((r for r in _RECORDS.values() if r.task == record.task and r.key), None)
        if other is not None:
            raise MtlbenchError(f"{where}: {record.task} has a key metric already ({other.name})")
    _RECORDS[(record.task, record.name)] = record
    return record


def records_for(task: str) -> tuple[MetricRecord, ...]:
    """The records of ``task``: those in the console table by ``order``, then the rest in
    registration order; ``()`` for a task without records."""
    mine = [r for r in _RECORDS.values() if r.task == task]
    return tuple(sorted(mine, key=lambda r: (r.order is None, r.order or 0)))  # sort is stable


def task_names() -> tuple[str, ...]:
    """The tasks having records, in registration order."""
    return tuple(dict.fromkeys(t for t, _ in _RECORDS))


def find(task: str, metric: str) -> MetricRecord | None:
    """The record of ``metric`` (a family's for ``iou/wall``), or ``None``."""
    record = _RECORDS.get((task, metric))
    if record is not None:
        return record
    for r in _RECORDS.values():
        if r.task == task and r.family and r.matches(metric):
            return r.instance(metric)
    return None


def lookup(task: str, metric: str) -> MetricRecord:
    """The record of ``metric``; an unknown one is an error naming the closest of ``task``'s."""
    record = find(task, metric)
    if record is not None:
        return record
    names = [r.name for r in records_for(task)]
    if not names:
        known = ", ".join(task_names())
        raise MtlbenchError(f"task {task!r} has no metric records (tasks with records: {known})")
    lower = {n.lower(): n for n in names}
    close = [lower[n] for n in difflib.get_close_matches(metric.lower(), list(lower), n=3, cutoff=0.6)]
    hint = f"; did you mean {' or '.join(close)}?" if close else ""
    raise MtlbenchError(f"{task} has no metric {metric!r}{hint} ({task} metrics: {', '.join(names)})")


def key_metric(task: str) -> str:
    """The name of ``task``'s key metric (Δm ``mti``, checkpoint selection)."""
    for r in records_for(task):
        if r.key:
            return r.name
    raise MtlbenchError(f"task {task!r} has no key metric: register a MetricRecord with key=True "
                        f"(mtlbench.metrics.records.register)")


def per_image(record: MetricRecord, order: int | None = None) -> MetricRecord:
    """The per-image variant (``<name>_img``) of a pooled depth record."""
    return dataclasses.replace(record, name=f"{record.name}_img", label=f"{record.label} (per image)",
                               column=f"{record.column}/img", key=False, in_delta_all=False, order=order)


# --------------------------------------------------------------------------- built-in tasks

_UP, _DOWN = True, False  # higher / lower is better

# fields: name, task, console label, column header, direction; depth pooled first (bare names)
_DEPTH = [
    MetricRecord("rmse", "depth", "RMSE m", "RMSE", _DOWN, unit="m", key=True, in_delta_all=True, order=0),
    MetricRecord("mae", "depth", "MAE m", "MAE", _DOWN, unit="m", in_delta_all=True, order=1),
    MetricRecord("abs_rel", "depth", "AbsRel", "AbsRel", _DOWN, in_delta_all=True, order=2),
    MetricRecord("sq_rel", "depth", "SqRel", "SqRel", _DOWN, in_delta_all=True, order=3),
    MetricRecord("rmse_log", "depth", "RMSE log", "RMSE log", _DOWN, in_delta_all=True, order=4),
    MetricRecord("log10", "depth", "log10", "log10", _DOWN, in_delta_all=True, order=5),
    MetricRecord("silog", "depth", "SILog", "SILog", _DOWN, in_delta_all=True, order=6),
    MetricRecord("delta1", "depth", "δ<1.25", "δ1", _UP, percent=True, in_delta_all=True, order=7),
    MetricRecord("delta2", "depth", "δ<1.25²", "δ2", _UP, percent=True, in_delta_all=True, order=8),
    MetricRecord("delta3", "depth", "δ<1.25³", "δ3", _UP, percent=True, in_delta_all=True, order=9),
]
_CONSOLE_PER_IMAGE = {"rmse": 10, "abs_rel": 11, "delta1": 12}  # the others: tables only
_DEPTH += [per_image(r, _CONSOLE_PER_IMAGE.get(r.name)) for r in list(_DEPTH)]
_DEPTH += [
    MetricRecord("mae_norm", "depth", "MAE (norm., Beneath the Surface's)", "MAE norm.", _DOWN, order=13),
    MetricRecord("rmse_norm", "depth", "RMSE (norm., Beneath the Surface's)", "RMSE norm.", _DOWN, order=14),
    MetricRecord("dbe_acc", "depth", "DBE accuracy px", "DBE acc", _DOWN, unit="px", order=15),
    MetricRecord("dbe_comp", "depth", "DBE completeness px", "DBE comp", _DOWN, unit="px", order=16),
    # published only: the paper's own δ, whose definition it leaves ambiguous, never in the δ columns
    *(MetricRecord(f"delta{k}_beneath", "depth", f"δ{k} as Beneath the Surface states it", f"δ{k} as stated", _UP,
                   percent=True) for k in (1, 2, 3)),
]

_SEG = [
    MetricRecord("miou", "seg", "mIoU", "mIoU", _UP, percent=True, key=True, in_delta_all=True, order=0),
    MetricRecord("pixel_acc", "seg", "pixel acc.", "pixel acc", _UP, percent=True, in_delta_all=True, order=1),
    MetricRecord("mean_acc", "seg", "mean class acc.", "mean acc", _UP, percent=True, in_delta_all=True,
                 order=2),
    MetricRecord("fwiou", "seg", "fwIoU", "fwIoU", _UP, percent=True, in_delta_all=True, order=3),
    # per class: ``mtlbench compare --per-class``, not the console table
    MetricRecord("iou/<class>", "seg", "IoU <class>", "IoU <class>", _UP, percent=True),
]

_EDGE = [
    MetricRecord("ods", "edge", "odsF", "odsF", _UP, percent=True, key=True, in_delta_all=True, order=0),
    MetricRecord("ois", "edge", "oisF", "oisF", _UP, percent=True, in_delta_all=True, order=1),
    MetricRecord("ap", "edge", "AP", "AP", _UP, percent=True, in_delta_all=True, order=2),
    MetricRecord("ods_threshold", "edge", "ODS threshold", "ODS threshold", None, order=3),
    MetricRecord("ods_precision", "edge", "ODS precision", "ODS P", _UP, percent=True),
    MetricRecord("ods_recall", "edge", "ODS recall", "ODS R", _UP, percent=True),
]

# angular errors in degrees (mtlbench.metrics.normals); columns say "angle" so that they do not read
# as depth's RMSE in a table of several tasks. Δm ``all`` takes the five that Nash-MTL and LibMTL
# report for NYUv2 normals (mean, median, the three fractions), not the RMSE.
_NORMALS = [
    MetricRecord("mean", "normals", "mean angle °", "mean angle", _DOWN, unit="°", key=True, in_delta_all=True,
                 order=0),
    MetricRecord("median", "normals", "median angle °", "median angle", _DOWN, unit="°", in_delta_all=True, order=1),
    MetricRecord("rmse", "normals", "RMSE angle °", "RMSE angle", _DOWN, unit="°", order=2),
    *(MetricRecord(f"within_{t}", "normals", f"angle < {t}°", f"<{t}°", _UP, percent=True, in_delta_all=True,
                   order=3 + i) for i, t in enumerate(("11.25", "22.5", "30"))),
]

for _r in _DEPTH + _SEG + _EDGE + _NORMALS:
    register(_r)
del _r

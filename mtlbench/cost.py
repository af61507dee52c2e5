"""What a model costs: parameters, FLOPs, activation memory and latency per image.

:func:`cost_report` measures a registered model on some tasks and, when it serves more than one,
the same model given each task alone (the single-task models a multi-task model replaces);
:mod:`mtlbench.report.cost` tables set the multi-task model against their sum (the "reduced
computational redundancy" *Beneath the Surface* claims).

Measures, all per image (batch totals divided by the batch size):

- parameters: ``sum(p.numel())`` over the model's parameters (not per image).
- FLOPs: ``torch.utils.flop_counter.FlopCounterMode`` on one inference forward pass; it counts
  matrix products and convolutions (2 FLOPs per multiply-add, bias, normalisation, activations,
  pooling and interpolation not counted).
- activation memory, one inference forward pass with autograd on (what it saves for backward; in
  training, train-mode-only branches such as auxiliary heads add to it), model in eval mode (BatchNorm
  with running statistics, so any batch size works):
  on CUDA, ``torch.cuda.max_memory_allocated`` during the pass minus what was allocated before it
  (parameters, buffers, input), so transient buffers count; on CPU, the bytes of the distinct
  storages autograd saves for backward plus the outputs (``torch.autograd.graph.saved_tensors_hooks``),
  parameters, buffers and the input excluded: the memory held at the end of the pass, a lower
  bound of the peak.
- latency: the median of ``repeats`` timed inference forward passes (``torch.no_grad``) after
  ``warmup`` untimed ones, CUDA synchronised.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.flop_counter import FlopCounterMode

from mtlbench import config as C
from mtlbench.engine.build import build_model, resolve, resolve_device
from mtlbench.errors import MtlbenchError
from mtlbench.models.backbones import build_backbone
from mtlbench.tasks import DatasetInfo, build_tasks, parse_tasks

# ----------------------------------------------------------------------------- measures


def count_parameters(model: nn.Module) -> int:
    """Number of parameter elements (shared parameters counted once)."""
    return sum(p.numel() for p in model.parameters())


def count_flops(model: nn.Module, x: Tensor) -> int:
    """FLOPs of one inference forward pass on the batch ``x`` (whole batch)."""
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(x)
    return int(counter.get_total_flops())


def _tensors(obj: Any) -> list[Tensor]:
    if isinstance(obj, Tensor):
        return [obj]
    if isinstance(obj, dict):
        return [t for v in obj.values() for t in _tensors(v)]
    if isinstance(obj, (list, tuple)):
        return [t for v in obj for t in _tensors(v)]
    return []


def _storage_key(t: Tensor) -> tuple[str, int]:
    return (str(t.device), t.untyped_storage().data_ptr())


def saved_activation_bytes(model: nn.Module, x: Tensor) -> int:
    """Bytes of the distinct storages autograd keeps for backward after one forward pass on
    ``x``, plus the outputs; parameters, buffers and the input excluded (whole batch).

    Any device; on CUDA :func:`peak_activation_bytes` measures the allocator's peak instead.
    """
    exclude = {_storage_key(t) for t in list(model.parameters()) + list(model.buffers()) + [x]}
    seen: dict[tuple[str, int], int] = {}

    def pack(t: Tensor) -> Tensor:
        key = _storage_key(t)
        if key not in exclude and key[1] != 0:
            seen[key] = t.untyped_storage().nbytes()
        return t

    with torch.enable_grad(), torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = model(x)
    for t in _tensors(out):
        key = _storage_key(t)
        if key not in exclude:
            seen[key] = t.untyped_storage().nbytes()
    del out
    return sum(seen.values())


def peak_activation_bytes(model: nn.Module, x: Tensor) -> int:
    """Activation memory of one forward pass with autograd on (whole batch): the CUDA allocator's
    peak above what was allocated before (parameters, buffers, input) on CUDA, else
    :func:`saved_activation_bytes`."""
    if x.device.type != "cuda":
        return saved_activation_bytes(model, x)
    torch.cuda.synchronize(x.device)
    torch.cuda.empty_cache()
    before = torch.cuda.memory_allocated(x.device)
    torch.cuda.reset_peak_memory_stats(x.device)
    with torch.enable_grad():
        out = model(x)
        torch.cuda.synchronize(x.device)
        peak = torch.cuda.max_memory_allocated(x.device)
    del out
    return max(0, peak - before)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def median_latency_s(model: nn.Module, x: Tensor, repeats: int = 5, warmup: int = 2,
                     clock: Callable[[], float] = time.perf_counter) -> float:
    """Median wall time of ``repeats`` inference forward passes on ``x`` after ``warmup`` ones
    (whole batch, seconds)."""
    if repeats < 1:
        raise MtlbenchError(f"latency needs at least one timed run, got repeats={repeats}")
    times = []
    with torch.no_grad():
        for _ in range(warmup):
            model(x)
        _sync(x.device)
        for _ in range(repeats):
            t0 = clock()
            model(x)
            _sync(x.device)
            times.append(clock() - t0)
    return statistics.median(times)


@dataclass
class ModelCost:
    """Costs of one model, per image except the parameters."""

    label: str
    params: int
    flops: float
    act_bytes: float
    latency_s: float


def measure(model: nn.Module, label: str, x: Tensor, repeats: int = 5, warmup: int = 2) -> ModelCost:
    """All four measures of ``model`` (set to eval mode) on the batch ``x``, per image."""
    model.eval()
    b = x.shape[0]
    return ModelCost(label, count_parameters(model), count_flops(model, x) / b,
                     peak_activation_bytes(model, x) / b, median_latency_s(model, x, repeats, warmup) / b)


def total(costs: Sequence[ModelCost], label: str = "sum") -> ModelCost:
    return ModelCost(label, sum(c.params for c in costs), sum(c.flops for c in costs),
                     sum(c.act_bytes for c in costs), sum(c.latency_s for c in costs))


# ----------------------------------------------------------------------------- the report

WARMUP = 2


@dataclass
class CostReport:
    model: str
    tasks: tuple[str, ...]
    backbone: str
    size: int
    batch_size: int
    device: str
    memory_method: str
    main: ModelCost
    singles: list[ModelCost] = field(default_factory=list)
    threads: int = 1
    repeats: int = 5
    warmup: int = 2

    @property
    def summed(self) -> ModelCost | None:
        return total(self.singles, "sum of singles") if len(self.singles) > 1 else None


def memory_method(device: torch.device) -> str:
    """How :func:`peak_activation_bytes` measures on ``device``, for table captions."""
    if device.type == "cuda":
        return "CUDA peak allocated during a forward with autograd on, minus parameters, buffers and input"
    return ("tensors saved for backward plus outputs of a forward with autograd on "
            "(saved_tensors_hooks; parameters, buffers and input excluded)")


def cost_report(model: str, tasks: str | Sequence[str], backbone: str = "resnet50", size: int = 256,
                batch_size: int = 1, device: str = "cpu", repeats: int = 5, width: int | None = None,
                progress: Callable[[str], None] | None = None) -> CostReport:
    """Measure ``model`` on ``tasks`` and, if there are several, on each task alone (the other
    settings at their defaults; :func:`config_cost` measures any configuration).

    Names are checked as ``mtlbench run`` checks them (unknown model, task or backbone, a task the
    model cannot serve, a size the backbone cannot take) before anything is measured.
    Segmentation has 40 classes (NYUv2-40, the synthrooms default).

    Raises:
        MtlbenchError: bad input, one line.
    """
    cfg = C.RunConfig()
    cfg.tasks = list(parse_tasks(tasks if isinstance(tasks, str) else list(tasks)))
    cfg.model.name, cfg.model.backbone, cfg.data.size, cfg.train.device = model, backbone, size, device
    if width is not None:
        cfg.model.width = width
    resolve(cfg)
    return config_cost(cfg, batch_size, repeats, progress)


def config_cost(cfg: C.RunConfig, batch_size: int = 1, repeats: int = 5,
                progress: Callable[[str], None] | None = None) -> CostReport:
    """The costs of a resolved configuration's model (its options and interaction included) on
    its tasks and, if there are several, on each task alone, on ``cfg.train.device``."""
    if batch_size < 1:
        raise MtlbenchError(f"batch size must be at least 1, got {batch_size}")
    if repeats < 1:
        raise MtlbenchError(f"repeats must be at least 1, got {repeats}")
    model, backbone, size = cfg.model.name, cfg.model.backbone, cfg.data.size
    task_names = tuple(cfg.tasks)
    dev = resolve_device(cfg.train.device)
    info = DatasetInfo()

    def build(names: tuple[str, ...]) -> nn.Module:
        torch.manual_seed(0)
        bb = build_backbone(backbone, cfg.model.width)
        bb.check_size((size, size))
        return build_model(cfg, build_tasks(names, info, cfg.task_options), bb)

    def run(net: nn.Module, names: tuple[str, ...], label: str) -> ModelCost:
        if progress:
            progress(f"measuring {model} on {','.join(names)}")
        net = net.to(dev)
        torch.manual_seed(0)
        x = torch.randn(batch_size, 3, size, size, device=dev)
        try:
            return measure(net, label, x, repeats, WARMUP)
        except torch.OutOfMemoryError:
            raise MtlbenchError(f"out of memory measuring {label} on {dev} at batch {batch_size}, "
                                f"{size}x{size}: lower batch_size or data.size") from None
        finally:
            del net
            if dev.type == "cuda":
                torch.cuda.empty_cache()

    first = build(task_names)  # every check passes before the first progress line
    main = run(first, task_names, f"{model} ({','.join(task_names)})")
    del first
    singles = [run(build((t,)), (t,), f"{model} ({t})") for t in task_names] if len(task_names) > 1 else []
    return CostReport(model, task_names, backbone, size, batch_size, str(dev), memory_method(dev), main, singles,
                      torch.get_num_threads(), repeats, WARMUP)

"""Single-task baselines from segmentation-models-pytorch (smp): U-Net, FPN, DeepLabV3+.

Each model predicts one task, depth, segmentation or surface normals, from the run's backbone used as smp's timm
universal encoder (``tu-<backbone>``). smp is never asked for weights (``encoder_weights=None``,
nothing is downloaded); instead the encoder starts from the weights of the backbone the run built,
copied tensor by tensor where name and shape match: ImageNet weights under ``--pretrained`` or
``--weights``, timm's random initialisation otherwise. The backbone's own 1×1 reduction convs are
not used. Depth is a 1-channel regression head without activation, normals a 3-channel one,
segmentation one logit channel per class; outputs have the input's size (sides must be multiples
of the backbone's stride, 32).
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from typing import Any

from torch import Tensor, nn

from mtlbench.errors import MtlbenchError
from mtlbench.models.backbones import Backbone
from mtlbench.models.base import MultiTaskModel, Outputs
from mtlbench.registry import MODELS
from mtlbench.tasks import Task

SMP_TASKS = ("depth", "seg", "normals")


class SmpSingleTask(MultiTaskModel):
    """An smp network predicting one task: ``forward(x) → {task: B×C×H×W}``.

    Args:
        task: the task's name (the key of the output).
        net: the smp model (encoder, decoder, head).
        notes: lines for the run header.
    """

    def __init__(self, task: str, net: nn.Module, notes: list[str] | None = None) -> None:
        super().__init__([task])
        self.task_name = task
        self.net = net
        self.notes = list(notes or [])

    def shared_modules(self) -> list[nn.Module]:
        return [self.net.get_submodule("encoder")]

    def task_parameters(self, task: str) -> list[nn.Parameter]:
        super().task_parameters(task)  # the unknown-task check
        shared = {id(p) for p in self.shared_parameters()}
        return [p for p in self.net.parameters() if id(p) not in shared]

    def forward(self, x: Tensor) -> Outputs:
        return {self.task_name: self.net(x)}


def smp_architectures() -> list[str]:
    """The architecture names smp's ``create_model`` accepts ("unet", "fpn", …)."""
    import segmentation_models_pytorch as smp  # heavy: imports timm and torchvision (~2 s); only smp models

    return list(smp.MODEL_ARCHITECTURES_MAPPING)


def copy_encoder_weights(source: nn.Module, encoder: nn.Module) -> tuple[int, int]:
    """Copy ``source``'s tensors (a timm model) into smp's timm universal ``encoder``.

    smp's ``TimmUniversalEncoder`` holds its timm model as ``.model``, so a name ``n`` of the
    source is ``model.n`` there. Tensors are copied where the name and the shape match.

    Returns:
        (tensors copied, tensors in the smp encoder).
    """
    target = encoder.state_dict()
    prefix = "model." if any(k.startswith("model.") for k in target) else ""
    copied = {}
    for name, value in source.state_dict().items():
        key = prefix + name
        if key in target and target[key].shape == value.shape:
            copied[key] = value.detach().clone()
    encoder.load_state_dict(copied, strict=False)
    return len(copied), len(target)


def _single_task(name: str, tasks: Mapping[str, Task]) -> tuple[str, Task]:
    names = list(tasks)
    if len(names) != 1 or names[0] not in SMP_TASKS:
        given = ", ".join(names) or "none"
        raise MtlbenchError(f"model {name} is a single-task baseline: pass one of {', '.join(SMP_TASKS)} "
                            f"(got {given})")
    return names[0], tasks[names[0]]


def smp_model(arch: str, tasks: Mapping[str, Task], backbone: Backbone, name: str | None = None,
              **smp_options: Any) -> SmpSingleTask:
    """Any smp architecture as a single-task baseline on ``backbone``.

    Args:
        arch: an smp architecture name (see :func:`smp_architectures`), case-insensitive.
        tasks: exactly one task, depth or seg.
        backbone: the run's backbone; its timm name selects the encoder, its weights are copied.
        name: the model's name in messages (default ``smp_<arch>``).
        smp_options: passed on to the smp model class (e.g. ``decoder_channels``).

    Raises:
        MtlbenchError: an unknown architecture, a task list other than one of depth/seg, or a
            backbone smp cannot use as an encoder.
    """
    import segmentation_models_pytorch as smp  # heavy: imports timm and torchvision (~2 s); only smp models

    name = name or f"smp_{arch}"
    known = smp_architectures()
    if arch.lower() not in known:
        close = difflib.get_close_matches(arch.lower(), known, n=2, cutoff=0.6)
        hint = f"did you mean {' or '.join(repr(c) for c in close)}? " if close else ""
        raise MtlbenchError(f"unknown smp architecture {arch!r}: {hint}choose from {', '.join(known)}")
    task_name, task = _single_task(name, tasks)
    encoder = f"tu-{backbone.name}"
    try:
        net = smp.create_model(arch.lower(), encoder_name=encoder, encoder_weights=None, in_channels=3,
                               classes=task.out_channels, activation=None, **smp_options)
    except Exception as exc:  # smp/timm raise many kinds of errors for encoders they cannot use
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise MtlbenchError(f"model {name}: smp could not build {arch} on encoder {encoder} with options "
                            f"{smp_options or 'none'}: {first}") from None
    copied, total = copy_encoder_weights(backbone.encoder, net.encoder)
    notes = [f"{name}: single-task {task_name} baseline (smp {type(net).__name__}, encoder {encoder}); "
             f"{copied}/{total} encoder tensors copied from backbone {backbone.name}"]
    return SmpSingleTask(task_name, net, notes)


@MODELS.register("smp_unet", tasks=SMP_TASKS, single_task=True)
def smp_unet(tasks: Mapping[str, Task], backbone: Backbone) -> SmpSingleTask:
    """Single-task U-Net (smp; Ronneberger et al. 2015) on the run's backbone: depth or seg."""
    return smp_model("unet", tasks, backbone, name="smp_unet")


@MODELS.register("smp_fpn", tasks=SMP_TASKS, single_task=True)
def smp_fpn(tasks: Mapping[str, Task], backbone: Backbone) -> SmpSingleTask:
    """Single-task FPN (smp; Kirillov et al. 2019 semantic FPN) on the run's backbone: depth or seg."""
    return smp_model("fpn", tasks, backbone, name="smp_fpn")


@MODELS.register("smp_deeplabv3plus", tasks=SMP_TASKS, single_task=True, min_batch=2)
def smp_deeplabv3plus(tasks: Mapping[str, Task], backbone: Backbone) -> SmpSingleTask:
    """Single-task DeepLabV3+ (smp; Chen et al. 2018, output stride 16) on the run's backbone: depth or seg."""
    return smp_model("deeplabv3plus", tasks, backbone, name="smp_deeplabv3plus")

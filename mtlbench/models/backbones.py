"""Backbones: timm models with ``features_only=True``, the last four scales reduced by 1×1 convs.

Any timm model name works; the names registered here are the ones listed by
``mtlbench list backbones`` with a note, and plugins may register others (a factory returning
a :class:`Backbone`).
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

from torch import Tensor, nn

from mtlbench.errors import MtlbenchError, UnknownNameError
from mtlbench.registry import BACKBONES

NUM_SCALES = 4


def conv_bn_relu(cin: int, cout: int, k: int = 3) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, k, padding=k // 2, bias=False), nn.BatchNorm2d(cout),
                         nn.ReLU(inplace=True))


class Backbone(nn.Module):
    """A feature extractor returning ``NUM_SCALES`` maps of ``width`` channels, finest first.

    Args:
        encoder: a timm ``features_only`` model (anything with ``feature_info``).
        width: channels of every scale after the 1×1 reduction (Beneath the Surface §5.1).
        name: for messages.
    """

    def __init__(self, encoder: nn.Module, width: int, name: str) -> None:
        super().__init__()
        info: Any = encoder.feature_info  # timm's FeatureInfo (torch types Module attributes as Tensor | Module)
        channels, reductions = info.channels(), info.reduction()
        if len(channels) < NUM_SCALES:
            raise MtlbenchError(f"backbone {name} gives {len(channels)} feature scales; models need {NUM_SCALES}")
        self.encoder = encoder
        self.name = name
        self.in_channels = list(channels[-NUM_SCALES:])
        self.strides = list(reductions[-NUM_SCALES:])
        self.width = width
        self.reduce = nn.ModuleList(conv_bn_relu(c, width, k=1) for c in self.in_channels)

    @property
    def total_stride(self) -> int:
        return self.strides[-1]

    def check_size(self, size: tuple[int, int]) -> None:
        """Raise a one-line error unless both sides are multiples of the deepest stride."""
        s = self.total_stride
        if any(v % s or v < s for v in size):
            raise MtlbenchError(
                f"image size {size[0]}x{size[1]} does not fit backbone {self.name} (total stride {s}): "
                f"use a multiple of {s} for data.size, e.g. {sizes_that_fit(size[0], s)}"
            )

    def forward(self, x: Tensor) -> list[Tensor]:
        feats = self.encoder(x)[-NUM_SCALES:]
        return [r(f) for r, f in zip(self.reduce, feats)]


def sizes_that_fit(size: int, stride: int) -> str:
    """The multiples of ``stride`` next to ``size`` ("96 or 128"), for a size that does not fit."""
    return " or ".join(str(v) for v in sorted({max(stride, size // stride * stride), (size // stride + 1) * stride}))


def _known_timm(name: str) -> None:
    import timm  # heavy: timm pulls in torchvision (~2 s); only names outside the registry need it

    if name not in timm.list_models() and name not in timm.list_models(pretrained=True):
        close = difflib.get_close_matches(name, BACKBONES.names() + timm.list_models(), n=3, cutoff=0.6)
        hint = f"did you mean {' or '.join(repr(c) for c in close)}? " if close else ""
        raise UnknownNameError(f"unknown backbone {name!r}: {hint}any timm model name works "
                               f"(see `mtlbench list backbones` and timm.list_models())")


def check_backbone(name: str, size: int) -> None:
    """Without building it: ``name`` is a registered backbone or a timm model, and a registered
    one's total stride divides ``size`` (a timm model's is checked when it is built)."""
    if name not in BACKBONES:
        _known_timm(name)
        return
    s = int(BACKBONES.entry(name).meta.get("stride", 0))
    if s and (size % s or size < s):
        raise MtlbenchError(f"data.size {size} does not fit backbone {name} (total stride {s}): use a multiple "
                            f"of {s}, e.g. {sizes_that_fit(size, s)}")


def _timm_encoder(name: str, pretrained: bool, weights: str | None) -> nn.Module:
    import timm  # heavy: timm pulls in torchvision (~2 s); only building a backbone needs it

    _known_timm(name)
    kwargs: dict = {"features_only": True}
    if weights is not None:
        path = Path(weights).expanduser()
        if not path.is_file():
            raise MtlbenchError(f"weights file {path} not found: pass an existing .pth/.safetensors file")
        kwargs.update(pretrained=True, pretrained_cfg_overlay={"file": str(path)})
    elif pretrained:
        kwargs["pretrained"] = True
    try:
        return timm.create_model(name, **kwargs)
    except MtlbenchError:
        raise
    except Exception as exc:
        if weights is None and not pretrained:
            raise MtlbenchError(f"backbone {name} cannot be built as a feature extractor: {exc}") from exc
        src = f"file {weights}" if weights else "the timm hub or the local Hugging Face cache"
        raise MtlbenchError(
            f"could not load pretrained weights for {name} from {src} ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0] if str(exc) else ''}); go online once to cache them, "
            f"set model.weights to a local weights file, or model.pretrained to false"
        ) from exc


def build_backbone(name: str, width: int = 128, pretrained: bool = False,
                   weights: str | None = None) -> Backbone:
    """A registered backbone, or any timm model that supports ``features_only``.

    Args:
        name: registry or timm name ("resnet50").
        width: channels per scale after reduction.
        pretrained: load timm's pretrained weights (hub or local cache).
        weights: a local weights file to load instead (implies pretrained).
    """
    if name in BACKBONES:
        return BACKBONES.build(name, width=width, pretrained=pretrained, weights=weights)
    return Backbone(_timm_encoder(name, pretrained, weights), width, name)


def _register_timm(name: str, doc: str) -> None:
    def factory(width: int = 128, pretrained: bool = False, weights: str | None = None) -> Backbone:
        return Backbone(_timm_encoder(name, pretrained, weights), width, name)

    factory.__doc__ = doc
    BACKBONES.add(name, factory, stride=32)  # the last of the four scales the models read


for _name, _doc in [
    ("resnet50", "timm ResNet-50, the backbone of Beneath the Surface (strides 4–32)."),
    ("resnet18", "timm ResNet-18: the quick preset's backbone."),
    ("resnet34", "timm ResNet-34."),
    ("resnet101", "timm ResNet-101."),
    ("convnext_tiny", "timm ConvNeXt-T (strides 4–32)."),
    ("efficientnet_b0", "timm EfficientNet-B0 (last four scales, strides 4–32)."),
    ("test_resnet", "timm's tiny test ResNet (0.4 M parameters) for tests and smoke runs."),
]:
    _register_timm(_name, _doc)

"""``mtlbench plugin new NAME``: a plugin distribution that installs with ``pip install -e`` and
trains at once, with a README and tests that use the contract kit (:mod:`mtlbench.testing`).

The templates use :mod:`mtlbench.api` only and declare the API version they were written for.
"""

from __future__ import annotations

import keyword
import re
from pathlib import Path

from mtlbench.errors import MtlbenchError
from mtlbench.fileio import atomic_write

KINDS = ("interaction", "loss", "weighting", "model")

_MODULES = {
    "interaction": '''"""{name}: an mtlbench interaction (a guidance edge's module).

Replace the body of ``{cls}.forward``; keep its promise: the target's shape back, the residual
included, the identity at initialisation (``identity_at_init=True`` below; drop it if yours is not).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from mtlbench.api import INTERACTIONS, Option, at_least

MTLBENCH_API = "1"


class {cls}(nn.Module):
    """target + σ(gate([target, source])) ⊙ message(source); the message starts at zero."""

    def __init__(self, channels: int, hidden: int = 32) -> None:
        super().__init__()
        self.gate = nn.Conv2d(2 * channels, channels, 1)
        self.message = nn.Sequential(nn.Conv2d(channels, hidden, 3, padding=1), nn.ReLU(),
                                     nn.Conv2d(hidden, channels, 1))
        nn.init.zeros_(self.message[-1].weight)
        nn.init.zeros_(self.message[-1].bias)

    def forward(self, target: Tensor, source: Tensor) -> Tensor:
        return target + torch.sigmoid(self.gate(torch.cat([target, source], 1))) * self.message(source)


def {name}(channels: int, hidden: int = 32) -> nn.Module:
    """{name}: a gated message from the guide (mtlbench plugin template)."""
    return {cls}(channels, hidden)


def register() -> None:
    """The ``mtlbench.plugins`` entry point."""
    options = {{"hidden": Option(32, "width of the message's hidden layer", at_least(1))}}
    INTERACTIONS.register("{name}", options=options, identity_at_init=True)({name})
''',
    "loss": '''"""{name}: an mtlbench loss for depth (``--task depth``, ``[loss.names] depth = "{name}"``)."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from mtlbench.api import LOSSES, DatasetInfo, Option

MTLBENCH_API = "1"


class {cls}(nn.Module):
    """Smooth L1 (Huber) on depth normalised by the maximum depth, over valid pixels."""

    def __init__(self, max_depth: float, beta: float) -> None:
        super().__init__()
        self.max_depth, self.beta = max_depth, beta

    def forward(self, prediction: Tensor, batch: dict[str, Tensor]) -> Tensor:
        target = batch["depth"]
        valid = (target > 0) & (target <= self.max_depth)
        if not valid.any():
            return prediction.sum() * 0  # no valid pixel: zero, not NaN
        loss = F.smooth_l1_loss(prediction.float(), target / self.max_depth, beta=self.beta, reduction="none")
        return loss[valid].mean()


def {name}(info: DatasetInfo, beta: float = 0.05) -> nn.Module:
    """{name}: Huber loss on normalised depth (mtlbench plugin template)."""
    return {cls}(info.max_depth, beta)


def register() -> None:
    """The ``mtlbench.plugins`` entry point."""
    LOSSES.register("{name}", task="depth", options={{"beta": Option(0.05, "where L1 turns quadratic")}})({name})
''',
    "weighting": '''"""{name}: an mtlbench loss weighting (``--weighting {name}``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor

from mtlbench.api import WEIGHTINGS, LossWeighting, Option

MTLBENCH_API = "1"


class {cls}(LossWeighting):
    """Σ_t L_t / (L_t.detach() + ε)^p: each task's loss scaled towards 1 (p = 0 is the plain sum)."""

    def __init__(self, tasks: Sequence[str], power: float = 1.0) -> None:
        super().__init__(tasks)
        self.power = power

    def combine(self, losses: Mapping[str, Tensor]) -> Tensor:
        values = torch.stack([losses[t] for t in self.tasks])
        return (values / (values.detach() + 1e-8) ** self.power).sum()


def {name}(tasks: Sequence[str], power: float = 1.0) -> {cls}:
    """{name}: losses scaled towards one (mtlbench plugin template)."""
    return {cls}(tasks, power)


def register() -> None:
    """The ``mtlbench.plugins`` entry point."""
    options = {{"power": Option(1.0, "how far each loss is scaled towards 1")}}
    WEIGHTINGS.register("{name}", options=options, level="loss", paper="", implementation="plugin")({name})
''',
    "model": '''"""{name}: an mtlbench model (``--model {name}``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch.nn.functional as F
from torch import Tensor, nn

from mtlbench.api import MODELS, Backbone, MultiTaskModel, Task

MTLBENCH_API = "1"


class {cls}(MultiTaskModel):
    """Backbone → per task, the four scales upsampled to stride 4, summed, a 3×3 conv and a 1×1 head."""

    def __init__(self, tasks: Mapping[str, Task], backbone: Backbone) -> None:
        super().__init__(list(tasks))
        self.backbone = backbone
        c = backbone.width
        self.heads = nn.ModuleDict({{t: nn.Sequential(nn.Conv2d(c, c, 3, padding=1), nn.BatchNorm2d(c), nn.ReLU(),
                                                     nn.Conv2d(c, task.out_channels, 1))
                                    for t, task in tasks.items()}})

    def encode(self, x: Tensor) -> list[Tensor]:
        return self.backbone(x)

    def decode(self, shared: Sequence[Tensor], size: tuple[int, int]) -> dict[str, Tensor]:
        fused = shared[0]
        for f in shared[1:]:
            fused = fused + F.interpolate(f, size=shared[0].shape[-2:], mode="bilinear", align_corners=False)
        return {{t: F.interpolate(head(fused), size=size, mode="bilinear", align_corners=False)
                for t, head in self.heads.items()}}


def {name}(tasks: Mapping[str, Task], backbone: Backbone) -> {cls}:
    """{name}: summed multi-scale features, a head per task (mtlbench plugin template)."""
    return {cls}(tasks, backbone)


def register() -> None:
    """The ``mtlbench.plugins`` entry point."""
    MODELS.register("{name}", tasks=("depth", "seg", "edge", "normals"))({name})
''',
}

_TESTS = {
    "interaction": '''def test_{name}_keeps_the_interaction_contract():
    from mtlbench.testing import check_interaction

    check_interaction("{name}")
''',
    "loss": '''def test_{name}_is_zero_on_the_target_and_positive_elsewhere():
    import torch

    from mtlbench.api import LOSSES, DatasetInfo

    loss = LOSSES.build("{name}", DatasetInfo(max_depth=10.0))
    depth = torch.rand(2, 1, 8, 8) * 10
    assert float(loss(depth / 10, {{"depth": depth}})) == 0
    assert float(loss(depth / 10 + 0.1, {{"depth": depth}})) > 0
''',
    "weighting": '''def test_{name}_weights_each_task_by_its_inverse_loss():
    import torch

    from mtlbench.api import WEIGHTINGS

    w = WEIGHTINGS.build("{name}", ["depth", "seg"])
    losses = {{"depth": torch.tensor(2.0, requires_grad=True), "seg": torch.tensor(0.5, requires_grad=True)}}
    w.combine(losses).backward()
    assert abs(float(losses["depth"].grad) - 0.5) < 1e-6 and abs(float(losses["seg"].grad) - 2.0) < 1e-5
''',
    "model": '''def test_{name}_predicts_every_task_at_the_input_size():
    import torch

    from mtlbench.api import MODELS, DatasetInfo
    from mtlbench.models.backbones import build_backbone
    from mtlbench.tasks import build_tasks

    tasks = build_tasks(("depth", "seg"), DatasetInfo(num_classes=5))
    out = MODELS.build("{name}", tasks, build_backbone("test_resnet", width=16))(torch.randn(2, 3, 64, 64))
    assert out["depth"].shape == (2, 1, 64, 64) and out["seg"].shape == (2, 5, 64, 64)
''',
}

_RUN = {"interaction": "--task depth,seg,edge --interaction {name}",
        "loss": "--task depth --config CONFIG  # a config.toml with [loss.names] depth = \"{name}\"",
        "weighting": "--task depth,seg,edge --weighting {name}", "model": "--task depth,seg,edge --model {name}"}


def plugin_files(name: str, kind: str) -> dict[str, str]:
    """Relative path → text of a new plugin distribution named ``name``."""
    if kind not in KINDS:
        raise MtlbenchError(f"unknown --kind {kind!r}: choose from {', '.join(KINDS)}")
    if not re.fullmatch(r"[a-z][a-z0-9_]*", name) or keyword.iskeyword(name):
        raise MtlbenchError(f"plugin name {name!r}: use lower-case letters, digits and _, starting with a letter "
                            f"(it becomes the registered name and part of the package name)")
    pkg = f"mtlbench_{name}"
    cls = "".join(part.capitalize() for part in name.split("_")) or "Plugin"
    dist = f"mtlbench-{name.replace('_', '-')}"
    run = _RUN[kind].format(name=name)
    return {
        "pyproject.toml": f'''[build-system]
requires = ["setuptools>=68"]
build-backend = "setuptools.build_meta"

[project]
name = "{dist}"
version = "0.1.0"
description = "mtlbench plugin: the {kind} {name}"
requires-python = ">=3.10"
dependencies = ["mtlbench"]

[project.entry-points."mtlbench.plugins"]
{name} = "{pkg}:register"

[tool.setuptools.packages.find]
where = ["src"]
''',
        f"src/{pkg}/__init__.py": _MODULES[kind].format(name=name, cls=cls),
        f"tests/test_{pkg}.py": f'''"""The {kind} {name} keeps mtlbench's contract."""

import pytest

pytest.importorskip("{pkg}", reason="the plugin is not installed: pip install -e .")


''' + _TESTS[kind].format(name=name),
        "README.md": f'''# {dist}

An mtlbench plugin: the {kind} `{name}` (written by `mtlbench plugin new {name} --kind {kind}`).

```bash
pip install -e .
mtlbench list {kind}s                  # {name}, source "plugin {name} ({dist})"
mtlbench run {run} --preset quick
python -m pytest -q tests
```

It imports from `mtlbench.api` only and declares `MTLBENCH_API = "1"`, the API version it was
written for; see mtlbench's `docs/plugins.md`.
''',
    }


def new_plugin(name: str, kind: str, folder: Path) -> list[Path]:
    """Write a plugin distribution into ``folder`` (new or empty); returns the files written."""
    files = plugin_files(name, kind)
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        raise MtlbenchError(f"{folder} exists and is not an empty folder: choose another --out")
    written = []
    for rel, text in files.items():
        path = folder / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        _write(path, text)
        written.append(path)
    return written


def _write(path: Path, text: str) -> None:
    atomic_write(path, lambda f: f.write(text), mode="w")

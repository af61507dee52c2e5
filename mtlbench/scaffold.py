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

KINDS = ("interaction", "loss", "weighting", "model", "dataset")

_MODULES = {
    "interaction": '''"""{name}: an mtlbench interaction (a guidance edge's module).

Replace the body of ``{cls}.forward``; keep its promise: the target's shape back, the residual
included, the identity at initialisation (``identity_at_init=True`` below; drop it if yours is not).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from mtlbench.api import INTERACTIONS, Option, at_least

MTLBENCH_API = "2"


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

MTLBENCH_API = "2"


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

MTLBENCH_API = "2"


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
    meta = {{"level": "loss", "paper": "", "implementation": "plugin"}}
    WEIGHTINGS.register("{name}", options=options, **meta)({name})
''',
    "model": '''"""{name}: an mtlbench model (``--model {name}``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch.nn.functional as F
from torch import Tensor, nn

from mtlbench.api import MODELS, Backbone, MultiTaskModel, Task

MTLBENCH_API = "2"


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
    "dataset": '''\"\"\"{name}: an mtlbench dataset (``--data {name}``).

Without ``--data-root`` it draws its own frames: a wall above a floor that recedes to it, and boxes
standing in front, with exact depth and three classes. With ``--data-root DIR`` it reads
``DIR/*.npz`` instead, each holding ``image`` (H×W×3 uint8), ``depth`` (H×W float32 metres,
0 = invalid) and ``seg`` (H×W uint8, 255 = unlabelled). Replace :func:`draw` or :func:`read` with
your data and keep that format.
\"\"\"

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from mtlbench.api import (
    DATASETS,
    RGBD_TARGETS,
    Arrays,
    DatasetInfo,
    DatasetSplits,
    DenseDataset,
    MtlbenchError,
    Option,
    at_least,
)

MTLBENCH_API = "2"

CLASSES = ("wall", "floor", "box")


def draw(frames: int, size: int, max_depth: float, seed: int) -> dict[str, np.ndarray]:
    \"\"\"``frames`` frames of size×size: a wall at a random distance, a floor from the horizon down
    (at the wall's distance there, nearer below), one or two boxes in front.\"\"\"
    rng = np.random.default_rng(seed)
    rows = np.repeat((np.arange(size)[:, None] + 0.5) / size, size, axis=1)
    cols = rows.T
    out = {{"image": np.empty((frames, size, size, 3), np.uint8), "depth": np.empty((frames, size, size), np.float32),
           "seg": np.empty((frames, size, size), np.uint8)}}
    for i in range(frames):
        wall, horizon = rng.uniform(0.5, 0.9) * max_depth, rng.uniform(0.3, 0.6)
        depth = np.where(rows < horizon, wall, wall * horizon / rows)
        seg = np.where(rows < horizon, 0, 1)
        for _ in range(rng.integers(1, 3)):
            top, left, height, width = rng.uniform(0.2, 0.6, 2).tolist() + rng.uniform(0.15, 0.35, 2).tolist()
            inside = (rows >= top) & (rows < top + height) & (cols >= left) & (cols < left + width)
            depth = np.where(inside, rng.uniform(0.2, 0.45) * max_depth, depth)
            seg = np.where(inside, 2, seg)
        colours = rng.uniform(40, 215, (len(CLASSES), 3))
        shade = 1.0 - 0.5 * depth / max_depth  # nearer is brighter
        noise = rng.normal(0, 4, (size, size, 3))
        out["image"][i] = np.clip(colours[seg] * shade[..., None] + noise, 0, 255)
        out["depth"][i], out["seg"][i] = depth, seg
    return out


def read(root: Path, size: int) -> dict[str, np.ndarray]:
    \"\"\"The frames ``root/*.npz`` in name order, resized to size×size (depth and labels nearest, so
    that none is invented between two).\"\"\"
    files = sorted(root.glob("*.npz"))
    if not files:
        raise MtlbenchError(f"no *.npz frames in {{root}}: each holds image, depth and seg")
    out: dict[str, list[np.ndarray]] = {{"image": [], "depth": [], "seg": []}}
    for path in files:
        with np.load(path) as frame:
            image = torch.from_numpy(frame["image"]).permute(2, 0, 1)[None].float()
            image = F.interpolate(image, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
            out["image"].append(image[0].permute(1, 2, 0).round().clamp(0, 255).to(torch.uint8).numpy())
            for key in ("depth", "seg"):
                t = torch.from_numpy(frame[key].astype(np.float32))[None, None]
                out[key].append(F.interpolate(t, size=(size, size), mode="nearest")[0, 0].numpy())
    return {{"image": np.stack(out["image"]), "depth": np.stack(out["depth"]).astype(np.float32),
            "seg": np.stack(out["seg"]).astype(np.uint8)}}


def {name}(
    root: str, size: int, max_depth: float,
    progress: Callable[[int, int], None] | None = None, *, frames: int = 48, seed: int = 0,
) -> DatasetSplits:
    \"\"\"{name}: boxes before a wall, or the frames of --data-root (mtlbench plugin template).\"\"\"
    data = read(Path(root).expanduser(), size) if root else draw(frames, size, max_depth, seed)
    n = len(data["image"])
    if n < 3:
        raise MtlbenchError(f"{name} has {{n}} frames: train, val and test need 3 or more")
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    held = max(1, n // 10)  # val and test each
    parts = order[2 * held:], order[:held], order[held:2 * held]
    targets = {{key: torch.from_numpy(data[key]) for key in ("depth", "seg")}}
    arrays = Arrays(torch.from_numpy(data["image"]), torch.arange(1, n + 1), targets)
    info = DatasetInfo(num_classes=len(CLASSES), max_depth=max_depth, class_names=CLASSES,
                       targets=dict(RGBD_TARGETS))
    train, val, test = (DenseDataset(arrays.take(p.sort().values), info) for p in parts)
    return DatasetSplits(train, val, test, info=info, source=f"{name} ({{root or f'{{n}} frames drawn'}})")


def register() -> None:
    \"\"\"The ``mtlbench.plugins`` entry point.\"\"\"
    options = {{"frames": Option(48, "frames drawn (without --data-root)", at_least(3)),
               "seed": Option(0, "seed of the frames and of the split", at_least(0))}}
    DATASETS.register("{name}", options=options)({name})
''',
}

_TESTS = {
    "interaction": ("check_interaction", '"{name}"'),
    "loss": ("check_loss", '"{name}"'),  # for the task its registration names
    "weighting": ("check_weighting", '"{name}"'),
    "model": ("check_model", '"{name}"'),
    "dataset": ("check_dataset", '"{name}", frames=12'),  # a dozen frames keep it fast
}

_RUN = {"interaction": "--task depth,seg,edge --interaction {name}",
        "loss": "--task depth --config CONFIG  # a config.toml with [loss.names] depth = \"{name}\"",
        "weighting": "--task depth,seg,edge --weighting {name}", "model": "--task depth,seg,edge --model {name}",
        "dataset": "--task depth,seg,edge --data {name}"}


def registry_kind(kind: str) -> str:
    """The registry a plugin kind registers into, as ``mtlbench list`` names it."""
    return "losses" if kind == "loss" else f"{kind}s"


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
    check, args = _TESTS[kind][0], _TESTS[kind][1].format(name=name)
    listed = registry_kind(kind)
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


def test_{name}_keeps_the_{kind}_contract():
    from mtlbench.testing import {check}

    {check}({args})
''',
        "README.md": f'''# {dist}

An mtlbench plugin: the {kind} `{name}` (written by `mtlbench plugin new {name} --kind {kind}`).

```bash
pip install -e .
mtlbench list {listed:<22} # {name}, source "plugin {name} ({dist})"
mtlbench run {run} --preset quick
python -m pytest -q tests
```

It imports from `mtlbench.api` only and declares `MTLBENCH_API = "2"`, the API version it was
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

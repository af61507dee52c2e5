"""Image files in and out: RGB inputs, single-channel label/depth PNGs, predicted maps."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor
from torchvision.io import ImageReadMode, decode_image

from mtlbench.errors import MtlbenchError
from mtlbench.fileio import atomic_write


def read_image(path: Path) -> Tensor:
    """An RGB image file as H×W×3 uint8."""
    try:
        data = torch.frombuffer(bytearray(Path(path).read_bytes()), dtype=torch.uint8)
        return decode_image(data, mode=ImageReadMode.RGB).permute(1, 2, 0).contiguous()
    except FileNotFoundError:
        raise MtlbenchError(f"image {path} not found") from None
    except (RuntimeError, ValueError, OSError):
        raise MtlbenchError(f"{path} is not a readable PNG or JPEG image: pass an RGB image file") from None


def read_label_png(path: Path) -> Tensor:
    """A single-channel PNG (labels or depth) as H×W int64, values kept as stored (8 or 16 bit)."""
    try:
        with Image.open(path) as im:
            if im.mode not in ("L", "P", "I", "I;16", "I;16B"):
                raise MtlbenchError(f"{path} has {im.mode} pixels: expected one channel (8- or 16-bit PNG)")
            return torch.from_numpy(np.array(im).astype(np.int64))
    except FileNotFoundError:
        raise MtlbenchError(f"file {path} not found") from None
    except OSError as exc:
        raise MtlbenchError(f"{path} is not a readable PNG ({exc})") from None


def write_gray_png(values: Tensor, path: Path) -> Path:
    """H×W non-negative integers as an 8-bit PNG, or 16-bit where they exceed 255 (894 classes)."""
    arr = values.numpy().astype("uint8" if int(values.max()) < 256 else "uint16")
    image = Image.fromarray(arr)
    atomic_write(path, lambda f: image.save(f, format="PNG"))
    return path


def write_npy(array: np.ndarray, path: Path) -> Path:
    atomic_write(path, lambda f: np.save(f, array))
    return path

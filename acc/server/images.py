"""Pictures of a model: its first layer's filters as a tiled grid, test reconstructions, and
latent traversals of a factor-slot model.

Written as PNG by a minimal encoder (zlib + CRC chunks) so the server needs no imaging
library. Filters use a diverging blue-white-red map, each tile scaled by its own largest
|weight|, so the sign pattern of every filter is visible whatever its norm.
"""

from __future__ import annotations

import math
import struct
import zlib

import numpy as np
import torch
from torch import nn

from acc.model_output import ModelOutput
from acc.traversal import posterior_maps, principal_direction, traverse

GAP = 1  # pixels between tiles
MIN_TILE_PX = 24  # small kernels (3x3) are enlarged to at least this many pixels


class ImageError(ValueError):
    """A model whose filters or reconstructions cannot be drawn."""


def png(pixels: np.ndarray) -> bytes:
    """Encode a uint8 image [H, W] (grey) or [H, W, 3] (RGB) as PNG."""
    if pixels.dtype != np.uint8 or pixels.ndim not in (2, 3):
        raise ValueError("png() takes a uint8 array [H, W] or [H, W, 3]")
    height, width = pixels.shape[:2]
    colour = 2 if pixels.ndim == 3 else 0
    rows = np.ascontiguousarray(pixels).reshape(height, -1)
    raw = b"".join(b"\x00" + row.tobytes() for row in rows)  # filter type 0 per row

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", width, height, 8, colour, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw, 6))
        + chunk(b"IEND", b"")
    )


def first_filters(model: nn.Module) -> tuple[str, np.ndarray]:
    """(layer name, tiles [N, h, w]): the first conv's kernels, else the first square-input
    Linear's rows as images (784 -> 28x28)."""
    modules = list(model.named_modules())
    for name, module in modules:
        if isinstance(module, nn.Conv2d):
            weight = module.weight.detach().float().cpu()  # [out, in, kh, kw]
            return name, weight.mean(dim=1).numpy()
    for name, module in modules:
        side = math.isqrt(module.in_features) if isinstance(module, nn.Linear) else 0
        if side > 1 and side * side == module.in_features:
            weight = module.weight.detach().float().cpu()
            return name, weight.reshape(-1, side, side).numpy()
    raise ImageError("this model has no Conv2d layer and no Linear layer with image input")


def filter_grid(tiles: np.ndarray) -> np.ndarray:
    """Tiles [N, h, w] laid out in a near-square grid as an RGB uint8 image."""
    n, h, w = tiles.shape
    scale = max(1, math.ceil(MIN_TILE_PX / max(h, w)))
    peak = np.abs(tiles).reshape(n, -1).max(axis=1).reshape(n, 1, 1)
    normed = tiles / np.where(peak > 0, peak, 1.0)  # [-1, 1] per tile
    rgb = _diverging(normed)  # [N, h, w, 3]
    rgb = rgb.repeat(scale, axis=1).repeat(scale, axis=2)
    return _tile(rgb, background=(40, 40, 40))


def reconstruction_strip(model: nn.Module, images: torch.Tensor) -> np.ndarray:
    """Two rows: the test images, and the model's reconstructions of them (grey uint8)."""
    with torch.no_grad():
        output = model(images)
    if ModelOutput.RECONSTRUCTION not in output:
        raise ImageError("this model gives no reconstruction")
    recon = output[ModelOutput.RECONSTRUCTION]
    side = math.isqrt(images[0].numel())
    both = torch.cat([images, recon]).reshape(-1, side, side).clamp(0, 1)
    grey = (both.numpy() * 255).round().astype(np.uint8)
    scale = max(1, math.ceil(MIN_TILE_PX / side))
    grey = grey.repeat(scale, axis=1).repeat(scale, axis=2)
    return _tile(grey, background=64, columns=images.shape[0])


def traversal_grid(model: nn.Module, test_images: torch.Tensor, group: str, n: int) -> np.ndarray:
    """A factor-slot model's traversal of ``group``: one row per test image (the first ``n``),
    one column per step t = -2..2 along the group's main direction over the test set
    (``acc.traversal``, the same traversal traversal_specificity measures); grey uint8."""
    groups = {g.name: g for g in getattr(model, "groups", ())}
    if not hasattr(model, "decode") or not groups:
        raise ImageError("this model has no factor groups to traverse")
    if group not in groups:
        raise ImageError(f"unknown factor group {group!r}; this model has: {', '.join(groups)}")
    g = groups[group]
    maps = posterior_maps(model, test_images)  # [N, C, H, W]
    direction, spread = principal_direction(maps.mean(dim=(2, 3))[:, g.start : g.end])
    decoded = traverse(model, maps[:n], g, direction, spread)  # [T, n, 1, S, S]
    side = decoded.shape[-1]
    tiles = decoded.transpose(0, 1).reshape(-1, side, side)  # row-major: image by image
    grey = (tiles.numpy() * 255).round().astype(np.uint8)
    scale = max(1, math.ceil(MIN_TILE_PX / side))
    grey = grey.repeat(scale, axis=1).repeat(scale, axis=2)
    return _tile(grey, background=64, columns=decoded.shape[0])


def _diverging(x: np.ndarray) -> np.ndarray:
    """-1 -> blue, 0 -> white, +1 -> red."""
    pos, neg = np.clip(x, 0, 1), np.clip(-x, 0, 1)
    r = 1 - 0.75 * neg
    g = 1 - 0.8 * (pos + neg)
    b = 1 - 0.75 * pos
    return (np.stack([r, g, b], axis=-1) * 255).round().astype(np.uint8)


def _tile(tiles: np.ndarray, background, columns: int | None = None) -> np.ndarray:
    n, h, w = tiles.shape[:3]
    cols = columns or math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    shape = (rows * (h + GAP) + GAP, cols * (w + GAP) + GAP) + tiles.shape[3:]
    canvas = np.empty(shape, dtype=np.uint8)
    canvas[...] = background
    for i in range(n):
        top, left = GAP + (i // cols) * (h + GAP), GAP + (i % cols) * (w + GAP)
        canvas[top : top + h, left : left + w] = tiles[i]
    return canvas

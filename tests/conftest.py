"""Shared fixtures: a small real MNIST (loaded once), a temporary store, a long CLI run."""

from __future__ import annotations

import gzip
import struct
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from acc.data import IDX_FILES, Dataset, Split, load_mnist
from acc.store import Store


@pytest.fixture(scope="session")
def mnist_flat() -> Dataset:
    return load_mnist("flat")


@pytest.fixture(scope="session")
def small_mnist(mnist_flat: Dataset) -> Dataset:
    """The first 2,000 train and 500 test images of the real data, for fast tests."""
    return Dataset(
        "mnist",
        "flat",
        Split(mnist_flat.train.images[:2000], mnist_flat.train.labels[:2000]),
        Split(mnist_flat.test.images[:500], mnist_flat.test.labels[:500]),
    )


def write_idx(path: Path, array: np.ndarray) -> None:
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + b"".join(
        struct.pack(">I", d) for d in array.shape
    )
    path.write_bytes(gzip.compress(header + array.astype(np.uint8).tobytes()))


@pytest.fixture(scope="session")
def tiny_mnist(tmp_path_factory) -> Path:
    """64 train and 40 test 28x28 'digits' (random blobs) as standard MNIST IDX files: every
    recipe runs on them in seconds (``--data-dir``)."""
    directory = tmp_path_factory.mktemp("idx")
    rng = np.random.default_rng(0)
    for split, n in (("train", 64), ("test", 40)):
        images = (rng.random((n, 28, 28)) > 0.8) * rng.integers(0, 256, (n, 28, 28))
        write_idx(directory / (IDX_FILES[f"{split}_images"] + ".gz"), images)
        write_idx(directory / (IDX_FILES[f"{split}_labels"] + ".gz"), rng.integers(0, 10, n))
    return directory


@pytest.fixture
def store(tmp_path) -> Store:
    s = Store(tmp_path / "store")
    yield s
    s.close()


@pytest.fixture(autouse=True)
def _few_threads():
    torch.set_num_threads(1)  # tiny models: one thread is as fast and immune to oversubscription


@pytest.fixture
def long_cli_run():
    """Starts `acc run` (level 0, 100,000 steps) in its own process on a store directory and
    returns (process, store) once its first losses are in the store; kills it afterwards."""
    started = []

    def start(store_dir: Path) -> tuple[subprocess.Popen, Store]:
        proc, store = _start_long_cli_run(store_dir)
        started.append(proc)
        return proc, store

    yield start
    for proc in started:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def _start_long_cli_run(store_dir: Path) -> tuple[subprocess.Popen, Store]:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "acc",
            "run",
            "gradient_gating_l0",
            "--steps",
            "100000",
            "--seeds",
            "1",
            "--eval-every",
            "0",
            "--threads",
            "1",
            "--store",
            str(store_dir),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    deadline = time.time() + 120
    store = None
    while time.time() < deadline:
        time.sleep(0.5)
        if (store_dir / "acc.sqlite").exists():
            store = store or Store(store_dir)
            runs = store.list_runs()
            if runs and any(b["steps_done"] > 0 for b in store.branches(runs[0]["id"])):
                return proc, store
    proc.kill()
    raise AssertionError(f"no training progress within 120 s: {proc.communicate()[0].decode()}")

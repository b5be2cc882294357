"""Shared fixtures: a small real MNIST (loaded once), a temporary store, a long CLI run."""

from __future__ import annotations

import gzip
import os
import struct
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from acc.data import IDX_FILES, Dataset, Split, load_mnist
from acc.server import create_app
from acc.server.serving import ServerThread
from acc.store import Store

# pytest-xdist's workers run with COLUMNS=80 and LINES=24 set; the CLI lays its tables out for
# $COLUMNS, so tests would see 80-column tables under `make test` and 160-column ones when run
# alone. Tests that want a width set it themselves (tests/test_table_layout.py).
os.environ.pop("COLUMNS", None)
os.environ.pop("LINES", None)

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
]


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


@pytest.fixture(scope="session")
def small_mnist_dir(tmp_path_factory, small_mnist: Dataset) -> Path:
    """``small_mnist`` (real digits: 2,000 train, 500 test) as MNIST IDX files, for end-to-end
    runs (``--data-dir``) that need real images but not 10,000 test images to evaluate."""
    directory = tmp_path_factory.mktemp("small-idx")
    for split in ("train", "test"):
        part = getattr(small_mnist, split)
        images = (part.images.reshape(-1, 28, 28) * 255).round().to(torch.uint8).numpy()
        write_idx(directory / (IDX_FILES[f"{split}_images"] + ".gz"), images)
        write_idx(directory / (IDX_FILES[f"{split}_labels"] + ".gz"), part.labels.numpy())
    return directory


def write_idx(path: Path, array: np.ndarray) -> None:
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + b"".join(
        struct.pack(">I", d) for d in array.shape
    )
    path.write_bytes(gzip.compress(header + array.astype(np.uint8).tobytes()))


@pytest.fixture(scope="session")
def tiny_mnist(tmp_path_factory) -> Path:
    """64 train and 40 test 28x28 'digits' (random blobs) as standard MNIST IDX files: every
    recipe runs on them in seconds (``--data-dir``)."""
    return blob_digits(tmp_path_factory.mktemp("idx"), train=64, test=40)


@pytest.fixture(scope="session")
def micro_mnist(tmp_path_factory) -> Path:
    """32 train and 8 test blob 'digits' (IDX files), for level-3 runs whose final evaluation
    (Morpho-MNIST measurements of each test image's traversals, gradient boosting on the train
    split) is the cost: a fifth of ``tiny_mnist``'s."""
    return blob_digits(tmp_path_factory.mktemp("micro-idx"), train=32, test=8)


def blob_digits(directory: Path, train: int, test: int) -> Path:
    rng = np.random.default_rng(0)
    for split, n in (("train", train), ("test", test)):
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


def _created(database: Path) -> bool:
    """Whether another process has created this store database: SQLite makes the file empty
    first and writes it a moment later, and a Store refuses an empty one (a truncated file)."""
    return database.is_file() and database.stat().st_size > 0


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
        if _created(store_dir / "acc.sqlite"):
            store = store or Store(store_dir)
            runs = store.list_runs()
            if runs and any(b["steps_done"] > 0 for b in store.branches(runs[0]["id"])):
                return proc, store
    proc.kill()
    raise AssertionError(f"no training progress within 120 s: {proc.communicate()[0].decode()}")


@pytest.fixture(scope="module")
def _chromium():
    """One headless Debian Chromium per test module (starting one is seconds a test); each
    test gets its own browser context, so no cookie, storage or cache crosses tests.
    Skipped only where Chromium is missing outside CI; in CI (CI=true) it must run.
    Playwright never downloads a browser here."""
    if not CHROMIUM.exists() and os.environ.get("CI") != "true":
        pytest.skip("no /usr/bin/chromium (the Makefile's test setup installs it)")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(tmp_path, _chromium):
    """The real dashboard (uvicorn on a free 127.0.0.1 port, a store in ``tmp_path/store``)
    in a fresh context of the module's Chromium, ready (the form holds the recipe's
    defaults). Afterwards: no JavaScript error and no request outside the server."""
    app = create_app(tmp_path / "store", worker_threads=1)
    with ServerThread(app) as url:
        context = _chromium.new_context(viewport={"width": 1400, "height": 1000})
        tab = context.new_page()
        outside, errors = [], []
        tab.on("request", lambda r: _outside(r.url, url, outside))
        tab.on("pageerror", lambda e: errors.append(str(e)))
        tab.goto(url + "/")
        tab.wait_for_selector("body[data-ready]")  # filled in before the defaults would be lost
        yield tab
        context.close()
        assert not outside, f"the page reached outside the server: {outside}"
        assert not errors, f"JavaScript errors: {errors}"


def _outside(requested: str, server: str, outside: list) -> None:
    if not requested.startswith(server) and not requested.startswith("data:"):
        outside.append(requested)

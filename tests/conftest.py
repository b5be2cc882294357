"""Shared fixtures: a small real MNIST (loaded once) and a temporary store."""

from __future__ import annotations

import pytest
import torch

from acc.data import Dataset, Split, load_mnist
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


@pytest.fixture
def store(tmp_path) -> Store:
    s = Store(tmp_path / "store")
    yield s
    s.close()


@pytest.fixture(autouse=True)
def _few_threads():
    torch.set_num_threads(1)  # tiny models: one thread is as fast and immune to oversubscription

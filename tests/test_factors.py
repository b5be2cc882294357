"""Morpho-MNIST measurements: known answers on drawn strokes, the fast path against the reference
steps on real digits, the cache, and ``acc data factors``.

Sign convention (the reference's): x points right, y down, slant = arctan(-mu11 / mu02), so a
stroke whose top leans to the right has a positive slant.
"""

from __future__ import annotations

import csv
import time

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from skimage import morphology
from typer.testing import CliRunner

from acc import factors
from acc.cli import app
from acc.factors import (
    FACTORS,
    dataset_factors,
    dataset_images_uint8,
    factors_for,
    measure,
    measure_image,
)


def bar(width: float, length: float = 18.0, angle: float = 0.0, dx: float = 0.0) -> np.ndarray:
    """A stroke ``width`` pixels wide (horizontally) and ``length`` tall, its top ``angle``
    radians to the right of vertical, centred on pixel (14, 14) + dx; drawn 8x finer and
    averaged down, so its edges are anti-aliased like MNIST's."""
    s = 8
    c = (np.arange(28 * s) + 0.5) / s
    y, x = c[:, None], c[None, :]
    axis = 14.5 + dx + np.tan(angle) * (14.5 - y)
    inside = (np.abs(x - axis) <= width / 2) & (np.abs(y - 14.5) <= length / 2)
    return np.round(inside.reshape(28, s, 28, s).mean(axis=(1, 3)) * 255).astype(np.uint8)


@pytest.fixture(scope="module")
def digits(mnist_flat) -> np.ndarray:
    return dataset_images_uint8(mnist_flat.test.images[:50])


# --- known answers ----------------------------------------------------------------------------


@pytest.mark.parametrize("width", [3, 5])
def test_vertical_bar_thickness_is_its_width_and_slant_zero(width):
    m = measure_image(bar(width))
    assert m["thickness"] == pytest.approx(width, rel=0.1)  # skeleton ends pull the mean down
    assert m["slant"] == pytest.approx(0.0, abs=1e-9)
    assert m["height"] == pytest.approx(18.0, rel=0.03)


@pytest.mark.parametrize("angle", [0.3, -0.3, 0.5])
def test_sheared_bar_slant_is_its_angle_positive_when_leaning_right(angle):
    assert measure_image(bar(3, angle=angle))["slant"] == pytest.approx(angle, abs=0.01)


def test_a_horizontal_shift_changes_nothing(digits):
    """Up to rounding, while the digit stays >= 5 pixels from the sides: closer, the upscaling's
    mirrored border (the reference's mode='reflect') adds faint mass and moves the grey moments
    by ~1e-4 relative."""
    margins = [min(np.flatnonzero(d.any(0))[0], 27 - np.flatnonzero(d.any(0))[-1]) for d in digits]
    image = digits[int(np.argmax(np.array(margins) >= 7))]
    original = measure_image(image)
    for shift in (-2, 2):
        assert measure_image(np.roll(image, shift, axis=1)) == pytest.approx(original, rel=1e-9)
    drawn = measure_image(bar(3, angle=0.3)), measure_image(bar(3, angle=0.3, dx=4))
    assert drawn[0] == pytest.approx(drawn[1], rel=1e-9)


def test_area_of_a_filled_rectangle():
    image = np.zeros((28, 28), np.uint8)
    image[9:19, 11:17] = 255
    assert measure_image(image)["area"] == pytest.approx(60, rel=0.02)


def test_length_of_a_thin_line():
    image = np.zeros((28, 28), np.uint8)
    image[14, 6:22] = 255
    assert measure_image(image)["length"] == pytest.approx(16, rel=0.05)


def test_a_blank_image_has_no_factors():
    blank = np.zeros((28, 28), np.uint8)
    for exact in (False, True):
        assert all(np.isnan(v) for v in measure_image(blank, exact=exact).values())


def test_first_training_digit_matches_the_released_table(mnist_flat):
    """The reference's own test values (released original/train-morpho.csv, row 0). The tables
    were made with an older scikit-image: ~0.2% apart on the moment-based factors and area, a
    few % on the skeleton-based ones (SCIENCE.md)."""
    m = measure_image(dataset_images_uint8(mnist_flat.train.images[:1])[0])
    released = {"area": 107.3125, "length": 50.26650429449552, "thickness": 2.4606583773939543,
                "slant": 0.23107446620980754, "width": 14.539571782767355,
                "height": 19.849053691610763}  # fmt: skip
    for name in ("area", "slant", "width", "height"):
        assert m[name] == pytest.approx(released[name], rel=0.005), name
    for name in ("length", "thickness"):
        assert m[name] == pytest.approx(released[name], rel=0.06), name


# --- the fast path is the reference ------------------------------------------------------------


def test_fast_path_equals_reference_steps_on_real_digits(digits):
    """Same definitions, same skeletons: only floating-point summation order differs."""
    fast = measure(digits, workers=1)
    for i, image in enumerate(digits):
        exact = measure_image(image, exact=True)
        for name in FACTORS:
            assert fast[name][i] == pytest.approx(exact[name], rel=1e-9, abs=1e-12), (i, name)


def test_cropped_medial_axis_equals_skimage_on_the_full_canvas(digits):
    for image in digits[:5]:
        hires = factors._upscale(image)
        binary = hires >= factors._thresholds(hires)
        full, full_distance = morphology.medial_axis(binary, return_distance=True, rng=42)
        rows, cols = np.flatnonzero(binary.any(1)), np.flatnonzero(binary.any(0))
        box = slice(rows[0] - 1, rows[-1] + 2), slice(cols[0] - 1, cols[-1] + 2)
        skeleton, distance = factors._medial_axis(factors._crop(binary))
        np.testing.assert_array_equal(skeleton, full[box])
        np.testing.assert_array_equal(distance, full_distance[box])


def test_worker_processes_give_the_same_values(digits):
    done = []
    parallel = measure(np.concatenate([digits] * 6), workers=2, progress=done.append)
    serial = measure(digits, workers=1)
    assert sum(done) == 300
    for name in FACTORS:
        np.testing.assert_array_equal(parallel[name], np.tile(serial[name], 6))


def test_a_daemonic_process_measures_inline(digits, monkeypatch):
    """A process executor's workers are daemonic and may not start a pool of their own."""

    class Daemon:
        daemon = True

    monkeypatch.setattr(factors.multiprocessing, "current_process", Daemon)
    monkeypatch.setattr(factors, "_map_pool", lambda *a: pytest.fail("started a pool"))
    assert measure(np.concatenate([digits] * 6), workers=2)["area"].shape == (300,)


def test_views_map_back_to_the_same_bytes(mnist_flat):
    flat = mnist_flat.test.images[:20]
    as_28 = flat.reshape(-1, 1, 28, 28)
    expected = dataset_images_uint8(flat)
    np.testing.assert_array_equal(dataset_images_uint8(as_28), expected)
    np.testing.assert_array_equal(dataset_images_uint8(F.pad(as_28, (2, 2, 2, 2))), expected)
    # the bundled file stores byte / 256; IDX files are read as byte / 255: same bytes back
    np.testing.assert_array_equal(expected, np.round(flat.numpy() * 256).reshape(-1, 28, 28))
    from_idx = torch.from_numpy(expected.astype(np.float32) / 255.0)
    np.testing.assert_array_equal(dataset_images_uint8(from_idx), expected)


# --- the cache --------------------------------------------------------------------------------


def test_the_cache_is_used_on_the_second_call(digits, tmp_path, monkeypatch):
    calls = []
    real = factors.measure
    monkeypatch.setattr(factors, "measure", lambda *a, **k: calls.append(1) or real(*a, **k))
    first = factors_for(digits[:10], tmp_path, workers=1)
    second = factors_for(digits[:10], tmp_path, workers=1)
    assert len(calls) == 1 and len(list(tmp_path.glob("*.npz"))) == 1
    for name in FACTORS:
        np.testing.assert_array_equal(first[name], second[name])
    factors_for(digits[10:20], tmp_path, workers=1)  # other images, another key
    assert len(calls) == 2


@pytest.mark.parametrize("damage", ["garbage", "truncated", "other_method"])
def test_a_bad_cache_file_is_measured_again_with_a_message(digits, tmp_path, damage):
    expected = factors_for(digits[:10], tmp_path, workers=1)
    [path] = tmp_path.glob("*.npz")
    if damage == "garbage":
        path.write_bytes(b"not a zip file")
    elif damage == "truncated":
        path.write_bytes(path.read_bytes()[:200])
    else:
        with np.load(path, allow_pickle=False) as data:
            stale = dict(data)
        np.savez(path, **{**stale, "method": np.array("morpho-mnist/v0")})
    messages = []
    again = factors_for(digits[:10], tmp_path, log=messages.append, workers=1)
    assert len(messages) == 1 and "measuring again" in messages[0]
    for name in FACTORS:
        np.testing.assert_array_equal(again[name], expected[name])
    factors_for(digits[:10], tmp_path, log=messages.append, workers=1)
    assert len(messages) == 1  # rewritten whole: read quietly from now on


def test_dataset_factors_reads_a_split(small_mnist, tmp_path):
    started = time.perf_counter()
    values = dataset_factors(small_mnist, "test", tmp_path, workers=1)
    assert set(values) == set(FACTORS) and all(v.shape == (500,) for v in values.values())
    assert all(np.isfinite(v).all() for v in values.values())
    assert time.perf_counter() - started < 10
    with pytest.raises(ValueError, match="split"):
        dataset_factors(small_mnist, "valid", tmp_path)


# --- the command ------------------------------------------------------------------------------


@pytest.mark.parametrize(("split", "rows"), [("test", 40), ("all", 104)])
def test_acc_data_factors_writes_one_row_per_image(tiny_mnist, tmp_path, split, rows):
    out = tmp_path / "factors.csv"
    args = ["data", "factors", "--split", split, "--csv", str(out), "--workers", "1"]
    args += ["--store", str(tmp_path / "store"), "--data-dir", str(tiny_mnist)]
    result = CliRunner().invoke(app, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    with out.open() as f:
        table = list(csv.reader(f))
    split_column = ["split"] if split == "all" else []
    assert table[0] == [*split_column, "index", *FACTORS]
    assert len(table) == rows + 1
    assert table[-1][: len(split_column) + 1] == [*(["test"] if split_column else []), "39"]
    assert list((tmp_path / "store" / "factors").glob("*.npz"))


def test_acc_data_factors_rejects_a_bad_split(tmp_path):
    args = ["data", "factors", "--split", "valid", "--csv", str(tmp_path / "f.csv")]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2 and "--split" in result.output

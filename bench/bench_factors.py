"""Speed and faithfulness of the Morpho-MNIST measurements (``acc.factors``).

Times the reference-exact path (``measure_image(exact=True)``, one process) on ``--exact``
test images and the fast path (``measure``, one worker and then all cores) on ``--fast`` test
images, projects both to all 70,000 MNIST images, and checks the fast path against the exact
one on the exact path's images: mean and max relative difference and correlation per factor.
``--stats`` also measures the whole test split and sets its means and standard deviations
beside the published ones (SCIENCE.md, "Morpho-MNIST measurements").

    .venv/bin/python bench/bench_factors.py --exact 200 --fast 5000 --stats
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from acc.data import load_mnist
from acc.factors import FACTORS, available_cpus, dataset_images_uint8, measure, measure_image

ALL_MNIST = 70_000
PUBLISHED = {  # MNIST test split, mean and standard deviation (Castro et al. 2019)
    "area": (104, 35),
    "length": (42.9, 11.2),
    "thickness": (2.69, 0.70),
    "slant": (0.088, 0.245),
    "width": (13.1, 3.9),
    "height": (19.1, 1.1),
}


def timed(fn, *args, **kwargs):
    started = time.perf_counter()
    result = fn(*args, **kwargs)
    return result, time.perf_counter() - started


def exact_batch(images: np.ndarray) -> dict[str, np.ndarray]:
    rows = [measure_image(image, exact=True) for image in images]
    return {name: np.array([row[name] for row in rows]) for name in FACTORS}


def report_speed(name: str, n: int, seconds: float, workers: int) -> None:
    rate = n / seconds
    print(f"{name:<28} {n:>6} images  {seconds:7.1f} s  {rate:8.0f} images/s  "
          f"70k: {ALL_MNIST / rate / 60:6.1f} min  ({workers} process(es))")  # fmt: skip


def report_agreement(exact: dict, fast: dict) -> None:
    print(f"\nfast vs exact on {len(exact['area'])} images")
    print(
        f"{'factor':<10} {'mean rel diff':>14} {'max rel diff':>13} {'max abs diff':>13} {'r':>9}"
    )
    for name in FACTORS:
        e, f = exact[name], fast[name]
        rel = np.abs(f - e) / np.maximum(np.abs(e), 1e-12)
        r = np.corrcoef(e, f)[0, 1]
        print(f"{name:<10} {rel.mean():14.2e} {rel.max():13.2e} {np.abs(f - e).max():13.2e} "
              f"{r:9.6f}")  # fmt: skip


def report_stats(values: dict[str, np.ndarray]) -> None:
    print(f"\nMNIST test split ({len(values['area'])} images): ours vs published")
    for name in FACTORS:
        mean, std = PUBLISHED[name]
        print(f"{name:<10} {values[name].mean():8.3f} +- {values[name].std():6.3f}   "
              f"published {mean} +- {std}")  # fmt: skip
    c = np.corrcoef([values[k] for k in ("thickness", "slant", "area", "length", "width")])
    print(f"correlations: thickness-slant {c[0, 1]:.3f} (published 0.01), area-thickness "
          f"{c[2, 0]:.3f} (0.69), length-width {c[3, 4]:.3f} (0.71)")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--exact", type=int, default=200, help="images for the exact path")
    parser.add_argument("--fast", type=int, default=5000, help="images for the fast path")
    parser.add_argument("--workers", type=int, default=None, help="[default: all CPUs]")
    parser.add_argument("--stats", action="store_true", help="measure the whole test split")
    args = parser.parse_args()
    images = dataset_images_uint8(load_mnist("flat").test.images)
    workers = args.workers or available_cpus()
    print(f"{available_cpus()} CPUs available; fast path with {workers} workers\n")

    exact, seconds = timed(exact_batch, images[: args.exact])
    report_speed("exact (reference steps)", args.exact, seconds, 1)
    _, seconds = timed(measure, images[: args.fast], workers=1)
    report_speed("fast, 1 process", args.fast, seconds, 1)
    _, seconds = timed(measure, images[: args.fast], workers=workers)
    report_speed("fast, all cores (incl. spawn)", args.fast, seconds, workers)
    report_agreement(exact, measure(images[: args.exact], workers=1))
    if args.stats:
        values, seconds = timed(measure, images, workers=workers)
        report_speed("fast, whole test split", len(images), seconds, workers)
        report_stats(values)


if __name__ == "__main__":
    main()

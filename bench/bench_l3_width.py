"""Training speed of the level-3 factor-slot VAE per width preset: what a branch costs where.

One training step as ``gradient_gating_l3`` takes it (reconstruction, KL, the three probes,
batch 64, Adam), standard and gated, for ``--seconds`` after a warm-up, per preset. With
``--procs N`` that many processes train side by side (as ``acc run --workers N`` does) and the
aggregate steps/s is reported too: on a GPU several branches share the card.

    .venv/bin/python bench/bench_l3_width.py                       # this CPU, 1 thread
    PYTHONPATH=. python3 bench/bench_l3_width.py --device cuda --procs 12 --widths full
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import time
from pathlib import Path

import torch

from acc.data import load_mnist, with_factors
from acc.gradient_gating import attach_competitive_gating
from acc.recipes.gradient_gating_l3 import GradientGatingL3
from acc.trainer import TrainConfig, Trainer

WIDTHS = ("small", "half", "full")


def synthetic_factors(data) -> dict:
    """Speed does not depend on the factor values: standard-normal stand-ins of the right size."""
    g = torch.Generator().manual_seed(0)
    return {
        split: {
            name: torch.randn(len(getattr(data, split).images), generator=g).to(
                getattr(data, split).images.device
            )
            for name in GradientGatingL3.measured_factors
        }
        for split in ("train", "test")
    }


def steps_per_second(width: str, gated: bool, device: str, seconds: float, threads: int) -> float:
    torch.set_num_threads(threads)
    recipe = GradientGatingL3()
    p = recipe.Params(width=width, seeds=[0])
    data = load_mnist(recipe.data_view, device, None)
    data = with_factors(data, synthetic_factors(data))
    torch.manual_seed(0)
    model = recipe.build_model(p).to(device)
    condition = recipe.conditions(p)[1 if gated else 0]
    if condition.gating:
        attach_competitive_gating(model, condition.gating.temperature, condition.gating.layers)
    tasks = [t for t in recipe.tasks(p, data) if not t.eval_only]
    trainer = Trainer(model, tasks, TrainConfig(batch_size=p.batch_size, seed=0))
    trainer.train(50)  # warm-up: allocator, kernels, autotuning
    done, began = 0, time.perf_counter()
    while time.perf_counter() - began < seconds:
        trainer.train(50)  # the trainer syncs with the device once per 50 steps
        done += 50
    return done / (time.perf_counter() - began)


def _worker(args) -> float:
    return steps_per_second(*args)


def measure(width, gated, device, seconds, threads, procs) -> dict:
    if procs == 1:
        rates = [steps_per_second(width, gated, device, seconds, threads)]
    else:
        with multiprocessing.get_context("spawn").Pool(procs) as pool:
            rates = pool.map(_worker, [(width, gated, device, seconds, threads)] * procs)
    return {
        "width": width,
        "gated": gated,
        "procs": procs,
        "steps_per_s_each": sum(rates) / len(rates),
        "steps_per_s_total": sum(rates),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--widths", default=",".join(WIDTHS))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--procs", type=int, default=1)
    parser.add_argument("--json", type=Path, help="write the rows here too")
    args = parser.parse_args()
    rows = []
    for width in args.widths.split(","):
        for gated in (False, True):
            row = measure(width, gated, args.device, args.seconds, args.threads, args.procs)
            rows.append(row)
            print(
                f"{width:>5} {'gated   ' if gated else 'standard'} {args.procs} x: "
                f"{row['steps_per_s_each']:7.1f} steps/s each, "
                f"{row['steps_per_s_total']:7.1f} in all",
                flush=True,
            )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()

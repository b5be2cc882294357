"""What does competitive gradient gating cost on the level-1 conv autoencoder?

Trains the same ConvAutoencoder (same initial weights, same batches) with and without the
level-1 gates (conv1 1.0, conv2 0.5) through the real Trainer, interleaving the two so that
machine load hits both alike, and prints the median gated/ungated time ratio over rounds.

    .venv/bin/python bench/bench_conv_gating.py --steps 100 --rounds 7
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch

from acc.data import Dataset, Split
from acc.gradient_gating import attach_competitive_gating
from acc.models import ConvAutoencoder
from acc.recipes.gradient_gating_l1 import encoder_gating
from acc.tasks.reconstruction import ReconstructionTask
from acc.trainer import TrainConfig, Trainer


def synthetic_mnist(n: int = 4096) -> Dataset:
    """MNIST-shaped data ([N, 1, 32, 32] in [0, 1], mostly zeros): speed does not need digits."""
    generator = torch.Generator().manual_seed(0)
    images = torch.rand(n, 1, 32, 32, generator=generator)
    images = images * (torch.rand(n, 1, 32, 32, generator=generator) > 0.8)
    split = Split(images, torch.zeros(n, dtype=torch.long))
    return Dataset("synthetic", "32", split, split)


def time_training(model: ConvAutoencoder, data: Dataset, steps: int, gated: bool) -> float:
    model = copy.deepcopy(model)
    gating = attach_competitive_gating(model, 1.0, encoder_gating(1.0, 1.0, 0.5, "batch")) \
        if gated else None
    trainer = Trainer(model, [ReconstructionTask("reconstruction", data)],
                      TrainConfig(batch_size=128, seed=0))
    trainer.train(3)  # warm-up: allocator, first Adam state
    started = time.perf_counter()
    trainer.train(steps)
    seconds = time.perf_counter() - started
    if gating:
        gating.remove()
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=100, help="timed steps per run")
    parser.add_argument("--rounds", type=int, default=7, help="interleaved (plain, gated) pairs")
    args = parser.parse_args()
    torch.manual_seed(0)
    model, data = ConvAutoencoder(1, 64, 32), synthetic_mnist()
    ratios = []
    for round_ in range(args.rounds):
        order = (False, True) if round_ % 2 == 0 else (True, False)  # alternate who goes first
        times = {gated: time_training(model, data, args.steps, gated) for gated in order}
        ratios.append(times[True] / times[False])
        print(f"round {round_ + 1}: plain {times[False] / args.steps * 1e3:.2f} ms/step, "
              f"gated {times[True] / args.steps * 1e3:.2f} ms/step, ratio {ratios[-1]:.3f}")
    print(f"median gated/plain time ratio over {args.rounds} rounds: "
          f"{statistics.median(ratios):.3f} (threads: {torch.get_num_threads()})")


if __name__ == "__main__":
    main()

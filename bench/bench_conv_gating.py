"""What does competitive gradient gating cost on the level-1 conv autoencoder?

Trains the same ConvAutoencoder (same initial weights, same batches) with and without the
level-1 gates (conv1 1.0, conv2 0.5) through the real Trainer, alternating short blocks of
steps between the two so that machine load hits both alike, and prints the median
gated/plain ratio of wall time and of this process's CPU time over the pairs of blocks.

    .venv/bin/python bench/bench_conv_gating.py --steps 20 --rounds 15
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


def make_trainer(model: ConvAutoencoder, data: Dataset, gated: bool) -> Trainer:
    """A trainer on a copy of ``model``; both conditions draw the same batch sequence."""
    model = copy.deepcopy(model)
    if gated:
        attach_competitive_gating(model, 1.0, encoder_gating(1.0, 0.5, "batch"))
    trainer = Trainer(
        model, [ReconstructionTask("reconstruction", data)], TrainConfig(batch_size=128, seed=0)
    )
    trainer.train(3)  # warm-up: allocator, first Adam state
    return trainer


def time_block(trainer: Trainer, steps: int) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process) for ``steps`` training steps.

    CPU time is the robust number on a shared machine: other processes stretch wall time
    but not the work this process does.
    """
    wall, cpu = time.perf_counter(), time.process_time()
    trainer.train(steps)
    return time.perf_counter() - wall, time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20, help="steps per timed block")
    parser.add_argument("--rounds", type=int, default=15, help="interleaved (plain, gated) pairs")
    args = parser.parse_args()
    torch.manual_seed(0)
    model, data = ConvAutoencoder(1, 64, 32), synthetic_mnist()
    trainers = {False: make_trainer(model, data, False), True: make_trainer(model, data, True)}
    wall_ratios, cpu_ratios = [], []
    for round_ in range(args.rounds):
        order = (False, True) if round_ % 2 == 0 else (True, False)  # alternate who goes first
        times = {gated: time_block(trainers[gated], args.steps) for gated in order}
        wall_ratios.append(times[True][0] / times[False][0])
        cpu_ratios.append(times[True][1] / times[False][1])
        print(
            f"round {round_ + 1}: plain {times[False][0] / args.steps * 1e3:.1f} ms/step "
            f"(cpu {times[False][1] / args.steps * 1e3:.1f}), gated "
            f"{times[True][0] / args.steps * 1e3:.1f} ms/step (cpu "
            f"{times[True][1] / args.steps * 1e3:.1f}); ratio wall {wall_ratios[-1]:.3f}, "
            f"cpu {cpu_ratios[-1]:.3f}"
        )
    print(
        f"median gated/plain ratio over {args.rounds} rounds of {args.steps} steps: "
        f"wall {statistics.median(wall_ratios):.3f}, cpu {statistics.median(cpu_ratios):.3f} "
        f"(torch threads: {torch.get_num_threads()})"
    )


if __name__ == "__main__":
    main()

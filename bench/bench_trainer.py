"""What does the framework cost? ACC's Trainer vs a hand-written PyTorch loop, and gated vs
ungated training, and a gate whose entropy is set (temperature "entropy:0.5": a search for T
every step) vs a fixed temperature, on the level-0 linear autoencoder with real MNIST.

All variants run in one process, interleaved round by round (so drift in machine load hits
them alike), on the same model, batch size, step count and batch order. Prints the median of
the per-round time ratios. Targets: Trainer <= 1.05x the plain loop; gated <= 1.08x ungated;
entropy target <= 1.03x a fixed temperature.

    python bench/bench_trainer.py [--steps 1000] [--rounds 7] [--device cpu] [--threads 1]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from acc.data import load_mnist
from acc.gradient_gating import attach_competitive_gating
from acc.models import LinearAutoencoder
from acc.tasks.reconstruction import ReconstructionTask
from acc.trainer import BatchOrder, TrainConfig, Trainer


def fresh_model(device: torch.device) -> LinearAutoencoder:
    torch.manual_seed(0)
    return LinearAutoencoder(784, 64).to(device)


def plain_loop(images: torch.Tensor, steps: int, device: torch.device) -> None:
    """The loop a researcher would write by hand: same sampling, loss and optimizer."""
    model = fresh_model(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    order = BatchOrder(images.shape[0], 128, seed=1, device=device)
    for _ in range(steps):
        batch = images[order.next()]
        loss = F.l1_loss(model(batch)["reconstruction"], batch)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    float(loss.detach())  # one sync at the end


def acc_trainer(dataset, steps: int, device: torch.device, gated: bool, temperature=1.0) -> None:
    model = fresh_model(device)
    if gated:
        attach_competitive_gating(model, temperature, {"encoder.0": {"gate_strength": 1.0}})
    trainer = Trainer(
        model, [ReconstructionTask("reconstruction", dataset)], TrainConfig(seed=1, eval_every=0)
    )
    trainer.train(steps)


def timed(fn) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process): on a shared machine CPU time is steadier."""
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - wall, time.process_time() - cpu


def ratio(times: dict, a: str, b: str, which: int) -> float:
    return statistics.median(x[which] / y[which] for x, y in zip(times[a], times[b]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    dataset = load_mnist("flat", device)
    variants = {
        "plain loop": lambda: plain_loop(dataset.train.images, args.steps, device),
        "ACC trainer": lambda: acc_trainer(dataset, args.steps, device, gated=False),
        "ACC trainer + gating": lambda: acc_trainer(dataset, args.steps, device, gated=True),
        "gating, entropy:0.5": lambda: acc_trainer(
            dataset, args.steps, device, gated=True, temperature="entropy:0.5"
        ),
    }
    for fn in variants.values():  # warm-up: allocator, kernels, caches
        fn()
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in variants}
    for round_ in range(args.rounds):
        names = list(variants)
        names = names[round_ % len(names) :] + names[: round_ % len(names)]  # rotate the first
        for name in names:
            times[name].append(timed(variants[name]))
    print(
        f"device {device}, {torch.get_num_threads()} threads, {args.steps} steps x "
        f"{args.rounds} rounds, batch 128, linear AE 784-64-784"
    )
    for name, values in times.items():
        wall = statistics.median(v[0] for v in values) * 1e3 / args.steps
        cpu = statistics.median(v[1] for v in values) * 1e3 / args.steps
        print(f"  {name:<22} median {wall:.3f} ms/step wall, {cpu:.3f} ms/step CPU")
    for label, a, b, target in (
        ("ACC trainer / plain loop", "ACC trainer", "plain loop", 1.05),
        ("gated / ungated", "ACC trainer + gating", "ACC trainer", 1.08),
        ("entropy target / fixed T", "gating, entropy:0.5", "ACC trainer + gating", 1.03),
    ):
        print(
            f"{label:<25}: {ratio(times, a, b, 0):.3f}x wall, {ratio(times, a, b, 1):.3f}x CPU "
            f"(target <= {target})"
        )


if __name__ == "__main__":
    main()

"""What does the framework cost? ACC's Trainer vs a hand-written PyTorch loop, and gated vs
ungated training, and a gate whose entropy is set (temperature "entropy:0.5": a search for T
every step) vs a fixed temperature, on the level-0 linear autoencoder with real MNIST.

All variants run in one process on the same model, batch size, step count and batch order,
interleaved in chunks of ``--chunk`` steps (every variant trains its next chunk before any
trains the one after, the first of each chunk rotating), so drift in machine load, which on
a shared machine moves a step's time by tens of percent within seconds, hits them alike.
A round is one fresh training of ``--steps`` steps per variant; the ratios printed are the
medians over all chunks of the paired chunks' time ratios, in wall time and in CPU time of
this process (steadier on a shared machine). Targets: Trainer <= 1.05x the plain loop;
gated <= 1.08x ungated; entropy target <= 1.03x a fixed temperature.

    python bench/bench_trainer.py [--steps 1000] [--rounds 7] [--chunk 50] [--threads 1]
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


class PlainLoop:
    """The loop a researcher would write by hand: same sampling, loss and optimizer."""

    def __init__(self, dataset, device: torch.device) -> None:
        self.images, self.model = dataset.train.images, fresh_model(device)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=1e-3)
        self.order = BatchOrder(self.images.shape[0], 128, seed=1, device=device)

    def run(self, steps: int, last: bool) -> None:
        for _ in range(steps):
            batch = self.images[self.order.next()]
            loss = F.l1_loss(self.model(batch)["reconstruction"], batch)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()


class AccTraining:
    """ACC's Trainer on the same model, optionally with a gate on the hidden layer."""

    def __init__(self, dataset, device: torch.device, temperature=None) -> None:
        model = fresh_model(device)
        if temperature is not None:
            layers = {"encoder.0": {"gate_strength": 1.0}}
            attach_competitive_gating(model, temperature, layers)
        task = ReconstructionTask("reconstruction", dataset)
        self.trainer = Trainer(model, [task], TrainConfig(seed=1, eval_every=0))

    def run(self, steps: int, last: bool) -> None:
        self.trainer.train(steps, end_of_run=last)


def timed(run, steps: int, last: bool) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process) of ``run.run(steps, last)``, the device
    drained at both ends."""
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    wall, cpu = time.perf_counter(), time.process_time()
    run.run(steps, last)
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - wall, time.process_time() - cpu


def one_round(makers: dict, steps: int, chunk: int, round_: int) -> dict[str, list]:
    """Every variant trains ``steps`` steps from scratch, chunk by chunk in turn: name -> one
    (wall seconds, CPU seconds) per chunk."""
    runs = {name: make() for name, make in makers.items()}
    times: dict[str, list] = {name: [] for name in runs}
    names = list(runs)
    for index, start in enumerate(range(0, steps, chunk)):
        n, last = min(chunk, steps - start), start + chunk >= steps
        shift = (round_ + index) % len(names)
        for name in names[shift:] + names[:shift]:
            times[name].append(timed(runs[name], n, last))
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--chunk", type=int, default=50, help="steps per interleaved chunk")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    dataset = load_mnist("flat", device)
    makers = {
        "plain loop": lambda: PlainLoop(dataset, device),
        "ACC trainer": lambda: AccTraining(dataset, device),
        "ACC trainer + gating": lambda: AccTraining(dataset, device, 1.0),
        "gating, entropy:0.5": lambda: AccTraining(dataset, device, "entropy:0.5"),
    }
    one_round(makers, min(args.steps, 200), args.chunk, 0)  # warm-up: allocator, kernels, caches
    rounds = [one_round(makers, args.steps, args.chunk, r) for r in range(args.rounds)]
    print(
        f"device {device}, {torch.get_num_threads()} threads, {args.steps} steps x "
        f"{args.rounds} rounds in chunks of {args.chunk}, batch 128, linear AE 784-64-784"
    )
    for name in makers:
        wall, cpu = (statistics.median(sum(t[i] for t in r[name]) for r in rounds) for i in (0, 1))
        per_step = 1e3 / args.steps
        print(f"  {name:<22} median {wall * per_step:.3f} ms/step wall, {cpu * per_step:.3f} CPU")
    for label, a, b, target in (
        ("ACC trainer / plain loop", "ACC trainer", "plain loop", 1.05),
        ("gated / ungated", "ACC trainer + gating", "ACC trainer", 1.08),
        ("entropy target / fixed T", "gating, entropy:0.5", "ACC trainer + gating", 1.03),
    ):
        wall, cpu = (paired_ratio(rounds, a, b, i) for i in (0, 1))
        print(f"{label:<25}: {wall:.3f}x wall, {cpu:.3f}x CPU (target <= {target})")


def paired_ratio(rounds: list[dict], a: str, b: str, which: int) -> float:
    """The median over every round's chunks of a's time / b's time on the same chunk: each
    pair ran within a few hundred ms, so a change in machine load cancels; the median drops
    the chunks a burst of load hit in one of the two."""
    ratios = [x[which] / y[which] for r in rounds for x, y in zip(r[a], r[b])]
    return statistics.median(ratios)


if __name__ == "__main__":
    main()

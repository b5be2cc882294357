"""What does a periodic evaluation cost, one pass per task vs one shared pass?

At levels 1 and 2 each periodic evaluation measures sparsity and dead units on conv1 and
conv2: four tasks that read layer activations over the 10,000 test images. Evaluated one
task at a time, that is four forward passes; ``evaluate_tasks`` feeds all four from one.
This times both on the level-2 ConvVAE, alternating them, and prints the median ratio.

    .venv/bin/python bench/bench_evaluation.py --rounds 5 --threads 1
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from acc.data import load_mnist
from acc.models import ConvVAE
from acc.recipes.gradient_gating_l1 import specialisation_tasks
from acc.trainer import evaluate_tasks


def one_pass_per_task(model, tasks) -> dict:
    metrics: dict = {}
    for task in tasks:
        metrics.update(task.evaluate(model))
    return metrics


def timed(evaluate, model, tasks) -> tuple[float, dict]:
    start = time.perf_counter()
    metrics = evaluate(model, tasks)
    return time.perf_counter() - start, metrics


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--rounds", type=int, default=5, help="interleaved (separate, shared) pairs"
    )
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model, tasks = ConvVAE(1, 16, 32), specialisation_tasks(load_mnist("32"))
    separate_times, shared_times = [], []
    for round_ in range(args.rounds):
        if round_ % 2 == 0:  # alternate who goes first, so that machine load hits both alike
            separate, expected = timed(one_pass_per_task, model, tasks)
            shared, metrics = timed(evaluate_tasks, model, tasks)
        else:
            shared, metrics = timed(evaluate_tasks, model, tasks)
            separate, expected = timed(one_pass_per_task, model, tasks)
        assert metrics == expected, "the shared pass must give exactly the same numbers"
        separate_times.append(separate)
        shared_times.append(shared)
        print(f"round {round_ + 1}: one pass per task {separate:.2f} s, shared pass {shared:.2f} s")
    separate, shared = statistics.median(separate_times), statistics.median(shared_times)
    print(
        f"median: one pass per task {separate:.2f} s, shared {shared:.2f} s; "
        f"shared / separate = {shared / separate:.3f}"
    )


if __name__ == "__main__":
    main()

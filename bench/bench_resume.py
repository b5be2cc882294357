"""What do resume points cost? Level 1, one branch trained with a resume point every N steps
(the default, 1,000) against none, alternating, through the real path: the branch packs its
training state, the recorder writes it atomically and deletes the previous one.

    .venv/bin/python bench/bench_resume.py --steps 3000 --rounds 2 --threads 1
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import torch

from acc.branch import run_branch_safely
from acc.data import load_mnist
from acc.plan import plan_run
from acc.recipes import recipe_registry
from acc.recorder import RunRecorder
from acc.runner import DEFAULT_CHECKPOINT_EVERY, create_run
from acc.store import Store
from acc.trainer import TrainConfig, Trainer
from acc.training_state import pack


def train_one_branch(steps: int, every: int) -> tuple[float, int]:
    """Seconds to train and record the standard branch of seed 42; resume points written."""
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(tmp)
        params = {"steps": steps, "seeds": [42], "eval_every": 0}
        run_id = create_run(store, "gradient_gating_l1", params, "cpu", checkpoint_every=every)
        recipe = recipe_registry().get("gradient_gating_l1")()
        spec = plan_run(store, run_id, recipe, recipe.Params(**params), "cpu", None, every)[0]
        recorder, saved = RunRecorder(store, run_id), []

        def record(event: dict) -> None:
            if event["type"] == "resume_point":
                saved.append(event["step"])
            recorder.event(spec, event)

        started = time.perf_counter()
        recorder.finished(spec, run_branch_safely(spec, record))
        seconds = time.perf_counter() - started
        store.close()
    return seconds, len(saved)


def cost_of_one_resume_point(repeats: int = 20) -> float:
    """Median seconds to pack a level-1 training state (after a few Adam steps, so the
    optimizer state is full) and write it as the branch's resume point."""
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(tmp)
        params = {"steps": 0, "seeds": [42], "eval_every": 0}
        run_id = create_run(store, "gradient_gating_l1", params, "cpu")
        recipe = recipe_registry().get("gradient_gating_l1")()
        p = recipe.Params(**params)
        torch.manual_seed(42)
        model = recipe.build_model(p)
        data = load_mnist(recipe.data_view)
        trainer = Trainer(model, recipe.tasks(p, data), TrainConfig(seed=42))
        trainer.train(5)
        times = []
        for i in range(repeats):
            started = time.perf_counter()
            store.checkpoints.save_resume_point(run_id, 1, i, pack(model, trainer))
            times.append(time.perf_counter() - started)
        store.close()
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--every", type=int, default=DEFAULT_CHECKPOINT_EVERY)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    train_one_branch(50, 0)  # warm-up: data loaded and cached, kernels chosen
    with_points, without = [], []
    for round_ in range(args.rounds):
        order = [args.every, 0] if round_ % 2 == 0 else [0, args.every]
        for every in order:
            seconds, points = train_one_branch(args.steps, every)
            (with_points if every else without).append(seconds)
            label = f"every {every}" if every else "none"
            print(f"round {round_ + 1}: {label}: {seconds:.1f} s, {points} resume points")
    ratio = statistics.median(a / b for a, b in zip(with_points, without))
    cost = cost_of_one_resume_point()
    per_step = statistics.median(without) / args.steps
    print(
        f"one resume point (pack + atomic write + drop the previous): {cost * 1000:.0f} ms = "
        f"{cost / (per_step * args.every) * 100:.2f}% of the {args.every} steps between two"
    )
    print(
        f"\nlevel 1, {args.steps} steps, resume point every {args.every}: "
        f"{statistics.median(with_points):.1f} s vs {statistics.median(without):.1f} s without "
        f"= {ratio:.3f}x ({(ratio - 1) * 100:+.1f}% overhead)"
    )


if __name__ == "__main__":
    main()

"""What a level-3 branch's final evaluation costs, task by task (issue 19, part 3).

Builds the level-3 factor-slot VAE (``--width``, fixed init from ``--seed``), optionally trains
it ``--train-steps`` steps (codes that carry their factors, for the DCI comparison; the
evaluation's cost does not depend on it), and times, per round: the whole final evaluation as a
branch runs it (``evaluate_tasks`` over every task of the recipe), then each task alone inside
one shared test pass, then the parts of the disentanglement and traversal tasks. Wall and CPU
seconds (CPU: this process, all its threads; on a loaded machine it is the steadier figure).
``--compare-dci`` also fits DCI with the estimator of DESIGN.md (scikit-learn's
GradientBoosting) and with the fast one the task uses, on the same codes, and prints both.

Real Morpho-MNIST factors, measured once and cached where ``acc run`` caches them
(``$ACC_STORE/factors``, default ./acc-store/factors).

    .venv/bin/python bench/bench_l3_evaluation.py --rounds 2 --train-steps 300 --compare-dci
"""

from __future__ import annotations

import argparse
import time
from contextlib import contextmanager

import numpy as np
import torch

from acc.boosting_importance import ESTIMATORS
from acc.data import load_mnist, with_factors
from acc.disentanglement import cross_probe, dci, mig, sap
from acc.factors import dataset_factors
from acc.recipes.gradient_gating_l3 import GradientGatingL3
from acc.store import default_store_dir
from acc.tasks.base import shared_test_pass
from acc.tasks.disentanglement import FIT_IMAGES, DisentanglementTask, _first
from acc.tasks.traversal_specificity import IMAGES, TraversalSpecificityTask
from acc.trainer import TrainConfig, Trainer, evaluate_tasks
from acc.traversal import principal_direction, traverse


class Clock:
    """Wall and CPU seconds per named part, summed over rounds."""

    def __init__(self) -> None:
        self.wall: dict[str, list[float]] = {}
        self.cpu: dict[str, list[float]] = {}

    @contextmanager
    def part(self, name: str):
        wall, cpu = time.perf_counter(), time.process_time()
        yield
        self.wall.setdefault(name, []).append(time.perf_counter() - wall)
        self.cpu.setdefault(name, []).append(time.process_time() - cpu)

    def report(self) -> None:
        print(f"\n{'part':<44} {'wall s':>8} {'cpu s':>8}   (median over rounds)")
        for name in self.wall:
            wall, cpu = np.median(self.wall[name]), np.median(self.cpu[name])
            print(f"{name:<44} {wall:8.2f} {cpu:8.2f}")


def level3_data(recipe: GradientGatingL3):
    data = load_mnist(recipe.data_view, "cpu", None)
    cache = default_store_dir() / "factors"
    factors = {}
    for split in ("train", "test"):
        named = dataset_factors(data, split, cache, log=print)
        factors[split] = {f: torch.from_numpy(named[f]) for f in recipe.measured_factors}
    return with_factors(data, factors)


def trained_model(recipe, p, data, steps: int, seed: int):
    torch.manual_seed(seed)
    model = recipe.build_model(p)
    tasks = recipe.tasks(p, data)
    if steps:
        train = [t for t in tasks if not t.eval_only]
        Trainer(model, train, TrainConfig(batch_size=p.batch_size, seed=seed)).train(steps)
    return model, tasks


def time_parts(clock: Clock, model, tasks) -> None:
    """Each task alone inside one shared pass, then the expensive tasks' parts (in the same
    shared pass, as the final evaluation runs them)."""
    with clock.part("shared test pass (outputs, activations)"), shared_test_pass(model, tasks):
        pass
    with shared_test_pass(model, tasks):
        for task in tasks:
            with clock.part(f"task {task.name}"):
                task.evaluate(model)
        for task in tasks:
            if isinstance(task, DisentanglementTask):
                disentanglement_parts(clock, model, task)
            if isinstance(task, TraversalSpecificityTask):
                traversal_parts(clock, model, task)


def disentanglement_parts(clock: Clock, model, task: DisentanglementTask) -> None:
    fit = _first(task.dataset.train, FIT_IMAGES)
    with clock.part("  disentanglement: fit codes (encoder)"):
        z_fit = task.codes(model, fit)
    with clock.part("  disentanglement: test codes (shared pass)"):
        z_test = task.test_codes(model)
    f_fit, f_test = task.targets(fit), task.targets(task.dataset.test)
    with clock.part("  disentanglement: dci"):
        dci(z_fit, f_fit, z_test, f_test)
    with clock.part("  disentanglement: mig"):
        mig(z_test, f_test)
    with clock.part("  disentanglement: sap"):
        sap(z_test, {k: v for k, v in f_test.items() if k != "digit"})
    groups = task.groups
    with clock.part("  disentanglement: cross-probe"):
        split = {g.name: (z_fit[:, g.start : g.end], z_test[:, g.start : g.end]) for g in groups}
        cross_probe(
            {g: v[0] for g, v in split.items()}, f_fit,
            {g: v[1] for g, v in split.items()}, f_test, {k: k for k in task.factors},
        )  # fmt: skip


def traversal_parts(clock: Clock, model, task: TraversalSpecificityTask) -> None:
    with clock.part("  traversal: posterior maps (shared pass)"):
        maps = task.maps(model)
    pooled = maps.mean(dim=(2, 3))
    std = {f: float(task.dataset.test.factors[f].double().std()) for f in task.factors}
    for group in [g for g in task.groups if g.name in task.factors]:
        direction, spread = principal_direction(pooled[:, group.start : group.end])
        with clock.part("  traversal: decode"):
            decoded = traverse(model, maps[:IMAGES], group, direction, spread)
        with clock.part("  traversal: measure + slopes"):
            task.slopes(decoded, std)


def compare_dci(model, task: DisentanglementTask) -> None:
    """DESIGN.md's estimator (GradientBoosting) and the task's, on the same codes, each
    fitted once (the reference's three models on threads, as ``dci`` fits them)."""
    fit = _first(task.dataset.train, FIT_IMAGES)
    z_fit, z_test = task.codes(model, fit), task.codes(model, task.dataset.test)
    f_fit, f_test = task.targets(fit), task.targets(task.dataset.test)
    print("\nDCI on this model's codes, per estimator")
    for estimator in ESTIMATORS:
        started, cpu = time.perf_counter(), time.process_time()
        scores = dci(z_fit, f_fit, z_test, f_test, estimator=estimator)
        seconds = time.perf_counter() - started
        cpu = time.process_time() - cpu
        per = ", ".join(f"{k} {v:.3f}" for k, v in scores["per_factor_informativeness"].items())
        print(
            f"{estimator:<22} {seconds:6.1f} s ({cpu:.1f} s CPU)"
            f"  disentanglement {scores['disentanglement']:.4f}"
            f"  completeness {scores['completeness']:.4f}"
            f"  informativeness {scores['informativeness']:.4f} ({per})"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--width", default="small", choices=("small", "half", "full"))
    parser.add_argument("--rounds", type=int, default=1, help="repeats; medians reported")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (as a branch)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--train-steps", type=int, default=0, help="train first (not timed)")
    parser.add_argument("--compare-dci", action="store_true", help="DCI per estimator")
    parser.add_argument("--no-parts", action="store_true", help="only the whole evaluation")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    recipe = GradientGatingL3()
    p = recipe.Params(width=args.width, seeds=[args.seed])
    data = level3_data(recipe)
    model, tasks = trained_model(recipe, p, data, args.train_steps, args.seed)
    clock = Clock()
    for round_ in range(args.rounds):
        with clock.part("final evaluation (evaluate_tasks)"):
            metrics = evaluate_tasks(model, tasks)
        print(f"round {round_ + 1}: {clock.wall['final evaluation (evaluate_tasks)'][-1]:.1f} s")
        if not args.no_parts:
            time_parts(clock, model, tasks)
    clock.report()
    shown = {k: round(v, 4) for k, v in sorted(metrics.items()) if isinstance(v, float)}
    print("\nmetrics:", shown)
    if args.compare_dci:
        compare_dci(model, next(t for t in tasks if isinstance(t, DisentanglementTask)))


if __name__ == "__main__":
    main()

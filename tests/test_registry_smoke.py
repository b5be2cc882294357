"""Registry-driven smoke tests (as timm does for models): a recipe or task is covered the
moment it registers. Every recipe runs 2 steps x 2 seeds through the inline executor, and its
first seed again in worker processes, to the same bits (metrics and weights) on this machine;
every task is evaluated on every model it applies to."""

from __future__ import annotations

import math

import pytest
import torch

from acc.data import Dataset, Split
from acc.eval_metric import split_key
from acc.executors.inline import InlineExecutor
from acc.executors.process import ProcessExecutor
from acc.factors import dataset_images_uint8, measure
from acc.gradient_gating import layer_names
from acc.models import MODELS
from acc.recipes import recipe_registry
from acc.runner import create_run, execute_run
from acc.server.inspector import build_task, dataset_view, task_catalog
from acc.store import Store
from acc.tasks import LayerTask, TaskError, task_registry

RECIPES = recipe_registry().names()
SEEDS = {"inline": [1, 2], "process": [1]}  # the worker run repeats the first seed's branches
TASKS = task_registry().names()


@pytest.fixture(scope="module")
def process_executor():
    return ProcessExecutor(workers=2, threads=1)


@pytest.fixture(scope="module")
def inline_runs(tmp_path_factory, micro_mnist):
    """Each recipe's inline run, made once: the inline test checks it, the process test
    compares its own run with it."""
    made = {}

    def run(recipe: str) -> tuple[Store, dict]:
        if recipe not in made:
            store = Store(tmp_path_factory.mktemp(recipe) / "store")
            made[recipe] = (store, _run(store, recipe, micro_mnist, InlineExecutor(), "inline"))
        return made[recipe]

    return run


def _run(store: Store, recipe: str, data_dir, pool, executor: str) -> dict:
    params = {"steps": 2, "seeds": SEEDS[executor], "eval_every": 1, "batch_size": 8}
    run_id = create_run(store, recipe, params, "cpu", data_dir, checkpoint_every=1)
    return execute_run(store, run_id, pool)


@pytest.mark.parametrize("executor", ["inline", "process"])
@pytest.mark.parametrize("recipe", RECIPES)
def test_every_recipe_runs_two_steps_on_two_seeds(
    store, micro_mnist, recipe, executor, process_executor, inline_runs
):
    if executor == "inline":
        store, results = inline_runs(recipe)
    else:
        results = _run(store, recipe, micro_mnist, process_executor, executor)
    assert results["status"] == "completed", results.get("error")
    conditions = recipe_registry().get(recipe)().conditions(recipe_registry().get(recipe).Params())
    assert list(results["conditions"]) == [c.name for c in conditions]
    for entry in results["conditions"].values():
        assert [r["seed"] for r in entry["runs"]] == SEEDS[executor]
        for run in entry["runs"]:
            assert run["status"] == "completed" and run["steps"] == 2, run
            assert run["metrics"] and all(_finite(v) for v in run["metrics"].values())
            assert set(run["health"].values()) == {"healthy"}
    assert all(c["n"] == len(SEEDS[executor]) for c in results["comparisons"])
    for branch in store.branches(results["run_id"]):  # periodic evaluations at steps 0, 1, 2
        assert [e["step"] for e in store.evals(branch["id"])] == [0, 1, 2]
    if executor == "process":  # bit-identity holds on one machine: worker processes = inline
        inline_store, inline = inline_runs(recipe)
        expected = _final(inline_store, inline)
        assert _final(store, results) == {k: v for k, v in expected.items() if k[1] == 1}


def _final(store: Store, results: dict) -> dict:
    """(condition, seed) -> (final metrics, final weights as bytes), to compare exactly."""
    return {
        (condition, r["seed"]): (
            r["metrics"],
            {
                name: tensor.numpy().tobytes()
                for name, tensor in store.checkpoints.load_state_dict(r["checkpoint_id"]).items()
            },
        )
        for condition, entry in results["conditions"].items()
        for r in entry["runs"]
    }


def _finite(value) -> bool:
    values = value if isinstance(value, list) else [value]
    return all(isinstance(v, (int, float)) and math.isfinite(v) for v in values)


# what a task says when it does not apply to a model
DOES_NOT_APPLY = ("needs the model output", "needs a factor-slot model", "reads latent channels")


def _data(view: str) -> Dataset:
    shape = {"flat": (784,), "28": (1, 28, 28), "32": (1, 32, 32)}[view]
    g = torch.Generator().manual_seed(0)
    images = torch.rand(24, *shape, generator=g)
    labels = torch.arange(24) % 10
    factors = {k: torch.from_numpy(v) for k, v in measure(dataset_images_uint8(images), 1).items()}
    split = Split(images, labels, factors)  # measured, as level 3's tasks need
    return Dataset("random", view, split, split)


def _task_params(name: str, model) -> dict:
    """Required constructor parameters: a layer task measures the model's first weight layer."""
    entry = next(t for t in task_catalog() if t["name"] == name)
    required = {p["name"] for p in entry["params"] if p["required"]}
    modules = dict(model.named_modules())
    first = next(n for n in layer_names(model) if getattr(modules[n], "weight", None) is not None)
    params = {"layer_name": first} if issubclass(task_registry().get(name), LayerTask) else {}
    assert required <= set(params), f"{name} needs {required - set(params)}: teach this test"
    return params


@pytest.fixture(scope="module")
def every_task_evaluated() -> dict:
    """Every task evaluated once on every model: model name -> (model, data, {task name:
    (task, its metrics or the TaskError that says it does not apply)})."""
    out = {}
    for model_name in sorted(MODELS):
        torch.manual_seed(0)
        model = MODELS[model_name]()
        data = _data(dataset_view(model))
        outcomes = {}
        for name in TASKS:
            task = build_task(name, _task_params(name, model), data)
            try:
                outcomes[name] = (task, task.evaluate(model))
            except TaskError as exc:
                outcomes[name] = (task, exc)
        out[model_name] = (model, data, outcomes)
    return out


@pytest.mark.parametrize("model_name", sorted(MODELS))
def test_every_task_on_every_model_it_applies_to(model_name, every_task_evaluated):
    model, data, outcomes = every_task_evaluated[model_name]
    applied = []
    for name, (task, metrics) in outcomes.items():
        if isinstance(metrics, TaskError):  # does not apply: it must say why, naming the task
            why = str(metrics)
            assert name in why and any(reason in why for reason in DOES_NOT_APPLY), why
            continue
        applied.append(name)
        assert metrics and all(_finite(v) for v in metrics.values()), (name, metrics)
        assert all(split_key(k)[0] is not None for k in metrics), f"{name}: unknown metric keys"
        if not task.eval_only:  # a training task's loss is finite and reaches every parameter
            model.zero_grad()
            task.indices = torch.arange(8)  # the batch's positions, as the Trainer sets them
            loss = task.compute_loss(model.train()(data.train.images[:8]), data.train.images[:8])
            assert loss.dim() == 0 and math.isfinite(loss.item())
            loss.backward()
    assert "ReconstructionTask" in applied


def test_every_task_applies_to_some_model(every_task_evaluated):
    usable = {
        name
        for _, _, outcomes in every_task_evaluated.values()
        for name, (_, metrics) in outcomes.items()
        if not isinstance(metrics, TaskError)
    }
    assert usable == set(TASKS)

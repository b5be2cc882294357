"""A branch (one condition of one seed) as a unit of work that can run anywhere.

``BranchSpec`` is plain data: everything a worker on another machine needs (recipe name,
validated parameters, condition, seed, the root checkpoint's bytes, where to resume from),
nothing that only exists in the driver's memory. ``run_branch`` is a pure function of it: it
streams events (``branch``, ``train``, ``step``, ``eval``, ``phase``, ``resume_point``,
``log``) through ``emit`` while it trains and evaluates, and returns the final metrics and
checkpoint bytes. It never opens the store: the driver is the only writer, wherever the
branch ran.
"""

from __future__ import annotations

import contextlib
import functools
import os
import socket
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass

import torch

from acc.checkpoints import bytes_to_tensors, tensors_to_bytes
from acc.data import Dataset, load_mnist, with_factors
from acc.eval_metric import EvalMetric
from acc.gradient_gating import AttachedGating, attach_competitive_gating
from acc.loss_health import Health, assess
from acc.recipes import Recipe, recipe_registry
from acc.recipes.base import Condition, Gating, RecipeParams, experiment_conditions
from acc.status import Status
from acc.tasks.base import Task
from acc.trainer import (
    NonFiniteLoss,
    StepInfo,
    StopRequested,
    TrainConfig,
    Trainer,
    evaluate_tasks,
    loss_every_for,
)
from acc.training_state import pack, restore, threads_of
from acc.write_failure import StoreWriteFailed

Emit = Callable[[dict], None]
# Join(spec, model, trainer, gating): a context manager around the branch's training (the
# stacked executor's: the steps run jointly with other branches' inside it)
Join = Callable[..., contextlib.AbstractContextManager]
# seeding then building a model draws from the global RNG: branches built in threads of one
# process (the stacked executor) take turns
_BUILDING = threading.Lock()


@dataclass(frozen=True)
class BranchSpec:
    run_id: str
    branch_id: int  # the driver's label for the branch; the work does not depend on it
    recipe: str
    params: dict  # the recipe's validated parameters (``model_dump()``), for this branch
    condition: str  # as the store names it: the recipe's condition, or a sweep cell of it
    seed: int
    root_id: str
    root: bytes  # the seed's root checkpoint: safetensors of the initial state_dict
    device: str = "cpu"
    data_dir: str | None = None
    checkpoint_every: int = 0  # steps between resume points; 0 = none
    resume: bytes | None = None  # a packed training state (acc.training_state) to go on from
    recipe_condition: str | None = None  # the recipe's condition, where ``condition`` is a cell
    factors: bytes | None = None  # measured factors of both splits (safetensors), if needed

    @property
    def label(self) -> str:
        return f"{self.condition} seed {self.seed}"


@dataclass(frozen=True)
class BranchResult:
    metrics: dict
    weights: bytes  # safetensors of the final state_dict
    metadata: dict  # model config, gating, tasks, condition (stored beside the checkpoint)
    steps: int


@dataclass(frozen=True)
class BranchFailure:
    status: Status  # failed, or cancelled when it was asked to stop
    error: str
    steps: int | None = None  # None: unknown (the worker died)
    traceback: str | None = None


BranchOutcome = BranchResult | BranchFailure


def run_branch(
    spec: BranchSpec,
    emit: Emit,
    should_stop: Callable[[], bool] | None = None,
    join: Join | None = None,
):
    """Train one branch from its root checkpoint (or resume point) and evaluate it.
    ``join``, where given, wraps the training (not the final evaluation)."""
    recipe: Recipe = recipe_registry().get(spec.recipe)()
    p = recipe.Params(**spec.params)
    condition = _condition(recipe, p, spec.recipe_condition or spec.condition)
    device = torch.device(spec.device)
    data = _dataset(recipe.data_view, spec.device, spec.data_dir)
    if spec.factors:
        data = with_factors(data, unpack_factors(spec.factors, device))
    tag = _tag(spec)

    with _BUILDING:
        torch.manual_seed(spec.seed)  # the same stochastic draws (VAE noise) for every condition
        model = recipe.build_model(p, **condition.model_overrides).to(device)
        model.load_state_dict(bytes_to_tensors(spec.root)[0])
    gating = (
        attach_competitive_gating(
            model,
            condition.gating.temperature,
            condition.gating.layers,
            control=condition.gating.control,
            seed=spec.seed,
        )
        if condition.gating
        else None
    )

    def gate_metrics() -> dict:
        return _gate_metrics(gating, condition.gating) if gating else {}

    try:
        tasks = recipe.tasks(p, data)
        trainer = _trainer(model, tasks, p, spec, emit, tag, should_stop, gate_metrics)
        start = restore(spec.resume, model, trainer, gating) if spec.resume else 0
        where = {"pid": os.getpid(), "host": socket.gethostname()}
        emit({"type": "branch", "state": "running", "from_step": start, **where, **tag})
        emit({"type": "train", "from_step": start, "to_step": p.steps, **tag})
        if spec.resume and device.type == "cpu":
            _check_threads(spec, threads_of(spec.resume), emit)
        began = time.perf_counter()
        with join(spec, model, trainer, gating) if join else contextlib.nullcontext():
            _train(
                trainer,
                p.steps,
                spec.checkpoint_every,
                lambda: _resume_point(model, trainer, gating, emit, tag),
            )
        seconds = time.perf_counter() - began
        emit({"type": "log", "message": f"{spec.label}: {p.steps - start} steps in {seconds:.1f}s"})
        metrics = {**_final_evaluation(model, tasks, emit, tag), **gate_metrics()}
        metadata = {
            "model": model.config(),
            "recipe_params": p.model_dump(),
            "gating": gating.describe() if gating else None,
            "tasks": [t.describe() for t in tasks],
            "condition": spec.condition,
        }
        return BranchResult(metrics, tensors_to_bytes(model.state_dict()), metadata, trainer.step)
    finally:
        if gating:
            gating.remove()


def run_branch_safely(
    spec: BranchSpec,
    emit: Emit,
    should_stop: Callable[[], bool] | None = None,
    join: Join | None = None,
) -> BranchOutcome:
    """``run_branch``, with a failure (an exception, a NaN loss, a stop request, Ctrl-C)
    returned as a ``BranchFailure`` rather than raised: what workers send back, and what lets
    the inline executor record a stopped branch before it stops the run. A store that cannot
    take the branch's events (inline: ``emit`` writes it) is raised: it stops the run."""
    steps = {"done": None}

    def tracking(event: dict) -> None:
        if event["type"] in ("step", "branch"):
            steps["done"] = event.get("step", event.get("from_step"))
        emit(event)

    try:
        return run_branch(spec, tracking, should_stop, join)
    except StoreWriteFailed:  # the driver's store is full: not this branch's failure, the run's
        raise
    except StopRequested:
        return BranchFailure(Status.CANCELLED, "cancelled", steps["done"])
    except NonFiniteLoss as exc:  # LossHealth's verdict on the task whose loss broke
        verdict = {exc.task: str(Health.DIVERGED)}
        emit({"type": "health", "health": verdict, "step": exc.step, **_tag(spec)})
        return BranchFailure(Status.FAILED, f"{type(exc).__name__}: {exc}", steps["done"])
    except KeyboardInterrupt:  # Ctrl-C in the driver's own process (inline execution)
        return BranchFailure(Status.INTERRUPTED, "interrupted by the user", steps["done"])
    except Exception as exc:  # noqa: BLE001 - a failed branch must not stop the others
        return BranchFailure(
            Status.FAILED, f"{type(exc).__name__}: {exc}", steps["done"], traceback.format_exc()
        )


# --- the parts of a branch --------------------------------------------------------------------


def _tag(spec: BranchSpec) -> dict:
    """What every event of a branch carries, so that listeners can tell branches apart."""
    return {"condition": spec.condition, "seed": spec.seed}


def _condition(recipe: Recipe, p: RecipeParams, name: str) -> Condition:
    conditions = {c.name: c for c in experiment_conditions(recipe, p)}
    if name not in conditions:
        raise ValueError(
            f"recipe {recipe.name} has no condition {name!r}; its conditions: "
            f"{', '.join(conditions)}"
        )
    return conditions[name]


def pack_factors(factors: dict[str, dict]) -> bytes:
    """``{"train": {name: [N]}, "test": {...}}`` as safetensors bytes (float32)."""
    return tensors_to_bytes(
        {
            f"{split}/{name}": torch.as_tensor(values, dtype=torch.float32)
            for split, named in factors.items()
            for name, values in named.items()
        }
    )


def unpack_factors(data: bytes, device: torch.device) -> dict[str, dict[str, torch.Tensor]]:
    tensors, _ = bytes_to_tensors(data)
    out: dict[str, dict[str, torch.Tensor]] = {}
    for key, values in tensors.items():
        split, _, name = key.partition("/")
        out.setdefault(split, {})[name] = values.to(device)
    return out


@functools.lru_cache(maxsize=4)
def _dataset(view: str, device: str, data_dir: str | None) -> Dataset:
    """MNIST once per process and view: a worker that trains several branches loads it once."""
    return load_mnist(view, device, data_dir)


def _trainer(model, tasks: list[Task], p, spec: BranchSpec, emit: Emit, tag, should_stop, gates):
    def on_step(info: StepInfo) -> None:
        health = {name: str(h) for name, h in assess(tasks, info.losses, info.step).items()}
        emit(
            {
                "type": "step",
                "step": info.step,
                "losses": info.losses,
                "points": {"step": info.points.steps, "losses": info.points.losses},
                "steps_per_second": info.steps_per_second,
                "health": health,
                **tag,
            }
        )

    def on_eval(step: int, metrics: dict) -> None:
        emit({"type": "eval", "step": step, "metrics": {**metrics, **gates()}, **tag})

    config = TrainConfig(
        batch_size=p.batch_size,
        lr=p.lr,
        optimizer=p.optimizer,
        seed=spec.seed,
        eval_every=p.eval_every,
        loss_every=loss_every_for(p.steps),  # the total steps, also when resumed
    )
    return Trainer(model, tasks, config, on_step=on_step, on_eval=on_eval, should_stop=should_stop)


def _train(trainer: Trainer, steps: int, every: int, save: Callable[[], None]) -> None:
    """Train to ``steps`` in chunks that end on multiples of ``every``, saving a resume point
    after each chunk but the last (``train(0)`` still runs once: the step-0 evaluation). Only
    the last chunk closes the loss points, so they do not depend on ``every``."""
    while True:
        target = steps if not every else min(steps, (trainer.step // every + 1) * every)
        trainer.train(target - trainer.step, end_of_run=target >= steps)
        if trainer.step >= steps:
            return
        save()


def _final_evaluation(model, tasks: list[Task], emit: Emit, tag: dict) -> dict:
    """Evaluate every task, saying where the evaluation is (``phase`` events): at level 3 it
    takes minutes after the last step, and a branch that said nothing looked stuck. Index 0
    is the one pass over the test images that the tasks share; then one event per task."""
    total = len(tasks)

    def phase(index: int, what: str) -> None:
        emit({"type": "phase", "phase": "evaluating", "index": index, "total": total,
              "task": what, **tag})  # fmt: skip

    phase(0, "outputs on the test split")
    return evaluate_tasks(model, tasks, on_task=lambda i, task: phase(i, task.name))


def _check_threads(spec: BranchSpec, trained_with: int | None, emit: Emit) -> None:
    """Say so when a branch resumes on another CPU thread count than it trained with: the
    rest of it may round differently (close to an uninterrupted run, not bit-identical)."""
    now = torch.get_num_threads()
    if trained_with is not None and trained_with != now:
        emit(
            {
                "type": "log",
                "message": f"{spec.label}: resumed on {now} torch threads, trained on "
                f"{trained_with}: its results may differ from an uninterrupted run's in the "
                f"last digits (resume with --threads {trained_with} for bit-identical ones)",
            }
        )


def _resume_point(model, trainer: Trainer, gating, emit: Emit, tag: dict) -> None:
    state = pack(model, trainer, gating)
    emit({"type": "resume_point", "step": trainer.step, "state": state, **tag})


def _gate_metrics(gating: AttachedGating, declared: Gating) -> dict:
    """gate_entropy and gate_max of each gated layer over the steps since the last read.

    They describe the competition the gate applies: the mask's statistics (DESIGN.md). At
    gate_strength 0 the mask is computed but not applied (scale = 1 for every channel, training
    bit-identical to none): the statistics are then those of the scale the gradients got,
    uniform, so exactly 1 and 1 (no competition), not those of a mask that does nothing."""
    metrics = {}
    for layer, (entropy, largest) in gating.read_statistics().items():
        if gating.gates[layer].config.gate_strength == 0:
            entropy, largest = 1.0, 1.0
        label = declared.metric_label(layer)
        metrics[EvalMetric.GATE_ENTROPY.key(label)] = entropy
        metrics[EvalMetric.GATE_MAX.key(label)] = largest
    return metrics

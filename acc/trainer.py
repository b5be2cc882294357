"""Trainer: the dumb pipe. forward -> weighted task losses -> backward -> optimizer step.

It knows nothing of gating (tensor hooks do that) or of recipes. The hot loop never syncs
with the host: losses stay on the device and are read back every ``log_every`` steps, when
they are checked for NaN/inf and reported through ``on_step``: the window's mean losses, and
the window's loss points (the mean loss of every block of ``loss_every`` steps, so a short
run's curve has a point per step while the host still syncs once per window).

Everything that decides what the next step does (the model, the optimizer state, the step,
the batch order's position and generator, the global RNG) is in ``state_dict()``, so that a
trainer restored from it trains on exactly as the original would have (exact resume).
"""

from __future__ import annotations

import math
import operator
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import reduce
from typing import Literal

import torch
from torch import nn

from acc.data import Split
from acc.tasks.base import Task, shared_test_pass

OPTIMIZERS = ("adam", "sgd")
MAX_LOSS_POINTS = 5_000  # loss points per branch, at most about: see loss_every_for


def loss_every_for(total_steps: int) -> int:
    """Steps per recorded loss point of a branch that trains ``total_steps`` steps in all: 1
    (a point per step) up to ``MAX_LOSS_POINTS`` steps, else ``ceil(total / MAX_LOSS_POINTS)``,
    so a branch records at most about 5,000 points. A resumed branch asks with its total steps
    (not the steps left), so its points fall where an uninterrupted run's would."""
    return max(1, math.ceil(total_steps / MAX_LOSS_POINTS))


class NonFiniteLoss(RuntimeError):
    """A training loss became NaN or infinite."""

    def __init__(self, step: int, task: str, value: float) -> None:
        super().__init__(f"non-finite loss {value} in task {task!r} at step {step}")
        self.step, self.task = step, task


class StopRequested(RuntimeError):
    """Training was asked to stop (a cancelled job)."""


@dataclass(frozen=True)
class TrainConfig:
    batch_size: int = 128
    lr: float = 1e-3
    optimizer: Literal["adam", "sgd"] = "adam"
    seed: int = 0  # fixes the batch order, so every condition of a seed sees the same batches
    log_every: int = 50  # steps between loss read-backs (the only host syncs)
    eval_every: int = 0  # steps between periodic evaluations; 0 = off
    loss_every: int = 1  # steps per loss point (each the mean loss of its steps)

    def __post_init__(self) -> None:
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(
                f"unknown optimizer {self.optimizer!r}; valid: {', '.join(OPTIMIZERS)}"
            )
        if self.batch_size < 1 or self.lr <= 0 or self.log_every < 1 or self.eval_every < 0:
            raise ValueError("batch_size and log_every must be >= 1, lr > 0, eval_every >= 0")
        if self.loss_every < 1:
            raise ValueError(
                f"loss_every (steps per recorded loss point) must be >= 1, got {self.loss_every}"
            )


@dataclass(frozen=True)
class LossPoints:
    """Loss points in columns: ``losses[task][i]`` is the task's mean loss over the steps
    after the previous point up to and including step ``steps[i]``."""

    steps: list[int] = field(default_factory=list)
    losses: dict[str, list[float]] = field(default_factory=dict)


@dataclass(frozen=True)
class StepInfo:
    step: int  # steps done so far
    losses: dict[str, float]  # task name -> mean loss over the steps since the last report
    steps_per_second: float
    points: LossPoints = field(default_factory=LossPoints)  # the points this window completed


@dataclass
class BatchOrder:
    """Consecutive slices of per-epoch permutations drawn from a seeded generator."""

    n: int
    batch_size: int
    seed: int
    device: torch.device
    _generator: torch.Generator = field(init=False)
    _perm: torch.Tensor = field(init=False)
    _pos: int = field(init=False)

    def __post_init__(self) -> None:
        if self.batch_size > self.n:
            raise ValueError(f"batch_size {self.batch_size} exceeds the {self.n} training examples")
        self._generator = torch.Generator().manual_seed(self.seed)
        self._new_epoch()

    def state_dict(self) -> dict:
        return {
            "generator": self._generator.get_state(),
            "perm": self._perm.cpu(),
            "pos": self._pos,
        }

    def load_state_dict(self, state: dict) -> None:
        self._generator.set_state(state["generator"])
        self._perm = state["perm"].to(self.device)
        self._pos = int(state["pos"])

    def _new_epoch(self) -> None:
        self._perm = torch.randperm(self.n, generator=self._generator).to(self.device)
        self._pos = 0

    def next(self) -> torch.Tensor:
        if self._pos + self.batch_size > self.n:
            self._new_epoch()  # drop the last partial batch of an epoch
        idx = self._perm[self._pos : self._pos + self.batch_size]
        self._pos += self.batch_size
        return idx


class Trainer:
    """Trains ``model`` on the training tasks; runs the evaluation-only tasks every ``eval_every``.

    ``train`` may be called repeatedly: optimizer state, step count and batch order carry on.
    Loss points fall on multiples of ``loss_every`` and on the last step of a call that ends the
    run; the steps of an unfinished block are kept (in ``state_dict`` too) for the next call.
    """

    def __init__(
        self,
        model: nn.Module,
        tasks: list[Task],
        config: TrainConfig,
        on_step: Callable[[StepInfo], None] | None = None,
        on_eval: Callable[[int, dict], None] | None = None,
        should_stop: Callable[[], bool] | None = None,
    ) -> None:
        self.model, self.config = model, config
        self.train_tasks = [t for t in tasks if not t.eval_only]
        self.eval_tasks = [t for t in tasks if t.eval_only and t.periodic]
        if not self.train_tasks:
            raise ValueError("nothing to train: attach at least one task that is not eval-only")
        self.data = _common_train_split(self.train_tasks)
        self.order = BatchOrder(
            len(self.data), config.batch_size, config.seed, self.data.images.device
        )
        self.optimizer = _make_optimizer(model, self.train_tasks, config)
        self.on_step, self.on_eval, self.should_stop = on_step, on_eval, should_stop
        self.step = 0
        self._carry: list[list[float]] = []  # per-step losses read back but in no point yet
        # set by the stacked executor: the step's forward, backward and optimizer steps run
        # jointly with other branches' (acc/stack_step.py); takes the batch's indices and
        # returns this branch's detached losses, as ``_train_step`` does
        self.joint: Callable[[torch.Tensor], list[torch.Tensor]] | None = None

    def train(self, steps: int, end_of_run: bool = True) -> None:
        """Train ``steps`` more steps. ``end_of_run``: nothing follows this call, so its last
        step gets a loss point even off the ``loss_every`` grid; pass False for a chunk that
        more training follows (a resume point's), whose unfinished block carries on."""
        if steps < 0:
            raise ValueError(f"steps must be >= 0, got {steps}")
        if self.step == 0 and self.config.eval_every:
            self.evaluate_periodic()
        pending: list[list[torch.Tensor]] = []
        window_start, started = self.step, time.perf_counter()
        self.model.train()
        for _ in range(steps):
            pending.append(self._train_step())
            self.step += 1
            last = self.step == window_start + steps
            if len(pending) == self.config.log_every or last:
                self._report(pending, time.perf_counter() - started, end_of_run and last)
                pending, started = [], time.perf_counter()
            if self.config.eval_every and self.step % self.config.eval_every == 0:
                self.evaluate_periodic()

    def _train_step(self) -> list[torch.Tensor]:
        idx = self.order.next()
        if self.joint is not None:
            return self.joint(idx)
        return self.step_on(idx)

    def step_on(self, idx: torch.Tensor) -> list[torch.Tensor]:
        """One step on the batch ``idx`` of the training split (the step count is the
        caller's): forward, weighted losses, backward, optimizer step; detached losses."""
        batch = self.data.images[idx]
        for task in self.train_tasks:
            task.step = self.step  # schedules (KL warm-up) read the trainer's step
            task.indices = idx  # tasks with per-image targets (probes) index their own
        output = self.model(batch)
        losses = [task.compute_loss(output, batch) for task in self.train_tasks]
        total = reduce(operator.add, map(_weighted, self.train_tasks, losses))
        self.optimizer.zero_grad(set_to_none=True)
        total.backward()
        self.optimizer.step()
        return [loss.detach() for loss in losses]

    def _report(self, pending: list[list[torch.Tensor]], seconds: float, close: bool) -> None:
        """One host sync for a window of steps: check every loss, report the window means and
        the loss points the window completes (``close``: one at its last step, too)."""
        # one stack of the window's losses (not one per step: 50 kernels fewer a window)
        flat = [loss for step in pending for loss in step]
        values = torch.stack(flat).reshape(len(pending), -1).cpu()  # [steps, tasks]
        bad = (~torch.isfinite(values)).nonzero()
        if len(bad):
            row, col = bad[0].tolist()
            step = self.step - len(pending) + row + 1
            raise NonFiniteLoss(step, self.train_tasks[col].name, float(values[row, col]))
        values = values.double()
        means = values.mean(dim=0).tolist()
        points = self._loss_points(values.tolist(), close)
        if self.on_step:
            self.on_step(
                StepInfo(
                    self.step,
                    {t.name: m for t, m in zip(self.train_tasks, means)},
                    len(pending) / max(seconds, 1e-9),
                    points,
                )
            )
        if self.should_stop and self.should_stop():
            raise StopRequested(f"stop requested at step {self.step}")

    def _loss_points(self, rows: list[list[float]], close: bool) -> LossPoints:
        """The points among the steps read back so far (``rows``, the window's per-step losses,
        after the carried ones): one at each multiple of ``loss_every``, plus the last step
        if ``close``. The steps after the last point are carried to the next window."""
        rows = self._carry + rows
        first, every = self.step - len(rows) + 1, self.config.loss_every
        ends = list(range(first + (-first) % every, self.step + 1, every))
        if close and ends[-1:] != [self.step]:
            ends.append(self.step)
        columns: list[list[float]] = [[] for _ in self.train_tasks]
        start = 0
        for end in ends:
            stop = end - first + 1
            for column, values in zip(columns, zip(*rows[start:stop])):
                column.append(sum(values) / (stop - start))
            start = stop
        self._carry = rows[start:]
        return LossPoints(ends, {t.name: c for t, c in zip(self.train_tasks, columns)})

    def state_dict(self) -> dict:
        """What an exact resume needs besides the model's weights (which are the model's):
        optimizer, step, batch order, RNG, the weights of tasks that learn (probes), and the
        losses of the steps since the last loss point (so a resumed run's points are the same)."""
        state = {
            "step": self.step,
            "optimizer": self.optimizer.state_dict(),
            "order": self.order.state_dict(),
            "rng": _rng_state(self.data.images.device),
            "tasks": {t.name: t.state_dict() for t in self.train_tasks if t.parameters()},
        }
        if self._carry:
            state["loss_carry"] = torch.tensor(self._carry, dtype=torch.float64)
        return state

    def load_state_dict(self, state: dict) -> None:
        self.step = int(state["step"])
        for task in self.train_tasks:
            if task.name in state.get("tasks", {}):
                task.load_state_dict(state["tasks"][task.name])
        self.optimizer.load_state_dict(state["optimizer"])
        self.order.load_state_dict(state["order"])
        carry = state.get("loss_carry")
        self._carry = carry.tolist() if carry is not None else []
        _set_rng_state(state["rng"], self.data.images.device)

    def evaluate_periodic(self) -> dict:
        metrics = evaluate_tasks(self.model, self.eval_tasks)
        if self.on_eval and metrics:
            self.on_eval(self.step, metrics)
        return metrics


def evaluate_tasks(
    model: nn.Module, tasks: list[Task], on_task: Callable[[int, Task], None] | None = None
) -> dict:
    """Every task's metrics merged into one dict (keys are EvalMetric keys, unique per recipe).
    ``on_task(i, task)`` is told before the i-th task (from 1) is evaluated: a level-3 final
    evaluation takes minutes, and whoever watches should see which part it is in."""
    metrics: dict = {}
    with shared_test_pass(model, tasks):
        for i, task in enumerate(tasks, 1):
            if on_task:
                on_task(i, task)
            metrics.update(task.evaluate(model))
    return metrics


def _weighted(task: Task, loss: torch.Tensor) -> torch.Tensor:
    return loss if task.weight == 1.0 else task.weight * loss


def _common_train_split(tasks: list[Task]) -> Split:
    datasets = {id(t.dataset): t.dataset for t in tasks}
    if len(datasets) != 1:
        raise ValueError("all training tasks of one model must share one dataset")
    return next(iter(datasets.values())).train


def _rng_state(device: torch.device) -> dict:
    """The global RNG streams training draws from (e.g. VAE noise): CPU, and CUDA if used."""
    state = {"cpu": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _set_rng_state(state: dict, device: torch.device) -> None:
    torch.set_rng_state(state["cpu"])
    if "cuda" in state and device.type == "cuda":
        torch.cuda.set_rng_state(state["cuda"], device)


def _make_optimizer(model: nn.Module, tasks, config: TrainConfig) -> torch.optim.Optimizer:
    """One optimizer for the model and the tasks that learn with it (probes)."""
    params = [*model.parameters(), *(p for task in tasks for p in task.parameters())]
    if config.optimizer == "adam":
        return torch.optim.Adam(params, lr=config.lr)
    return torch.optim.SGD(params, lr=config.lr)

"""Recipe and RecipeContext: what an experiment does, and the operations it does it with.

A recipe's ``run(ctx)`` reads top to bottom like the plan: load data, create a model per seed,
save it as the root checkpoint, then for each condition ``with ctx.branch(...)``: fork the
root, attach gating and tasks, train, evaluate, record, save. The context does the
bookkeeping (store, events, checkpoints) so recipes stay short.
"""

from __future__ import annotations

import contextlib
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, field_validator
from torch import nn

from acc.data import Dataset, load_mnist
from acc.gradient_gating import AttachedGating, attach_competitive_gating
from acc.models import build_model
from acc.stats import Hypothesis
from acc.store import Checkpoint, Store
from acc.tasks.base import Task
from acc.trainer import StepInfo, StopRequested, TrainConfig, Trainer, evaluate_tasks

EventSink = Callable[[dict], None]


class RecipeParams(BaseModel):
    """Parameters every recipe takes. Subclasses add their own; unknown keys are errors."""

    model_config = ConfigDict(extra="forbid")

    steps: int = Field(
        25_000, ge=0, description="training steps per branch (0 = evaluate the untrained models)"
    )
    seeds: list[int] = Field(
        [42, 123, 456], min_length=1, description="one paired replicate per seed"
    )
    eval_every: int = Field(500, ge=0, description="steps between periodic evaluations (0 = off)")
    batch_size: int = Field(128, ge=1, description="images per training step")
    lr: float = Field(1e-3, gt=0, description="learning rate")
    optimizer: Literal["adam", "sgd"] = Field("adam", description="adam or sgd")

    @field_validator("seeds")
    @classmethod
    def _distinct(cls, seeds: list[int]) -> list[int]:
        if len(set(seeds)) != len(seeds):
            raise ValueError("seeds must be distinct")
        return seeds


class Recipe:
    """An experiment: conditions compared per seed, hypotheses tested over seeds."""

    name: ClassVar[str]
    description: ClassVar[str]
    Params: ClassVar[type[RecipeParams]] = RecipeParams
    conditions: ClassVar[dict[str, str]]  # condition name -> what it is
    hypotheses: ClassVar[list[Hypothesis]] = []

    def run(self, ctx: RecipeContext) -> None:
        raise NotImplementedError


@dataclass
class Branch:
    """One condition of one seed: its model, tasks, gating and trainer."""

    id: int
    condition: str
    seed: int
    model: nn.Module | None = None
    parent: Checkpoint | None = None
    tasks: list[Task] = field(default_factory=list)
    gating: AttachedGating | None = None
    trainer: Trainer | None = None

    @property
    def steps_done(self) -> int:
        return self.trainer.step if self.trainer else 0


class RecipeContext:
    def __init__(
        self,
        store: Store,
        run_id: str,
        params: RecipeParams,
        device: torch.device,
        data_dir: str | Path | None = None,
        on_event: EventSink | None = None,
        should_stop: Callable[[], bool] | None = None,
    ) -> None:
        self.store, self.run_id, self.params, self.device = store, run_id, params, device
        self.data_dir, self.should_stop = data_dir, should_stop
        self._emit = on_event or (lambda event: None)
        self._datasets: dict[tuple[str, str], Dataset] = {}
        self.current_branch: Branch | None = None

    # --- data and models ---------------------------------------------------------------------

    def log(self, message: str) -> None:
        self._emit({"type": "log", "message": message})

    def load_dataset(self, name: str = "mnist", view: str = "flat") -> Dataset:
        if name != "mnist":
            raise ValueError(f"unknown dataset {name!r}; valid: mnist")
        if (name, view) not in self._datasets:
            self._datasets[(name, view)] = load_mnist(view, self.device, self.data_dir)
        return self._datasets[(name, view)]

    def create_model(self, builder: Callable[[], nn.Module], seed: int) -> nn.Module:
        """A fresh model whose initial weights are fixed by ``seed``."""
        torch.manual_seed(seed)
        return builder().to(self.device)

    def fork(self, checkpoint: Checkpoint) -> nn.Module:
        """A new model with the checkpoint's weights: the current branch's model."""
        model = build_model(checkpoint.metadata["model"]).to(self.device)
        model.load_state_dict(self.store.load_state_dict(checkpoint.id, self.device))
        branch = self._current("fork")
        branch.model, branch.parent = model, checkpoint
        return model

    def save_checkpoint(self, model: nn.Module, tag: str, seed: int | None = None) -> Checkpoint:
        """Save ``model`` with its metadata; inside a branch, as that branch's checkpoint."""
        branch = self.current_branch
        metadata = {
            "model": model.config(),
            "recipe_params": self.params.model_dump(),
            "gating": branch.gating.describe() if branch and branch.gating else None,
            "tasks": [t.describe() for t in branch.tasks] if branch else [],
            "condition": branch.condition if branch else None,
        }
        if branch is None:
            return self.store.save_checkpoint(
                self.run_id, model, tag, step=0, metadata=metadata, seed=seed
            )
        ckpt = self.store.save_checkpoint(
            self.run_id,
            model,
            tag,
            step=branch.steps_done,
            metadata=metadata,
            seed=branch.seed,
            parent_id=branch.parent.id if branch.parent else None,
            branch_id=branch.id,
        )
        self.store.set_branch_checkpoint(branch.id, ckpt.id)
        return ckpt

    # --- branches ----------------------------------------------------------------------------

    @contextlib.contextmanager
    def branch(self, condition: str, seed: int) -> Iterator[Branch]:
        """One condition of one seed. A failure is recorded and the recipe goes on."""
        branch = Branch(self.store.start_branch(self.run_id, condition, seed), condition, seed)
        self.current_branch = branch
        torch.manual_seed(seed)  # same stochastic draws (e.g. VAE noise) for every condition
        self._emit({"type": "branch", "state": "running", "condition": condition, "seed": seed})
        status, error = "completed", None
        try:
            yield branch
        except StopRequested:
            status, error = "cancelled", "cancelled"
            raise
        except KeyboardInterrupt:
            status, error = "interrupted", "interrupted by the user"
            raise
        except Exception as exc:  # noqa: BLE001 - a failed branch must not stop the others
            status, error = "failed", f"{type(exc).__name__}: {exc}"
            self._emit({"type": "log", "message": traceback.format_exc()})
        finally:
            if branch.gating:
                branch.gating.remove()
            self.store.finish_branch(branch.id, status, branch.steps_done, error)
            self._emit(
                {
                    "type": "branch",
                    "state": status,
                    "condition": condition,
                    "seed": seed,
                    "error": error,
                    "steps": branch.steps_done,
                }
            )
            self.current_branch = None

    def attach_gating(
        self, model: nn.Module, temperature: float, layer_configs: dict[str, dict]
    ) -> AttachedGating:
        gating = attach_competitive_gating(model, temperature, layer_configs)
        self._current("attach_gating").gating = gating
        return gating

    def attach_task(self, task: Task) -> Task:
        self._current("attach_task").tasks.append(task)
        return task

    def train(self, steps: int) -> None:
        branch = self._current("train")
        if branch.trainer is None:
            branch.trainer = self._make_trainer(branch)
        self._emit(
            {
                "type": "train",
                "condition": branch.condition,
                "seed": branch.seed,
                "from_step": branch.trainer.step,
                "to_step": branch.trainer.step + steps,
            }
        )
        started = time.perf_counter()
        branch.trainer.train(steps)
        self.log(
            f"{branch.condition} seed {branch.seed}: {steps} steps in "
            f"{time.perf_counter() - started:.1f}s"
        )

    def evaluate(self) -> dict:
        branch = self._current("evaluate")
        return evaluate_tasks(branch.model, branch.tasks)

    def record_results(self, metrics: dict) -> None:
        branch = self._current("record_results")
        self.store.record_metrics(branch.id, metrics)
        self._emit(
            {
                "type": "results",
                "condition": branch.condition,
                "seed": branch.seed,
                "metrics": metrics,
            }
        )

    # --- helpers -----------------------------------------------------------------------------

    def _current(self, operation: str) -> Branch:
        if self.current_branch is None:
            raise RuntimeError(f"ctx.{operation}() must be called inside `with ctx.branch(...)`")
        return self.current_branch

    def _make_trainer(self, branch: Branch) -> Trainer:
        if branch.model is None:
            raise RuntimeError("ctx.train(): no model in this branch; call ctx.fork() first")
        p = self.params
        config = TrainConfig(
            batch_size=p.batch_size,
            lr=p.lr,
            optimizer=p.optimizer,
            seed=branch.seed,
            eval_every=p.eval_every,
        )

        def on_step(info: StepInfo) -> None:
            self.store.add_losses(branch.id, info.step, info.losses)
            self._emit(
                {
                    "type": "step",
                    "condition": branch.condition,
                    "seed": branch.seed,
                    "step": info.step,
                    "losses": info.losses,
                    "steps_per_second": info.steps_per_second,
                }
            )

        def on_eval(step: int, metrics: dict) -> None:
            self.store.add_eval(branch.id, step, metrics)
            self._emit(
                {
                    "type": "eval",
                    "condition": branch.condition,
                    "seed": branch.seed,
                    "step": step,
                    "metrics": metrics,
                }
            )

        return Trainer(
            branch.model,
            branch.tasks,
            config,
            on_step=on_step,
            on_eval=on_eval,
            should_stop=self.should_stop,
        )

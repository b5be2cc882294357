"""The checkpoint inspector: rebuild any stored model and evaluate any registered task on it.

Everything is generic over the registries: the model comes from the checkpoint's recorded
``config()`` through ``build_model``, the task class from ``task_registry()``, and a task's
parameters are read from its constructor signature, so a task added to ``acc/tasks/`` shows
up in the dashboard without touching the server. Datasets are loaded once per view.
"""

from __future__ import annotations

import inspect
import re
import sys
import threading
import types
import typing
from typing import Any

import torch
from pydantic import ConfigDict, ValidationError, create_model
from torch import nn

from acc.checkpoints import Checkpoint, CheckpointDamaged
from acc.data import Dataset, load_mnist
from acc.gradient_gating import layer_names
from acc.models import LinearAutoencoder, build_model
from acc.store import Store
from acc.tasks import LayerTask, task_registry

SIMPLE_TYPES = (str, int, float, bool)
SKIPPED = ("self", "name", "dataset")


class InspectError(ValueError):
    """Input the inspector cannot act on: unknown task, bad parameters, task/model mismatch."""


def load_model(store: Store, ckpt_id: str) -> tuple[nn.Module, Checkpoint]:
    """The checkpoint's model with its weights, on the CPU, in eval mode."""
    ckpt = store.checkpoints.get(ckpt_id)
    model = build_model(ckpt.metadata["model"])
    try:
        model.load_state_dict(store.checkpoints.load_state_dict(ckpt_id, "cpu"))
    except RuntimeError as exc:  # the weights do not fit the model the metadata describes
        first = str(exc).strip().splitlines()[0]
        raise CheckpointDamaged(
            f"checkpoint {ckpt_id}: its file {ckpt.path} does not hold the weights of the "
            f"{ckpt.metadata['model'].get('class', 'model')} its metadata describes ({first})"
        ) from None
    return model.eval(), ckpt


def dataset_view(model: nn.Module) -> str:
    """The MNIST view a model takes: flat vectors for the linear AE, 32x32 for conv models."""
    return getattr(model, "input_view", None) or (
        "flat" if isinstance(model, LinearAutoencoder) else "32"
    )


_LOADED: dict[tuple[str, str | None], Dataset] = {}
_LOADING = threading.Lock()


class DatasetCache:
    """MNIST per view, loaded on first use and kept for the process (evaluations must not
    reload 200 MB each time; every app in the process shares them)."""

    def __init__(self, data_dir: str | None = None) -> None:
        self.data_dir = data_dir

    def get(self, view: str) -> Dataset:
        with _LOADING:
            if (view, self.data_dir) not in _LOADED:
                _LOADED[(view, self.data_dir)] = load_mnist(view, "cpu", self.data_dir)
            return _LOADED[(view, self.data_dir)]


def describe_checkpoint(store: Store, ckpt_id: str) -> dict:
    model, ckpt = load_model(store, ckpt_id)
    modules = dict(model.named_modules())
    weighted = [
        name
        for name in layer_names(model)
        if getattr(getattr(modules[name], "weight", None), "dim", lambda: 0)() >= 2
    ]
    return {
        "id": ckpt.id,
        "metadata": ckpt.metadata,
        "layers": layer_names(model),
        "weight_layers": weighted,
        "view": dataset_view(model),
        "parameters": int(sum(p.numel() for p in model.parameters())),
    }


# --- tasks ------------------------------------------------------------------------------------


def task_parameters(cls: type) -> dict[str, tuple[Any, Any]]:
    """Constructor parameters a request may set: name -> (type, default or ...)."""
    hints = typing.get_type_hints(cls.__init__)
    params = {}
    for name, param in inspect.signature(cls.__init__).parameters.items():
        if name in SKIPPED or param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            continue
        annotation = hints.get(name, Any)
        if not _is_simple(annotation):
            continue
        default = ... if param.default is inspect.Parameter.empty else param.default
        params[name] = (annotation, default)
    return params


def _is_simple(annotation: Any) -> bool:
    if annotation in SIMPLE_TYPES:
        return True
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        return all(a in SIMPLE_TYPES or a is type(None) for a in typing.get_args(annotation))
    return False


def task_catalog() -> list[dict]:
    """Every registered task with its settable parameters, for the inspector's form."""
    registry = task_registry()
    catalog = []
    for name in registry.names():
        cls = registry.get(name)
        params = [
            {
                "name": p,
                "type": _type_name(t),
                "default": None if d is ... else d,
                "required": d is ...,
            }
            for p, (t, d) in task_parameters(cls).items()
        ]
        catalog.append(
            {
                "name": name,
                "description": task_description(cls),
                "layer_task": issubclass(cls, LayerTask),
                "eval_only": bool(getattr(cls, "eval_only", False)),
                "params": params,
            }
        )
    return catalog


def task_description(cls: type) -> str:
    """A task as the inspector describes it, in plain text: its module's one-line summary
    ("DeadUnitsTask: channels of a layer that are zero on every test image.") and its own
    docstring's first paragraph, without reStructuredText markup (``x``, :class:`X`). A
    docstring inherited from a base class ("A measurement: no training signal") says
    nothing about the task, so only the class's own is read."""
    module = (inspect.getdoc(sys.modules[cls.__module__]) or "").split("\n\n")[0]
    summary = module.partition(": ")[2] if module.startswith(f"{cls.__name__}:") else module
    own = inspect.cleandoc(cls.__dict__.get("__doc__") or "").split("\n\n")[0]
    parts = [summary[:1].upper() + summary[1:], own]
    return plain_text(" ".join(p for p in parts if p))


def plain_text(text: str) -> str:
    """reStructuredText roles and literals as their bare text, on one line."""
    text = re.sub(r":[\w:]+:`~?([^`]*)`", r"\1", text)  # :class:`X`, :func:`~a.b`
    text = re.sub(r"``([^`]*)``|`([^`]*)`", lambda m: m.group(1) or m.group(2) or "", text)
    return " ".join(text.split())


def _type_name(annotation: Any) -> str:
    if annotation in SIMPLE_TYPES:
        return annotation.__name__
    names = [a.__name__ for a in typing.get_args(annotation) if a is not type(None)]
    return " | ".join(names) + " | null"


def build_task(task_type: str, params: dict, dataset: Dataset):
    """Instantiate a registered task from request parameters, validated against its signature."""
    registry = task_registry()
    if task_type not in registry.items:
        raise InspectError(
            f"unknown task {task_type!r}; known tasks: {', '.join(registry.names())}"
        )
    cls = registry.get(task_type)
    fields = task_parameters(cls)
    model_cls = create_model(
        f"{task_type}Params", __config__=ConfigDict(extra="forbid", strict=True), **fields
    )
    try:
        validated = model_cls(**params).model_dump()
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'params'}: {e['msg']}" for e in exc.errors()
        )
        raise InspectError(f"invalid parameters for {task_type}: {problems}") from None
    try:
        return cls(task_type, dataset, **validated)
    except (ValueError, TypeError) as exc:
        raise InspectError(f"{task_type}: {exc}") from None


def evaluate_checkpoint(
    store: Store, ckpt_id: str, task_type: str, params: dict, datasets: DatasetCache
) -> dict:
    """Metrics of one task on one checkpoint, on the held-out test split."""
    model, task = prepare_evaluation(store, ckpt_id, task_type, params, datasets)
    return run_evaluation(model, task, task_type)


def prepare_evaluation(
    store: Store, ckpt_id: str, task_type: str, params: dict, datasets: DatasetCache
) -> tuple[nn.Module, object]:
    """The checkpoint's model and the task, checked against each other: every input error is
    found here, before an evaluation starts (StoreError, CheckpointError, InspectError)."""
    model, _ = load_model(store, ckpt_id)
    task = build_task(task_type, params, datasets.get(dataset_view(model)))
    layer = getattr(task, "layer_name", None)
    if layer is not None and layer not in layer_names(model):
        raise InspectError(
            f"unknown layer {layer!r}; this model's layers: {', '.join(layer_names(model))}"
        )
    return model, task


def run_evaluation(model: nn.Module, task, task_type: str) -> dict:
    try:
        with torch.no_grad():
            return task.evaluate(model)
    except (ValueError, RuntimeError, TypeError, KeyError) as exc:
        raise InspectError(f"{task_type} cannot evaluate this model: {exc}") from None

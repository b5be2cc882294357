"""A branch's whole training state as one safetensors blob: the resume point.

Model weights, optimizer state, trainer step, batch order and RNG states are nested dicts of
tensors and plain values. ``pack`` stores every tensor under a path-like name and the rest
as a JSON skeleton in the file's header (dict keys keep their type: the optimizer's state is
keyed by int); ``unpack`` rebuilds the same structure. Nothing is pickled.

Restored tensors own their memory, allocated by torch as the uninterrupted run's were, never
views into the blob: a view's alignment follows the Python allocator's history, and some CPU
kernels (MKL's, outside its reproducible mode) round differently on unaligned data, so an
optimizer state left in the blob made a resumed branch drift from the uninterrupted one.
The thread count the state was made with is recorded beside it (``threads_of``).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from acc.checkpoints import bytes_to_tensors, metadata_of, tensors_to_bytes
from acc.gradient_gating import AttachedGating
from acc.trainer import Trainer

FORMAT = "acc-training-state-1"


def pack(model: nn.Module, trainer: Trainer, gating: AttachedGating | None = None) -> bytes:
    """The state a branch needs to go on exactly from ``trainer.step`` (with the gates'
    running statistics, which are reported at the next evaluation)."""
    state = {"model": model.state_dict(), "trainer": trainer.state_dict()}
    if gating is not None:
        state["gating"] = gating.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    skeleton = _encode(state, "", tensors)
    metadata = {"format": FORMAT, "state": skeleton, "threads": torch.get_num_threads()}
    return tensors_to_bytes(tensors, metadata)


def unpack(data: bytes) -> dict:
    """``{"model": state_dict, "trainer": trainer state}`` as ``pack`` received them."""
    tensors, metadata = bytes_to_tensors(data)
    if metadata.get("format") != FORMAT:
        raise ValueError(f"not a resume point (format {metadata.get('format')!r}, want {FORMAT})")
    owned = {path: tensor.clone() for path, tensor in tensors.items()}  # fresh, aligned storage
    return _decode(metadata["state"], owned)


def threads_of(data: bytes) -> int | None:
    """The torch intra-op thread count the state was made with (None: not recorded)."""
    return metadata_of(data).get("threads")


def restore(
    data: bytes, model: nn.Module, trainer: Trainer, gating: AttachedGating | None = None
) -> int:
    """Load a packed state into a freshly built model, trainer (and gates); returns the step."""
    state = unpack(data)
    model.load_state_dict(state["model"])
    trainer.load_state_dict(state["trainer"])
    if gating is not None and "gating" in state:
        gating.load_state_dict(state["gating"])
    return trainer.step


def _encode(value: Any, path: str, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(value, torch.Tensor):
        tensors[path] = value.detach().clone()  # own storage: safetensors refuses shared ones
        return {"$tensor": path}
    if isinstance(value, dict):
        return {"$dict": [[k, _encode(v, f"{path}/{k}", tensors)] for k, v in value.items()]}
    if isinstance(value, (list, tuple)):
        items = [_encode(v, f"{path}/{i}", tensors) for i, v in enumerate(value)]
        return {"$tuple": items} if isinstance(value, tuple) else items
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(f"cannot store {type(value).__name__} at {path!r} in a resume point")


def _decode(value: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(value, list):
        return [_decode(v, tensors) for v in value]
    if isinstance(value, dict):
        if "$tensor" in value:
            return tensors[value["$tensor"]]
        if "$tuple" in value:
            return tuple(_decode(v, tensors) for v in value["$tuple"])
        return {k: _decode(v, tensors) for k, v in value["$dict"]}
    return value

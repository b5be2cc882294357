"""One training step for a stack of branches: one forward and one backward for all of them.

Members share a program (same architecture, tasks and batch size; acc/stack_plan.py decides),
not their numbers: each keeps its own model, optimizer (its own lr, Adam state), batch order,
gate settings and gate statistics. The step:

1. stacks each parameter over members, ``P[name]`` [K, ...], and makes each member's parameters
   views of its slice (shared storage), so that each member's own optimizer updates ``P`` in
   place and every member-side reader (resume points, evaluation) sees current weights;
2. runs ``torch.func.vmap`` over (parameters, batch, gate settings) of
   ``torch.func.functional_call`` on one base module (a copy of a member's without hooks),
   with the stacked gate (acc/stack_gate.py) on the gated layers, and each member's training
   losses from the tasks' own ``compute_loss``;
3. backpropagates the sum of the members' totals (each member's gradient is that of its own
   total) and steps the members' optimizers: plain Adam as one stacked update
   (acc/stack_adam.py), any other each member's own on its slice of ``P.grad``;
4. feeds each member's gate windows with its own masks, as the plain path's hook does.
"""

from __future__ import annotations

import copy
import operator
from collections import OrderedDict
from dataclasses import dataclass
from functools import reduce

import torch
from torch import nn
from torch.func import functional_call, vmap

from acc.gradient_gating import AttachedGating
from acc.stack_adam import StackedAdam, stackable
from acc.stack_gate import GateFunction, LayerGate, layer_gate
from acc.trainer import Trainer


@dataclass
class Member:
    """A branch in a stack: its key orders the members (the plan's branch id)."""

    key: int
    label: str
    model: nn.Module
    trainer: Trainer
    gating: AttachedGating | None

    def parameters(self) -> dict[str, nn.Parameter]:
        return dict(self.model.named_parameters())

    def release(self) -> None:
        """Give the member's parameters and optimizer state storage of their own again (it
        leaves the stack, or the stack is rebuilt)."""
        for param in self.model.parameters():
            param.data = param.data.clone()
        for state in self.trainer.optimizer.state.values():
            for key, value in state.items():
                if isinstance(value, torch.Tensor):
                    state[key] = value.clone()


class JointStep:
    """The step of one fixed set of members (rebuilt when one joins or leaves)."""

    def __init__(self, members: list[Member]) -> None:
        self.members = sorted(members, key=lambda m: m.key)
        first = self.members[0]
        self.base = bare_copy(first.model)
        self.tasks = first.trainer.train_tasks
        self.images = first.trainer.data.images
        self.device = self.images.device
        self.params = _stack_parameters(self.members)
        optimizers = [m.trainer.optimizer for m in self.members]
        self.adam = None  # one update for all members where their optimizers are plain Adam
        if stackable(optimizers, [list(m.model.parameters()) for m in self.members]):
            self.adam = StackedAdam(optimizers, [m.parameters() for m in self.members], self.params)
        shapes = _output_shapes(self.base, self.images[:1], self._gated_layers())
        batch_size = first.trainer.config.batch_size
        self.gates = {
            name: layer_gate(
                [_config(m, name) for m in self.members],
                [_shuffle(m, name) for m in self.members],
                shapes[name],
                batch_size,
                self.device,
            )
            for name in shapes
        }
        self._current: dict[str, dict] = {}
        self._masks: dict[str, torch.Tensor] = {}
        modules = dict(self.base.named_modules())
        for name in self.gates:
            modules[name].register_forward_hook(self._gate_hook(name))
        self._vmapped = vmap(self._member_step, randomness="error")

    def _gated_layers(self) -> list[str]:
        names = {name for m in self.members if m.gating for name in m.gating.gates}
        return sorted(names)

    def _gate_hook(self, name: str):
        gate: LayerGate = self.gates[name]

        def hook(module: nn.Module, inputs, output: torch.Tensor):
            # (inside vmap, ``requires_grad`` of a member's output reads False: not asked)
            values = self._current[name]
            p = gate.probabilities(output.detach(), values)
            self._masks[name] = p
            return GateFunction.apply(output, gate.scale(p, values, output.dim()))

        return hook

    def _member_step(self, params: dict, batch: torch.Tensor, gate_values: dict):
        """One member's forward and losses (inside vmap: no member dimension here)."""
        self._current, self._masks = gate_values, {}
        output = functional_call(self.base, params, (batch,))
        losses = [task.compute_loss(output, batch) for task in self.tasks]
        total = reduce(operator.add, map(_weighted, self.tasks, losses))
        return total, losses, dict(self._masks)

    def step(self, indices: dict[int, torch.Tensor]) -> dict[int, list[torch.Tensor]]:
        """Train every member one step on its batch ``indices[key]``; its detached losses."""
        if all(m.trainer.data.images is self.images for m in self.members):
            batch = self.images[torch.stack([indices[m.key] for m in self.members])]  # [K, B, ...]
        else:  # members with datasets of their own (same shapes: the plan checked)
            batch = torch.stack([m.trainer.data.images[indices[m.key]] for m in self.members])
        gate_values = {name: gate.inputs(self.device) for name, gate in self.gates.items()}
        total, losses, masks = self._vmapped(self.params, batch, gate_values)
        total.sum().backward()
        if self.adam is not None:
            self.adam.step()
        else:
            self._member_optimizers()
        for p in self.params.values():
            p.grad = None
        out = {}
        for k, member in enumerate(self.members):
            self._record(member, k, masks)
            out[member.key] = [loss[k].detach() for loss in losses]
        return out

    def _member_optimizers(self) -> None:
        """Each member's own optimizer steps on its slice of the stacked gradients."""
        for k, member in enumerate(self.members):
            named = member.parameters()
            for name, p in self.params.items():
                named[name].grad = p.grad[k]
            member.trainer.optimizer.step()
            for param in named.values():
                param.grad = None

    def _record(self, member: Member, k: int, masks: dict[str, torch.Tensor]) -> None:
        """The member's gate statistics, from its own masks (as its plain hook would)."""
        if member.gating is None:
            return
        for name, gate in member.gating.gates.items():
            mask = masks[name][k]
            gate.window.add(mask)
            gate._channels = mask.shape[-1]  # what the plain hook sets on its first step


def bare_copy(model: nn.Module) -> nn.Module:
    """A copy of ``model`` without its hooks (the member's own gate would register a tensor
    hook inside vmap, which is silently not applied): the stack's base module."""
    saved = {module: module._forward_hooks for module in model.modules()}
    try:
        for module in model.modules():
            module._forward_hooks = OrderedDict()
        return copy.deepcopy(model)
    finally:
        for module, hooks in saved.items():
            module._forward_hooks = hooks


def _stack_parameters(members: list[Member]) -> dict[str, torch.Tensor]:
    """``P[name]`` [K, ...] (a leaf that requires grad), each member's parameter a view of
    its slice: the member's optimizer then updates P in place."""
    named = [m.parameters() for m in members]
    stacked = {}
    for name in named[0]:
        values = torch.stack([params[name].detach() for params in named])
        stacked[name] = values.requires_grad_(True)
        for k, params in enumerate(named):
            params[name].data = values.detach()[k]
    return stacked


def _output_shapes(base: nn.Module, example: torch.Tensor, layers: list[str]) -> dict:
    """Each gated layer's output shape for one image (the channels, the spatial dims)."""
    shapes: dict[str, tuple[int, ...]] = {}
    modules = dict(base.named_modules())
    handles = [
        modules[name].register_forward_hook(
            lambda module, inputs, output, name=name: shapes.__setitem__(
                name, tuple(output.shape[1:])
            )
        )
        for name in layers
    ]
    try:
        with torch.no_grad():
            base(example)
    finally:
        for handle in handles:
            handle.remove()
    return shapes


def _config(member: Member, layer: str):
    gate = member.gating.gates.get(layer) if member.gating else None
    return gate.config if gate is not None else None


def _shuffle(member: Member, layer: str):
    gate = member.gating.gates.get(layer) if member.gating else None
    return gate.shuffle if gate is not None else None


def _weighted(task, loss: torch.Tensor) -> torch.Tensor:
    return loss if task.weight == 1.0 else task.weight * loss

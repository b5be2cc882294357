"""Which branches can train as one stack (``--executor stacked``), and why others cannot.

Branches stack when they run the same program: the same recipe, model (class and config,
overrides), device, data, batch size and training losses, and the same gate mode on each
gated layer. Their numbers may differ: seeds, conditions, sweep cells (gate strength,
temperature, the shuffled control), learning rate and optimizer, steps, resume points.

A branch runs alone (a stack of one: the plain path) when its model draws random numbers in
training (the VAE levels' noise: drawn per member from one global generator, it would differ
from the plain path's and break the paired design), holds buffers, or trains a task that is
not a plain loss of the batch (a probe's weights, labels or factors, a KL warm-up: they read
the step or the batch's indices). Splits are said once, never refused.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import torch

from acc.branch import BranchSpec, _condition, _dataset
from acc.recipes import recipe_registry
from acc.tasks.reconstruction import ReconstructionTask

STACKABLE_LOSSES = (ReconstructionTask,)  # losses of the batch alone, nothing per step


@dataclass
class StackPlan:
    stacks: list[list[BranchSpec]] = field(default_factory=list)  # more than one member each
    alone: list[tuple[BranchSpec, str]] = field(default_factory=list)  # and why
    notes: list[str] = field(default_factory=list)  # stacks split for a reason

    def summary(self) -> str:
        """What the person watching is told, once."""
        sizes = " + ".join(str(len(stack)) for stack in self.stacks)
        count = f"{len(self.stacks)} stack{'s' if len(self.stacks) != 1 else ''}"
        parts = [f"{count} ({sizes} branches)" if self.stacks else "no stacks"]
        reasons: dict[str, list[str]] = {}
        for spec, why in self.alone:
            reasons.setdefault(why, []).append(spec.label)
        for why, labels in reasons.items():
            parts.append(f"alone ({why}): {', '.join(labels)}")
        parts += self.notes
        return "stacked executor: " + "; ".join(parts)


def plan_stacks(specs: list[BranchSpec], stack_size: int | None = None) -> StackPlan:
    """Group ``specs`` into stacks of at most ``stack_size`` (None: as large as they come),
    in the order the specs come; a group of one runs alone."""
    groups: dict[str, list[tuple[dict, list[BranchSpec]]]] = {}
    plan = StackPlan()
    for spec in specs:
        key, modes = program_key(spec)
        if key is None:
            plan.alone.append((spec, modes))
            continue
        _place(groups.setdefault(key, []), spec, modes)
    for parts in groups.values():
        if len(parts) > 1:
            plan.notes.append(
                "split by gate mode (batch vs sample on one layer): "
                + " | ".join(", ".join(s.label for s in part) for _, part in parts)
            )
    for members in (part for parts in groups.values() for _, part in parts):
        size = stack_size or len(members)
        for start in range(0, len(members), size):
            chunk = members[start : start + size]
            if len(chunk) > 1:
                plan.stacks.append(chunk)
            else:
                plan.alone.append((chunk[0], "no other branch shares its program"))
    return plan


def _place(parts: list[tuple[dict, list[BranchSpec]]], spec: BranchSpec, modes: dict) -> None:
    """Into the first part whose gated layers' modes agree with the branch's (an ungated
    branch agrees with any), else a part of its own."""
    for known, members in parts:
        if all(known.get(layer, mode) == mode for layer, mode in modes.items()):
            known.update(modes)
            members.append(spec)
            return
    parts.append((dict(modes), [spec]))


def program_key(spec: BranchSpec) -> tuple[str | None, dict | str]:
    """What must be equal for branches to share a program (as text) and the modes of the
    branch's gated layers; or None and why it cannot share one."""
    recipe = recipe_registry().get(spec.recipe)()
    p = recipe.Params(**spec.params)
    condition = _condition(recipe, p, spec.recipe_condition or spec.condition)
    data = _dataset(recipe.data_view, spec.device, spec.data_dir)
    with torch.random.fork_rng(devices=[]):
        model = recipe.build_model(p, **condition.model_overrides)
        if list(model.buffers()):
            return None, "its model holds buffers"
        if _draws_random_numbers(model, data.train.images[:2].cpu()):
            return None, "its model draws random numbers in training (per-branch noise)"
    tasks = [t for t in recipe.tasks(p, data) if not t.eval_only]
    odd = [t.name for t in tasks if not isinstance(t, STACKABLE_LOSSES) or t.parameters()]
    if odd:
        return None, f"its training task(s) {', '.join(odd)} read more than the batch"
    gates = condition.gating.layers if condition.gating else {}
    modes = {layer: options.get("mode", "batch") for layer, options in gates.items()}
    key = {
        "recipe": spec.recipe,
        "device": spec.device,
        "data": [recipe.data_view, spec.data_dir, spec.factors is not None],
        "model": model.config(),
        "overrides": condition.model_overrides,
        "batch_size": p.batch_size,
        "tasks": [t.describe() for t in tasks],
        "shapes": [[n, list(t.shape)] for n, t in model.named_parameters()],
    }
    return json.dumps(key, sort_keys=True, default=str), modes


def _draws_random_numbers(model: torch.nn.Module, example: torch.Tensor) -> bool:
    """Whether a training-mode forward moves the global RNG (noise, dropout)."""
    before = torch.get_rng_state()
    model.train()
    with torch.no_grad():
        model(example)
    return not torch.equal(before, torch.get_rng_state())

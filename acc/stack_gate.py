"""The competitive gradient gate for branches trained as one stack (``--executor stacked``).

The formula is DESIGN.md's, member by member:

    scale = (1 - gate_strength) + gate_strength * C * softmax(mean |a| / temperature)

Why not acc/gradient_gating.py's gate: it registers a tensor hook on the layer's output, and a
tensor hook registered inside ``torch.func.vmap`` is silently not applied (measured: gated
gradients came out equal to ungated ones). Here the layer's forward hook returns
``GateFunction.apply(output, scale)``, an autograd Function whose backward multiplies by the
scale: it acts the same inside and outside vmap. Each member's settings (strength, 1 / T, which
entropy target, its shuffled channel order) come in as vmapped tensors, so members with
different gates (a sweep's cells, the standard condition at strength 0) share one program.

Differences from the plain path, by design: an entropy target ("entropy:H") is met with the
device search (``probabilities_at_entropy_grid``: fixed work, no host sync, vmappable; the
entropy is within 0.004 of the target) where the plain path on the CPU uses Newton's method
(within 1e-4). Fixed temperatures, strengths and the shuffled control compute the same
numbers as the plain path.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from acc.gate_entropy import probabilities_at_entropy_grid
from acc.gradient_gating import GateConfig, ShuffleDraws


class GateFunction(torch.autograd.Function):
    """Identity forward; backward multiplies the output's gradient by ``scale``."""

    generate_vmap_rule = True

    @staticmethod
    def forward(output: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        return output.view_as(output)

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:
        ctx.save_for_backward(inputs[1])

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (scale,) = ctx.saved_tensors
        return grad * scale, None


@dataclass
class LayerGate:
    """One gated layer of a stack: what its members share (mode, the distinct entropy targets,
    the channel count) and their settings as tensors with a leading member dimension."""

    mode: str  # "batch" or "sample": the same for every gated member of the layer
    channels: int
    rows: int  # rows of a scale: 1 (mode batch) or the batch size (mode sample)
    fixed: bool  # some member has a fixed temperature (or no gate): candidate 0 is its softmax
    targets: tuple[float, ...]  # the distinct entropy targets, candidates after the fixed one
    gain: torch.Tensor  # [K] C * gate_strength (0: not gated at this layer)
    offset: torch.Tensor  # [K] 1 - gate_strength
    inverse: torch.Tensor  # [K] 1 / (count * T) of the plain path (fixed temperatures)
    choice: torch.Tensor  # [K, candidates] one-hot: which candidate each member's mask is
    shuffled: list[ShuffleDraws | None]  # each member's draws (the shuffled control) or None

    @property
    def any_shuffled(self) -> bool:
        return any(draws is not None for draws in self.shuffled)

    def inputs(self, device: torch.device) -> dict[str, torch.Tensor]:
        """This step's vmapped inputs of the layer: the settings and, with the shuffled
        control, each member's channel order (drawn here, outside vmap, from its own
        generator exactly as the plain path draws it; the others keep their order)."""
        values = {
            "gain": self.gain,
            "offset": self.offset,
            "inverse": self.inverse,
            "choice": self.choice,
        }
        if self.any_shuffled:
            identity = torch.arange(self.channels, device=device, dtype=torch.float32)
            identity = identity.expand(self.rows, self.channels)
            orders = [
                identity if draws is None else draws.permute_channels(identity)
                for draws in self.shuffled
            ]
            values["order"] = torch.stack(orders).long()  # [K, R, C]
        return values

    def probabilities(self, a: torch.Tensor, values: dict) -> torch.Tensor:
        """One member's mask (inside vmap): [C] (mode batch) or [B, C] (mode sample)."""
        spatial = tuple(range(2, a.dim()))
        dims = (0, *spatial) if self.mode == "batch" else spatial
        total = torch.linalg.vector_norm(a, ord=1, dim=dims) if dims else a.abs()
        candidates = []
        if self.fixed:  # the plain path's fixed-temperature softmax, same kernels
            candidates.append(torch.softmax(total * values["inverse"], dim=-1))
        candidates += [probabilities_at_entropy_grid(total, target) for target in self.targets]
        if len(candidates) == 1:
            return candidates[0]
        choice = values["choice"].reshape(-1, *([1] * total.dim()))
        return (torch.stack(candidates) * choice).sum(dim=0)  # exact: one weight 1, others 0

    def scale(self, p: torch.Tensor, values: dict, dims: int) -> torch.Tensor:
        """(1 - s) + s * C * p, shaped [1 or B, C, 1, ...] and shuffled where asked."""
        # C * s and 1 - s come in rounded from Python floats, as the plain path's in-place
        # multiply and add take them: the same float32 numbers
        scale = p * values["gain"] + values["offset"]
        if self.mode == "batch":
            scale = scale.unsqueeze(0)  # [1, C]
        if "order" in values:
            scale = scale.gather(-1, values["order"])
        return scale.reshape(*scale.shape, *([1] * (dims - 2)))


def layer_gate(
    configs: list[GateConfig | None],
    shuffles: list[ShuffleDraws | None],
    example_shape: tuple[int, ...],
    batch_size: int,
    device: torch.device,
) -> LayerGate:
    """The stacked gate of one layer from its members' configs (None: no gate there).
    ``example_shape`` is the layer's output for one image: [C, ...spatial]."""
    gated = [c for c in configs if c is not None]
    modes = {c.mode for c in gated}
    if len(modes) > 1:
        raise ValueError(f"one stack cannot mix gate modes on a layer, got {sorted(modes)}")
    mode = modes.pop() if modes else "batch"
    channels, spatial = example_shape[0], math.prod(example_shape[1:])
    count = batch_size * spatial if mode == "batch" else spatial
    targets = tuple(sorted({c.target_entropy for c in gated if c.target_entropy is not None}))
    fixed = any(c is None or c.target_entropy is None for c in configs)
    strength, inverse, choice = [], [], []
    for config in configs:
        strength.append(config.gate_strength if config is not None else 0.0)  # Python floats
        if config is None or config.target_entropy is not None:
            inverse.append(1.0)  # unused: the member's candidate is a target's (or s = 0)
        else:  # as gate_probabilities computes it: in Python floats, then one multiply
            inverse.append(1.0 / (count * config.temperature))
        index = 0
        if config is not None and config.target_entropy is not None:
            index = targets.index(config.target_entropy) + int(fixed)
        choice.append([float(i == index) for i in range(int(fixed) + len(targets))])
    return LayerGate(
        mode=mode,
        channels=channels,
        rows=1 if mode == "batch" else batch_size,
        fixed=fixed,
        targets=targets,
        gain=torch.tensor([channels * s for s in strength], dtype=torch.float32, device=device),
        offset=torch.tensor([1.0 - s for s in strength], dtype=torch.float32, device=device),
        inverse=torch.tensor(inverse, dtype=torch.float32, device=device),
        choice=torch.tensor(choice, dtype=torch.float32, device=device),
        shuffled=shuffles,
    )

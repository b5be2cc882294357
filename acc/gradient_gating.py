"""Competitive gradient gating (CGG): scale each channel's gradient by how strongly it fired.

A forward hook on a module registers a tensor hook on the module's output ``a``
([B, C] or [B, C, H, W]); in backward the hook rescales ``grad_a`` per channel:

    strength[c] = mean |a[:, c, ...]|          (mode "batch"; mode "sample": per image)
    mask        = C * softmax(strength / temperature)   over channels, mean 1
    scale       = (1 - gate_strength) + gate_strength * mask
    grad_a     <- grad_a * scale                (broadcast over the other dimensions)

``temperature`` is a number > 0, or ``"entropy:H"`` (0 < H < 1): then every step finds the T
at which the mask's normalised entropy is H (acc/gate_entropy.py), so its selectivity is set
whatever the scale of the layer's activations. The control ``"shuffled"`` permutes the scale's
channels at random every step: the same distribution of gradient scales, unrelated to which
channel fired.

Nothing else changes: the loss, the architecture and the Trainer never know the hooks exist.
The gates also keep their own statistics (how far from uniform the mask is), on the device.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import asdict, dataclass
from typing import Literal

import torch
from torch import nn

from acc.gate_entropy import WarmStart, probabilities_at_entropy

MODES = ("batch", "sample")
CONTROLS = ("shuffled",)
ENTROPY_PREFIX = "entropy:"


class GatingError(ValueError):
    """A gating configuration that cannot be applied."""


def parse_temperature(value) -> float | str:
    """A fixed temperature (a finite number > 0, also given as text) as a float, or a target
    entropy ``"entropy:H"`` (0 < H < 1) in one spelling; anything else is a GatingError."""
    valid = f"a number > 0 or {ENTROPY_PREFIX}H with 0 < H < 1 (e.g. {ENTROPY_PREFIX}0.5)"
    if isinstance(value, str) and value.strip().lower().startswith(ENTROPY_PREFIX):
        try:
            target = float(value.strip()[len(ENTROPY_PREFIX) :])
        except ValueError:
            raise GatingError(f"temperature must be {valid}, got {value!r}") from None
        if not 0.0 < target < 1.0:  # also refuses NaN
            raise GatingError(f"an entropy target must be in (0, 1), got {value!r}")
        return f"{ENTROPY_PREFIX}{target!r}"
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise GatingError(f"temperature must be {valid}, got {value!r}")
    try:
        t = float(value)
    except ValueError:
        raise GatingError(f"temperature must be {valid}, got {value!r}") from None
    if not math.isfinite(t) or t <= 0:
        raise GatingError(f"temperature must be {valid}, got {value!r}")
    return t


def target_entropy(temperature: float | str) -> float | None:
    """H of ``"entropy:H"``; None for a fixed temperature."""
    if isinstance(temperature, str) and temperature.startswith(ENTROPY_PREFIX):
        return float(temperature[len(ENTROPY_PREFIX) :])
    return None


@dataclass(frozen=True)
class GateConfig:
    gate_strength: float = 1.0
    temperature: float | str = 1.0  # a number > 0, or "entropy:H" (see target_entropy)
    mode: Literal["batch", "sample"] = "batch"
    control: Literal["shuffled"] | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "temperature", parse_temperature(self.temperature))
        s = self.gate_strength
        if isinstance(s, bool) or not isinstance(s, (int, float)) or not 0.0 <= s <= 1.0:
            raise GatingError(f"gate_strength must be in [0, 1], got {s!r}")
        if self.mode not in MODES:
            raise GatingError(f"unknown mode {self.mode!r}; valid modes: {', '.join(MODES)}")
        if self.control is not None and self.control not in CONTROLS:
            raise GatingError(
                f"unknown control {self.control!r}; valid controls: {', '.join(CONTROLS)}"
            )

    @property
    def target_entropy(self) -> float | None:
        return target_entropy(self.temperature)


def gate_probabilities(
    a: torch.Tensor, config: GateConfig, warm: WarmStart | None = None
) -> torch.Tensor:
    """softmax(strength / temperature) over channels: [C] (mode batch) or [B, C] (sample);
    an entropy target's search starts from ``warm`` where given (acc/gate_entropy.py)."""
    if a.dim() < 2:
        raise GatingError(f"gating needs outputs shaped [B, C, ...], got shape {tuple(a.shape)}")
    spatial = tuple(range(2, a.dim()))
    dims = (0, *spatial) if config.mode == "batch" else spatial
    target = config.target_entropy
    if target is not None:  # the search rescales each row itself: sum |a| will do for mean |a|
        total = torch.linalg.vector_norm(a, ord=1, dim=dims) if dims else a.abs()
        return probabilities_at_entropy(total, target, warm)
    # strength / T, with strength = mean |a| over dims: [C] (batch) or [B, C] (sample)
    if dims:
        count = math.prod(a.shape[d] for d in dims)
        logits = torch.linalg.vector_norm(a, ord=1, dim=dims) * (1.0 / (count * config.temperature))
    else:
        logits = a.abs() * (1.0 / config.temperature)  # per-sample, no spatial dims: [B, C]
    return torch.softmax(logits, dim=-1)


def scale_from_probabilities(p: torch.Tensor, config: GateConfig, dims: int) -> torch.Tensor:
    """(1 - s) + s * C * p, computed in place in ``p`` and shaped to broadcast against an
    output of ``dims`` dimensions: [1 or B, C, 1, ...]."""
    channels, s = p.shape[-1], config.gate_strength
    scale = p.mul_(channels * s).add_(1.0 - s)
    if config.mode == "batch":
        scale = scale.unsqueeze(0)  # [1, C]
    return scale.reshape(*scale.shape, *([1] * (dims - 2)))


def gate_scale(a: torch.Tensor, config: GateConfig) -> torch.Tensor:
    """The per-channel gradient scale for activations ``a``, shaped to broadcast against ``a``.

    Written as few fused kernels as it can be (an L1 norm, a softmax, two in-place updates):
    it runs on every training step.
    """
    return scale_from_probabilities(gate_probabilities(a, config), config, a.dim())


class GateWindow:
    """The gate's own statistics over the training steps since they were last read:
    ``gate_entropy`` (-sum p log p / log C, 1 = uniform mask, 0 = one-hot) and ``gate_max``
    (C * max p, 1 = uniform, C = one-hot), each averaged over steps and, in mode sample, over
    the images of a step. Sums stay on the device (two small reductions a step, no sync); only
    ``read`` brings them to the host, at evaluation time."""

    def __init__(self) -> None:
        self.neg_entropy: torch.Tensor | None = None  # p log p per channel, summed over steps
        self.largest: torch.Tensor | None = None  # sum of max p over steps and images
        self.rows = 0  # how many masks were summed (one a step, or one an image in mode sample)
        self.last: list[float] | None = None

    def add(self, p: torch.Tensor) -> None:
        terms = torch.special.xlogy(p, p)  # p log p per channel; 0 log 0 = 0 (one-hot masks)
        largest = p.max() if p.dim() == 1 else p.amax(dim=-1).sum()
        if p.dim() > 1:
            terms = terms.sum(dim=0)  # mode sample: summed over the batch's images
        if self.rows == 0:
            self.neg_entropy, self.largest = terms, largest
        else:  # kept per channel and summed at read time: one kernel fewer every step
            self.neg_entropy.add_(terms)
            self.largest.add_(largest)
        self.rows += 1 if p.dim() == 1 else p.shape[0]

    def read(self, channels: int) -> list[float] | None:
        """[mean gate_entropy, mean gate_max] since the last read (the last read's values if
        no step has been taken since; None before the first)."""
        if self.rows:
            entropy = -float(self.neg_entropy.sum()) / (self.rows * math.log(channels))
            self.last = [entropy, channels * float(self.largest) / self.rows]
            self.neg_entropy = self.largest = None
            self.rows = 0
        return self.last

    def state_dict(self) -> dict:
        return dict(vars(self))

    def load_state_dict(self, state: dict) -> None:
        self.__dict__.update(state)


class ShuffleDraws:
    """The shuffled control's random channel orders: one permutation per step (mode sample:
    per image), from a generator seeded by the branch's seed and the layer's name, so every
    seed draws its own and a resumed branch draws on exactly as before (its state is saved)."""

    def __init__(self, seed: int, layer: str) -> None:
        self.seed = (seed * 1_000_003 + zlib.crc32(layer.encode())) % 2**63
        self.generator: torch.Generator | None = None  # made on the activations' device
        self.pending: torch.Tensor | None = None  # a restored state, set once it exists

    def permute_channels(self, scale: torch.Tensor) -> torch.Tensor:
        """``scale`` [1 or B, C, 1, ...] with each row's channels in a random order."""
        if self.generator is None:
            self.generator = torch.Generator(device=scale.device).manual_seed(self.seed)
            if self.pending is not None:
                self.generator.set_state(self.pending)
        rows = scale.reshape(scale.shape[0], scale.shape[1])  # [R, C]
        keys = torch.rand(rows.shape, generator=self.generator, device=scale.device)
        return rows.gather(-1, keys.argsort(dim=-1)).reshape(scale.shape)

    def state_dict(self) -> dict:
        generator = self.generator
        return {"state": generator.get_state() if generator is not None else self.pending}

    def load_state_dict(self, state: dict) -> None:
        self.pending = state["state"]
        if self.generator is not None and self.pending is not None:
            self.generator.set_state(self.pending)


class CompetitiveGradientGating:
    """Gating on one module: a forward hook that attaches the gradient-scaling tensor hook,
    and keeps the gate's statistics (``GateWindow``) on the way."""

    def __init__(
        self, module: nn.Module, config: GateConfig, name: str = "", seed: int = 0
    ) -> None:
        self.module, self.config, self.name = module, config, name
        self._handle = module.register_forward_hook(self._on_forward)
        self.window = GateWindow()
        self._channels = 0
        self.shuffle = ShuffleDraws(seed, name) if config.control == "shuffled" else None
        self.warm = WarmStart() if config.target_entropy is not None else None

    def _on_forward(self, module: nn.Module, inputs, output: torch.Tensor) -> None:
        if not isinstance(output, torch.Tensor) or not output.requires_grad:
            return  # evaluation or no_grad: there will be no backward to gate
        p = gate_probabilities(output.detach(), self.config, self.warm)
        self.window.add(p)  # before p is turned into the scale in place
        self._channels = p.shape[-1]
        scale = scale_from_probabilities(p, self.config, output.dim())
        if self.shuffle is not None:
            scale = self.shuffle.permute_channels(scale)
        output.register_hook(lambda grad: grad * scale)

    def read_statistics(self) -> list[float] | None:
        return self.window.read(self._channels) if self._channels else self.window.last

    def state_dict(self) -> dict:
        state = {**self.window.state_dict(), "channels": self._channels}
        if self.shuffle is not None:
            state["shuffle"] = self.shuffle.state_dict()
        if self.warm is not None:
            state["warm"] = self.warm.state_dict()
        return state

    def load_state_dict(self, state: dict) -> None:
        state = dict(state)
        self._channels = int(state.pop("channels"))
        shuffle, warm = state.pop("shuffle", None), state.pop("warm", None)
        if self.shuffle is not None and shuffle is not None:
            self.shuffle.load_state_dict(shuffle)
        if self.warm is not None and warm is not None:
            self.warm.load_state_dict(warm)
        self.window.load_state_dict(state)

    def remove(self) -> None:
        if self._handle is not None:
            self._handle.remove()
            self._handle = None

    def describe(self) -> dict:
        config = {k: v for k, v in asdict(self.config).items() if k != "control" or v}
        return {"layer": self.name, "module": type(self.module).__name__, **config}


class AttachedGating:
    """The gates attached to one model: remove them all, describe them for metadata, read
    their statistics, save and restore them (a resume point carries the running sums)."""

    def __init__(self, gates: dict[str, CompetitiveGradientGating]) -> None:
        self.gates = gates

    def read_statistics(self) -> dict[str, list[float]]:
        """Layer -> [mean normalised entropy, mean C * max]; layers not yet trained left out."""
        stats = {name: gate.read_statistics() for name, gate in self.gates.items()}
        return {name: values for name, values in stats.items() if values is not None}

    def state_dict(self) -> dict:
        return {name: gate.state_dict() for name, gate in self.gates.items()}

    def load_state_dict(self, state: dict) -> None:
        for name, gate_state in state.items():
            self.gates[name].load_state_dict(gate_state)

    def remove(self) -> None:
        for gate in self.gates.values():
            gate.remove()

    def describe(self) -> dict:
        return {name: gate.describe() for name, gate in self.gates.items()}


def layer_names(model: nn.Module) -> list[str]:
    return [name for name, _ in model.named_modules() if name]


def attach_competitive_gating(
    model: nn.Module,
    temperature: float | str = 1.0,
    layer_configs: dict[str, dict] | None = None,
    control: str | None = None,
    seed: int = 0,
) -> AttachedGating:
    """Attach gating to the named layers of ``model``.

    ``layer_configs`` maps a layer name (as in ``model.named_modules()``) to
    ``{"gate_strength": ..., "temperature": ..., "mode": "batch" | "sample"}``; a missing
    ``temperature`` falls back to the ``temperature`` argument. ``control="shuffled"`` gives
    every layer the shuffled control, its draws seeded by ``seed`` (the branch's seed).
    """
    if not layer_configs:
        raise GatingError(f"no layers to gate; valid layer names: {', '.join(layer_names(model))}")
    modules = dict(model.named_modules())
    configs = {}
    for name, options in layer_configs.items():
        if name not in modules or not name:
            raise GatingError(
                f"unknown layer {name!r}; this model's layers: {', '.join(layer_names(model))}"
            )
        unknown = set(options) - {"gate_strength", "temperature", "mode"}
        if unknown:
            raise GatingError(
                f"unknown gating option(s) {sorted(unknown)} for layer {name!r}; "
                "valid: gate_strength, temperature, mode"
            )
        configs[name] = GateConfig(**{"temperature": temperature, "control": control, **options})
    return AttachedGating(
        {
            name: CompetitiveGradientGating(modules[name], cfg, name, seed)
            for name, cfg in configs.items()
        }
    )

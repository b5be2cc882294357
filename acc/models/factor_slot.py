"""FactorSlotAutoencoder: the plan's level-3 model, a VAE whose latent channels are divided
into named factor groups ("slots") that a decoder reads through cross-attention.

    x [B,1,32,32] -> backbone: stride-2 conv + residual block, twice (32 -> 16 -> 8)
      -> 1x1 convs: mu, logvar [B, C, 8, 8], C = sum of the groups' sizes -> z (sampled)
      -> factor vectors: each channel of z averaged over space [B, C] (group g: its slice)
      -> one small MLP per group: a token [B, d] each
      -> decoder: 3x3 conv + residual block on z, then
         upsample x2 + conv + residual block, twice (8 -> 16 -> 32), with cross-attention
         from the spatial features (queries) to the tokens (keys, values) after every stage
         but the last -> 1x1 conv -> sigmoid (``output="linear"``: none)  [B,1,32,32]

``detach_factor_grad=True`` detaches the factor vectors where the decoder reads them. How far
is ``detach_scope``: ``"tokens_and_means"`` (the default) detaches the tokens and the spatial
mean of every channel of z in the conv path, so the decoder still sees the same values but its
gradient no longer moves any factor vector: only the probes and the KL shape what the slots
carry, and the decoder shapes only where in the map things are. ``"tokens"`` detaches only what
the token embedder reads, as the upstream experiment (trainer_control_center) does: the conv
path still sends the reconstruction's gradient into every channel, spatial mean included.

``output="linear"`` drops the sigmoid, as upstream does (its reason: a saturated sigmoid stops
the decoder learning); reconstructions may then leave [0, 1], and whatever reads them as images
(the reconstruction metrics, traversals, the dashboard) clamps them.

LATENT is the pooled code (the factor vectors side by side, [B, C]), so a task reads group g as
``latent[:, g.start:g.end]``. In eval mode z = mu, so LATENT is the posterior mean the
disentanglement metrics use. ``width`` scales every channel count. Residual blocks are
pre-activation with group norm (see ResidualBlock for why).

Layers for gating: ``backbone.conv1`` and ``backbone.conv2`` (the stride-2 convs; their ReLUs
``backbone.relu1`` / ``backbone.relu2``).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from acc.model_output import ModelOutput
from acc.models.conv_blocks import check_input

# preset -> multiplier of every channel count; "full" is the plan's width
WIDTHS = {"full": 1.0, "half": 0.5, "small": 0.25}
BACKBONE = (64, 128)  # the plan's backbone channels for 32x32 images (an 8x8 map)
DECODER = (128, 64, 32)  # decoder stage channels (8x8, 16x16, 32x32)
TOKEN = 64  # factor token size
HEADS = 4
NORM_GROUPS = 8  # group norm groups (fewer where the channel count is not a multiple)
OUTPUTS = ("sigmoid", "linear")  # the last layer: a sigmoid into (0, 1), or none (upstream)
DETACH_SCOPES = ("tokens_and_means", "tokens")  # what detach_factor_grad detaches


@dataclass(frozen=True)
class FactorGroup:
    """Latent channels ``[start, end)`` that carry one factor."""

    name: str
    start: int
    end: int

    @property
    def size(self) -> int:
        return self.end - self.start

    def to_dict(self) -> dict:
        return asdict(self)


DEFAULT_GROUPS = (FactorGroup("digit", 0, 8), FactorGroup("thickness", 8, 14),
                  FactorGroup("slant", 14, 20))  # fmt: skip


def check_groups(groups) -> tuple[FactorGroup, ...]:
    """Groups as FactorGroups, contiguous from channel 0, in order, without gaps or overlaps."""
    groups = tuple(g if isinstance(g, FactorGroup) else FactorGroup(**g) for g in groups)
    if not groups:
        raise ValueError("a factor-slot model needs at least one factor group")
    names = [g.name for g in groups]
    if len(set(names)) != len(names):
        raise ValueError(f"factor group names must be distinct, got {names}")
    expected = 0
    for g in groups:
        if g.size < 1:
            raise ValueError(f"factor group {g.name!r} is empty or reversed: [{g.start}, {g.end})")
        if g.start != expected:
            what = "overlaps the one before" if g.start < expected else "leaves a gap before it"
            raise ValueError(
                f"factor group {g.name!r} starts at channel {g.start} and {what} (expected "
                f"{expected}): groups must be contiguous, in order, and cover every channel"
            )
        expected = g.end
    return groups


def scaled(channels: int, width: str) -> int:
    if width not in WIDTHS:
        raise ValueError(f"unknown width preset {width!r}; valid: {', '.join(WIDTHS)}")
    return max(4, round(channels * WIDTHS[width]))


def group_norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(math.gcd(NORM_GROUPS, channels), channels)


class ResidualBlock(nn.Module):
    """Pre-activation residual block: x + conv(ReLU(norm(conv(ReLU(norm(x)))))).

    The group norms keep the feature scale fixed through the stacked blocks: without them the
    summed reconstruction loss drives the output logits far negative within 50 steps, the
    sigmoid saturates at 0 and training stops for good (seen at every width).
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.norm1, self.norm2 = group_norm(channels), group_norm(channels)
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(F.relu(self.norm2(self.conv1(F.relu(self.norm1(x))))))


class Backbone(nn.Module):
    def __init__(self, in_channels: int, channels: tuple[int, int]) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, channels[0], 3, stride=2, padding=1)
        self.relu1 = nn.ReLU()
        self.res1 = ResidualBlock(channels[0])
        self.conv2 = nn.Conv2d(channels[0], channels[1], 3, stride=2, padding=1)
        self.relu2 = nn.ReLU()
        self.res2 = ResidualBlock(channels[1])
        self.norm = group_norm(channels[1])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.res1(self.relu1(self.conv1(x)))  # [B, c0, S/2, S/2]
        return F.relu(self.norm(self.res2(self.relu2(self.conv2(h)))))  # [B, c1, S/4, S/4]


class CrossAttention(nn.Module):
    """Spatial features attend to the factor tokens; the result is added to the features."""

    def __init__(self, channels: int, token: int) -> None:
        super().__init__()
        heads = HEADS if channels % HEADS == 0 else 1
        self.attend = nn.MultiheadAttention(channels, heads, kdim=token, vdim=token,
                                            batch_first=True)  # fmt: skip

    def forward(self, h: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        b, c, height, width = h.shape
        queries = h.flatten(2).transpose(1, 2)  # [B, H*W, C]
        out, _ = self.attend(queries, tokens, tokens, need_weights=False)  # [B, H*W, C]
        return h + out.transpose(1, 2).reshape(b, c, height, width)


class FactorSlotAutoencoder(nn.Module):
    # Test images per evaluation batch (acc.tasks.base.test_batches): the decoder's 32x32 maps
    # of 1,000 images overflow the CPU's caches, and a pass over the test split takes twice the
    # time it takes 250 at a time (small width: 8.9 vs 4.3 s of CPU).
    eval_batch = 250

    def __init__(
        self,
        in_channels: int = 1,
        image_size: int = 32,
        groups=DEFAULT_GROUPS,
        width: str = "full",
        detach_factor_grad: bool = False,
        detach_scope: str = "tokens_and_means",
        output: str = "sigmoid",
    ) -> None:
        super().__init__()
        if image_size % 4:
            raise ValueError(f"image_size must be a multiple of 4, got {image_size}")
        if detach_scope not in DETACH_SCOPES:
            valid = ", ".join(DETACH_SCOPES)
            raise ValueError(f"unknown detach_scope {detach_scope!r}; valid: {valid}")
        if output not in OUTPUTS:
            raise ValueError(f"unknown output {output!r}; valid: {', '.join(OUTPUTS)}")
        self.in_channels, self.image_size, self.width = in_channels, image_size, width
        self.groups = check_groups(groups)
        self.detach_factor_grad = bool(detach_factor_grad)
        self.detach_scope, self.output = detach_scope, output
        latent = self.groups[-1].end
        backbone = tuple(scaled(c, width) for c in BACKBONE)
        decoder = tuple(scaled(c, width) for c in DECODER)
        token = scaled(TOKEN, width)
        self.backbone = Backbone(in_channels, backbone)
        self.mu = nn.Conv2d(backbone[1], latent, 1)
        self.logvar = nn.Conv2d(backbone[1], latent, 1)
        self.embed = nn.ModuleList(
            nn.Sequential(nn.Linear(g.size, token), nn.ReLU(), nn.Linear(token, token))
            for g in self.groups
        )
        self.stem = nn.Conv2d(latent, decoder[0], 3, padding=1)
        self.stages = nn.ModuleList(ResidualBlock(c) for c in decoder)
        self.up = nn.ModuleList(nn.Conv2d(a, b, 3, padding=1) for a, b in zip(decoder, decoder[1:]))
        self.attend = nn.ModuleList(CrossAttention(c, token) for c in decoder[:-1])
        self.out_norm = group_norm(decoder[-1])
        self.out = nn.Conv2d(decoder[-1], in_channels, 1)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        check_input(x, self.in_channels, self.image_size)  # x: [B, C, S, S]
        h = self.backbone(x)  # [B, c1, S/4, S/4]
        return self.mu(h), self.logvar(h)  # [B, latent, S/4, S/4] each

    def factor_vectors(self, z: torch.Tensor) -> torch.Tensor:
        """Every latent channel averaged over space: [B, latent] (group g: its slice)."""
        return z.mean(dim=(2, 3))

    def tokens(self, pooled: torch.Tensor) -> torch.Tensor:
        """One token per factor group from its factor vector: [B, G, d]."""
        return torch.stack(
            [embed(pooled[:, g.start : g.end]) for embed, g in zip(self.embed, self.groups)], 1
        )

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        pooled = self.factor_vectors(z)  # [B, latent]
        if self.detach_factor_grad:
            pooled = pooled.detach()  # the tokens send no gradient into the factor vectors
        if self.detach_factor_grad and self.detach_scope == "tokens_and_means":
            # Nor does the conv path: the decoder sees the same values, but its gradient reaches
            # each channel only as a deviation from the spatial mean, so the probes and the KL
            # alone shape what the slots carry.
            z = z - z.mean(dim=(2, 3), keepdim=True) + pooled[:, :, None, None]
        tokens = self.tokens(pooled)  # [B, G, d]
        h = self.stages[0](F.relu(self.stem(z)))  # [B, d0, S/4, S/4]
        for i, stage in enumerate(self.stages[1:]):
            h = self.attend[i](h, tokens)
            h = F.interpolate(h, scale_factor=2, mode="nearest")  # [B, ., 2x, 2x]
            h = stage(F.relu(self.up[i](h)))
        out = self.out(F.relu(self.out_norm(h)))  # [B, C, S, S]
        return torch.sigmoid(out) if self.output == "sigmoid" else out

    def forward(self, x: torch.Tensor) -> dict[ModelOutput, torch.Tensor]:
        mu, logvar = self.encode(x)
        z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu) if self.training else mu
        return {
            ModelOutput.LATENT: self.factor_vectors(z),  # [B, latent]: the factor vectors
            ModelOutput.RECONSTRUCTION: self.decode(z),
            ModelOutput.MU: mu,
            ModelOutput.LOGVAR: logvar,
        }

    def config(self) -> dict:
        return {
            "class": type(self).__name__,
            "in_channels": self.in_channels,
            "image_size": self.image_size,
            "groups": [g.to_dict() for g in self.groups],
            "width": self.width,
            "detach_factor_grad": self.detach_factor_grad,
            "detach_scope": self.detach_scope,
            "output": self.output,
        }

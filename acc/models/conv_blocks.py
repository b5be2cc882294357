"""The convolutional encoder and decoder shared by ConvAutoencoder and ConvVAE.

Both models differ only in what sits between the encoder's features and the decoder (one
linear latent, or mu/logvar heads and a sample), so the convolutions live here once. The
layer names are part of the contract: recipes gate ``encoder.conv1`` / ``encoder.conv2``
and read ReLU outputs from ``encoder.relu1`` / ``encoder.relu2``.
"""

from __future__ import annotations

import torch
from torch import nn

CHANNELS = (32, 64)  # the plan's conv widths: Conv(in, 32) then Conv(32, 64), stride 2 each

# layer label -> (conv module name, module name of the ReLU after it)
CONV_LAYERS: dict[str, tuple[str, str]] = {
    "conv1": ("encoder.conv1", "encoder.relu1"),
    "conv2": ("encoder.conv2", "encoder.relu2"),
}


def check_image_size(image_size: int) -> int:
    """Two stride-2 convolutions halve the side twice: it must be a positive multiple of 4."""
    if not isinstance(image_size, int) or image_size < 4 or image_size % 4:
        raise ValueError(
            f"image_size must be a multiple of 4 (two stride-2 convs), "
            f"got {image_size!r}; use the dataset view '32' (or '28')"
        )
    return image_size


class ConvEncoder(nn.Module):
    """Conv(in,32,3,s2,p1) -> ReLU -> Conv(32,64,3,s2,p1) -> ReLU -> Flatten."""

    def __init__(self, in_channels: int, image_size: int) -> None:
        super().__init__()
        side = check_image_size(image_size) // 4
        self.conv1 = nn.Conv2d(in_channels, CHANNELS[0], 3, stride=2, padding=1)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(CHANNELS[0], CHANNELS[1], 3, stride=2, padding=1)
        self.relu2 = nn.ReLU()
        self.out_features = CHANNELS[1] * side * side

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.relu1(self.conv1(x))  # [B, 32, S/2, S/2]
        h = self.relu2(self.conv2(h))  # [B, 64, S/4, S/4]
        return h.flatten(1)  # [B, 64 * (S/4)^2]


class ConvDecoder(nn.Module):
    """The encoder's mirror: Linear -> ReLU -> ConvT(64,32) -> ReLU -> ConvT(32,in) -> Sigmoid."""

    def __init__(self, latent_dim: int, out_channels: int, image_size: int) -> None:
        super().__init__()
        self.side = check_image_size(image_size) // 4
        self.fc = nn.Linear(latent_dim, CHANNELS[1] * self.side * self.side)
        self.relu0 = nn.ReLU()
        self.deconv1 = nn.ConvTranspose2d(
            CHANNELS[1], CHANNELS[0], 3, stride=2, padding=1, output_padding=1
        )
        self.relu1 = nn.ReLU()
        self.deconv2 = nn.ConvTranspose2d(
            CHANNELS[0], out_channels, 3, stride=2, padding=1, output_padding=1
        )
        self.out = nn.Sigmoid()

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.relu0(self.fc(z))  # [B, 64 * (S/4)^2]
        h = h.view(-1, CHANNELS[1], self.side, self.side)  # [B, 64, S/4, S/4]
        h = self.relu1(self.deconv1(h))  # [B, 32, S/2, S/2]
        return self.out(self.deconv2(h))  # [B, in, S, S]


def check_input(x: torch.Tensor, in_channels: int, image_size: int) -> None:
    """A clear error for the commonest mistake: flat or 28x28 images into a 32x32 model."""
    expected = (in_channels, image_size, image_size)
    if x.dim() != 4 or tuple(x.shape[1:]) != expected:
        raise ValueError(
            f"expected images shaped [B, {in_channels}, {image_size}, {image_size}], "
            f"got {tuple(x.shape)}; load the dataset view '{image_size}'"
        )

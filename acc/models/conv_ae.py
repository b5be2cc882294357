"""ConvAutoencoder: the plan's level 1, two strided convolutions around a linear latent."""

from __future__ import annotations

import torch
from torch import nn

from acc.model_output import ModelOutput
from acc.models.conv_blocks import ConvDecoder, ConvEncoder, check_input


class ConvAutoencoder(nn.Module):
    """Conv encoder -> Linear(64*8*8, hidden) -> mirror ConvTranspose decoder (Sigmoid).

    Layers that recipes measure: ``encoder.conv1`` / ``encoder.conv2`` (labels conv1, conv2)
    and the ReLUs after them, ``encoder.relu1`` / ``encoder.relu2``.
    """

    def __init__(self, in_channels: int = 1, hidden_dim: int = 64, image_size: int = 32) -> None:
        super().__init__()
        if hidden_dim < 1:
            raise ValueError(f"hidden_dim must be >= 1, got {hidden_dim}")
        self.in_channels, self.hidden_dim, self.image_size = in_channels, hidden_dim, image_size
        self.encoder = ConvEncoder(in_channels, image_size)
        self.to_latent = nn.Linear(self.encoder.out_features, hidden_dim)
        self.decoder = ConvDecoder(hidden_dim, in_channels, image_size)

    def forward(self, x: torch.Tensor) -> dict[ModelOutput, torch.Tensor]:
        check_input(x, self.in_channels, self.image_size)  # x: [B, C, S, S]
        latent = self.to_latent(self.encoder(x))  # [B, hidden_dim]
        recon = self.decoder(latent)  # [B, C, S, S]
        return {ModelOutput.LATENT: latent, ModelOutput.RECONSTRUCTION: recon}

    def config(self) -> dict:
        return {
            "class": type(self).__name__,
            "in_channels": self.in_channels,
            "hidden_dim": self.hidden_dim,
            "image_size": self.image_size,
        }

"""ConvVAE: the plan's level 2, the level-1 encoder/decoder around a Gaussian latent."""

from __future__ import annotations

import torch
from torch import nn

from acc.model_output import ModelOutput
from acc.models.conv_blocks import ConvDecoder, ConvEncoder, check_input


class ConvVAE(nn.Module):
    """Conv encoder -> heads ``mu`` and ``logvar`` -> z = mu + exp(logvar/2) * eps -> decoder.

    In training mode LATENT is the sample z (noise from the global torch RNG, which the recipe
    context seeds per branch so every condition draws the same noise); in eval mode LATENT is
    mu and the reconstruction is decoded from mu, so evaluation is deterministic.
    """

    def __init__(self, in_channels: int = 1, latent_dim: int = 16, image_size: int = 32) -> None:
        super().__init__()
        if latent_dim < 1:
            raise ValueError(f"latent_dim must be >= 1, got {latent_dim}")
        self.in_channels, self.latent_dim, self.image_size = in_channels, latent_dim, image_size
        self.encoder = ConvEncoder(in_channels, image_size)
        self.mu = nn.Linear(self.encoder.out_features, latent_dim)
        self.logvar = nn.Linear(self.encoder.out_features, latent_dim)
        self.decoder = ConvDecoder(latent_dim, in_channels, image_size)

    def forward(self, x: torch.Tensor) -> dict[ModelOutput, torch.Tensor]:
        check_input(x, self.in_channels, self.image_size)  # x: [B, C, S, S]
        features = self.encoder(x)  # [B, 64 * (S/4)^2]
        mu, logvar = self.mu(features), self.logvar(features)  # [B, latent_dim] each
        z = self.reparameterise(mu, logvar) if self.training else mu  # [B, latent_dim]
        recon = self.decoder(z)  # [B, C, S, S]
        return {
            ModelOutput.LATENT: z,
            ModelOutput.RECONSTRUCTION: recon,
            ModelOutput.MU: mu,
            ModelOutput.LOGVAR: logvar,
        }

    @staticmethod
    def reparameterise(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
        """z = mu + sigma * eps: the sample stays differentiable in mu and logvar."""
        return mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)

    def config(self) -> dict:
        return {
            "class": type(self).__name__,
            "in_channels": self.in_channels,
            "latent_dim": self.latent_dim,
            "image_size": self.image_size,
        }

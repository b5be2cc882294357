"""LinearAutoencoder: the plan's level 0, one ReLU hidden layer between two linear maps."""

from __future__ import annotations

import torch
from torch import nn

from acc.model_output import ModelOutput


class LinearAutoencoder(nn.Module):
    """784 -> hidden (ReLU) -> 784 (Sigmoid); layers ``encoder.0``, ``encoder.1``, ``decoder.0``."""

    def __init__(self, in_dim: int = 784, hidden_dim: int = 64) -> None:
        super().__init__()
        self.in_dim, self.hidden_dim = in_dim, hidden_dim
        self.encoder = nn.Sequential(nn.Linear(in_dim, hidden_dim), nn.ReLU())
        self.decoder = nn.Sequential(nn.Linear(hidden_dim, in_dim), nn.Sigmoid())

    def forward(self, x: torch.Tensor) -> dict[ModelOutput, torch.Tensor]:
        flat = x.reshape(x.shape[0], -1)  # [B, in_dim], from [B, 784] or [B, 1, 28, 28]
        hidden = self.encoder(flat)  # [B, hidden_dim]
        recon = self.decoder(hidden).reshape(x.shape)  # same shape as the input
        return {ModelOutput.LATENT: hidden, ModelOutput.RECONSTRUCTION: recon}

    def config(self) -> dict:
        return {"class": type(self).__name__, "in_dim": self.in_dim, "hidden_dim": self.hidden_dim}

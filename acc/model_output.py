"""ModelOutput: the contract between models and tasks.

Every model's ``forward`` returns ``dict[ModelOutput, Tensor]``; tasks read only the
entries they need, so the Trainer, tasks and store work with any model unchanged.
"""

from enum import Enum


class ModelOutput(str, Enum):
    LATENT = "latent"  # the representation tasks measure: [B, D]
    RECONSTRUCTION = "reconstruction"  # same shape as the model's input
    MU = "mu"  # posterior mean of a VAE: [B, D]
    LOGVAR = "logvar"  # posterior log-variance of a VAE: [B, D]

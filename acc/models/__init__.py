"""Model classes: plain ``nn.Module``s whose ``forward`` returns ``dict[ModelOutput, Tensor]``.

``MODELS`` names every model ACC knows; checkpoints record the class name and ``config()``,
which is all :func:`build_model` needs to rebuild one.
"""

from __future__ import annotations

from torch import nn

from acc.models.conv_ae import ConvAutoencoder
from acc.models.conv_vae import ConvVAE
from acc.models.factor_slot import FactorGroup, FactorSlotAutoencoder
from acc.models.linear_ae import LinearAutoencoder

MODELS: dict[str, type[nn.Module]] = {
    "LinearAutoencoder": LinearAutoencoder,
    "ConvAutoencoder": ConvAutoencoder,
    "ConvVAE": ConvVAE,
    "FactorSlotAutoencoder": FactorSlotAutoencoder,
}


def build_model(config: dict) -> nn.Module:
    """Rebuild a model from its ``config()`` dict."""
    options = dict(config)
    name = options.pop("class", None)
    if name not in MODELS:
        raise ValueError(f"unknown model class {name!r}; known: {', '.join(sorted(MODELS))}")
    return MODELS[name](**options)


__all__ = [
    "MODELS",
    "ConvAutoencoder",
    "ConvVAE",
    "FactorGroup",
    "FactorSlotAutoencoder",
    "LinearAutoencoder",
    "build_model",
]

"""Registries discover plugins predictably; tasks measure what they say on known models."""

from __future__ import annotations

import math
import sys
import textwrap

import pytest
import torch
from torch import nn

from acc.model_output import ModelOutput
from acc.models import LinearAutoencoder
from acc.recipes import recipe_registry
from acc.registry import RegistryError, discover
from acc.tasks import Task, TaskError, task_registry
from acc.tasks.activation_sparsity import ActivationSparsityTask
from acc.tasks.reconstruction import ReconstructionTask
from acc.tasks.weight_diversity import WeightDiversityTask


def test_builtin_registries():
    assert {
        "ReconstructionTask",
        "WeightDiversityTask",
        "EffectiveRankTask",
        "ActivationSparsityTask",
        "DeadUnitsTask",
    } <= set(task_registry().names())
    assert "gradient_gating_l0" in recipe_registry().names()
    assert task_registry().names() == sorted(task_registry().names())
    assert not task_registry().import_errors and not recipe_registry().import_errors
    with pytest.raises(RegistryError, match="unknown task 'Nope'; known tasks: "):
        task_registry().get("Nope")


def _plugin_package(tmp_path, name, files):
    pkg = tmp_path / name
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    for filename, body in files.items():
        (pkg / filename).write_text(textwrap.dedent(body))
    sys.path.insert(0, str(tmp_path))


PLUGIN = """
from acc.tasks.base import EvalOnlyTask
class {cls}(EvalOnlyTask):
    pass
"""


def test_broken_module_is_reported_and_others_still_load(tmp_path):
    _plugin_package(
        tmp_path,
        "plugins_a",
        {
            "good.py": PLUGIN.format(cls="GoodTask"),
            "bad.py": "raise ImportError('missing thing')\n",
        },
    )
    try:
        registry = discover("plugins_a", Task, lambda c: c.__name__, "task")
    finally:
        sys.path.remove(str(tmp_path))
    assert registry.names() == ["GoodTask"]
    [(path, error)] = registry.import_errors.items()
    assert path.endswith("plugins_a/bad.py") and "missing thing" in error


def test_duplicate_names_are_errors(tmp_path):
    _plugin_package(
        tmp_path,
        "plugins_b",
        {"one.py": PLUGIN.format(cls="Same"), "two.py": PLUGIN.format(cls="Same")},
    )
    try:
        with pytest.raises(RegistryError, match="duplicate task name 'Same'"):
            discover("plugins_b", Task, lambda c: c.__name__, "task")
    finally:
        sys.path.remove(str(tmp_path))


class _Constant(nn.Module):
    """Reconstructs every image as a constant: L1 and PSNR are known in closed form."""

    def __init__(self, value: float) -> None:
        super().__init__()
        self.value = value

    def forward(self, x):
        return {ModelOutput.RECONSTRUCTION: torch.full_like(x, self.value)}


def test_reconstruction_metrics_on_a_known_model(small_mnist):
    x = small_mnist.test.images.double()
    result = ReconstructionTask("r", small_mnist).evaluate(_Constant(0.0))
    assert result["l1"] == pytest.approx(float(x.mean()), rel=1e-9)
    assert result["psnr"] == pytest.approx(10 * math.log10(1 / float((x**2).mean())), rel=1e-9)
    with pytest.raises(ValueError, match="unknown reconstruction loss 'huber'"):
        ReconstructionTask("r", small_mnist, loss="huber")


def test_layer_tasks_name_the_valid_layers_and_need_outputs(small_mnist):
    model = LinearAutoencoder(784, 8)
    with pytest.raises(
        TaskError,
        match="unknown layer 'encoder.5'; this model's layers: encoder, encoder.0, encoder.1",
    ):
        WeightDiversityTask("d", small_mnist, "encoder.5").evaluate(model)
    with pytest.raises(TaskError, match="has no weight matrix"):
        WeightDiversityTask("d", small_mnist, "encoder.1").evaluate(model)
    with pytest.raises(TaskError, match="needs the model output 'reconstruction'"):
        ReconstructionTask("r", small_mnist).compute_loss(
            {ModelOutput.LATENT: torch.zeros(1)}, None
        )


def test_sparsity_task_reads_the_layer_output(small_mnist):
    model = LinearAutoencoder(784, 8)
    with torch.no_grad():
        model.encoder[0].weight.zero_()
        model.encoder[0].bias.copy_(torch.tensor([1.0, 0, 0, 0, 0, 0, 0, -1]))
    out = ActivationSparsityTask("s", small_mnist, "encoder.1").evaluate(model)
    # every image: activations [1, 0, ..., 0] -> 1 of 8 channels above the mean, zero variance,
    # and one channel carries everything: Hoyer sparsity 1
    assert out == {"activation_sparsity": 0.125, "sparsity_variance": 0.0, "hoyer_sparsity": 1.0}
    assert model.training  # evaluation restored the mode


def test_linear_autoencoder_contract():
    model = LinearAutoencoder()
    assert [n for n, _ in model.named_modules() if n] == [
        "encoder",
        "encoder.0",
        "encoder.1",
        "decoder",
        "decoder.0",
        "decoder.1",
    ]
    for shape in [(3, 784), (3, 1, 28, 28)]:
        out = model(torch.rand(shape))
        assert out[ModelOutput.RECONSTRUCTION].shape == shape
        assert out[ModelOutput.LATENT].shape == (3, 64) and bool(
            (out[ModelOutput.LATENT] >= 0).all()
        )
    out[ModelOutput.RECONSTRUCTION].sum().backward()
    assert all(p.grad is not None for p in model.parameters())


def test_reconstruction_training_losses_on_known_values(small_mnist):
    x = small_mnist.test.images[:4]
    out = {ModelOutput.RECONSTRUCTION: torch.zeros_like(x)}
    l1 = ReconstructionTask("r", small_mnist).compute_loss(out, x)
    mse = ReconstructionTask("r", small_mnist, loss="mse").compute_loss(out, x)
    per_image = ReconstructionTask("r", small_mnist, reduction="sum").compute_loss(out, x)
    assert float(l1) == pytest.approx(float(x.mean()), rel=1e-6)
    assert float(mse) == pytest.approx(float((x**2).mean()), rel=1e-6)
    assert float(per_image) == pytest.approx(float(x.sum(dim=1).mean()), rel=1e-6)

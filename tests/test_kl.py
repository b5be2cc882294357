"""KLDivergenceTask and latent metrics on hand-made inputs; specialisation tasks on Conv2d."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from acc.data import Dataset, Split
from acc.model_output import ModelOutput
from acc.tasks.activation_sparsity import ActivationSparsityTask
from acc.tasks.dead_units import DeadUnitsTask
from acc.tasks.effective_rank import EffectiveRankTask
from acc.tasks.kl_divergence import KLDivergenceTask
from acc.tasks.reconstruction import ReconstructionTask
from acc.tasks.weight_diversity import WeightDiversityTask


def images_dataset(test_images: torch.Tensor) -> Dataset:
    labels = torch.zeros(len(test_images), dtype=torch.long)
    return Dataset("mnist", "32", Split(test_images, labels), Split(test_images, labels))


class FixedPosterior(nn.Module):
    """A 'model' whose mu/logvar are given per test image (indexed by the first pixel)."""

    def __init__(self, mu: torch.Tensor, logvar: torch.Tensor) -> None:
        super().__init__()
        self.mu, self.logvar = mu, logvar

    def forward(self, x):
        idx = x[:, 0].long()
        return {
            ModelOutput.MU: self.mu[idx],
            ModelOutput.LOGVAR: self.logvar[idx],
            ModelOutput.LATENT: self.mu[idx],
            ModelOutput.RECONSTRUCTION: x,
        }


def test_kl_loss_known_values():
    # dim 0: mu=1, var=1 -> 0.5; dim 1: mu=0, var=e -> 0.5*(e - 1 - 1); dim 2: prior -> 0
    mu = torch.tensor([[1.0, 0.0, 0.0], [1.0, 0.0, 0.0]])
    logvar = torch.tensor([[0.0, 1.0, 0.0], [0.0, 1.0, 0.0]])
    task = KLDivergenceTask("kl", images_dataset(torch.zeros(2, 1)), weight=0.05)
    loss = task.compute_loss({ModelOutput.MU: mu, ModelOutput.LOGVAR: logvar}, torch.zeros(2, 1))
    expected = 0.5 + 0.5 * (math.e - 2.0)  # summed over dims, mean over images
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    assert task.describe()["beta"] == 0.05


def test_kl_warmup_is_linear_then_flat():
    mu, logvar = torch.ones(4, 2), torch.zeros(4, 2)  # KL = 0.5 per dim -> 1.0 per image
    task = KLDivergenceTask("kl", images_dataset(torch.zeros(4, 1)), warmup_steps=4)
    values = []
    for step in range(6):  # the Trainer sets the task's step before each training step
        task.step = step
        values.append(
            task.compute_loss({ModelOutput.MU: mu, ModelOutput.LOGVAR: logvar}, None).item()
        )
    assert values == pytest.approx([0.25, 0.5, 0.75, 1.0, 1.0, 1.0])
    task.step = 1  # it follows the trainer's step, not a count of its own calls (resume)
    assert task.compute_loss({ModelOutput.MU: mu, ModelOutput.LOGVAR: logvar}, None).item() == 0.5


def test_kl_task_needs_mu_and_logvar():
    task = KLDivergenceTask("kl", images_dataset(torch.zeros(2, 1)))
    with pytest.raises(ValueError, match="needs the model output 'mu'"):
        task.compute_loss({ModelOutput.LATENT: torch.zeros(2, 3)}, torch.zeros(2, 1))
    with pytest.raises(ValueError, match="finite number >= 0"):
        KLDivergenceTask("kl", images_dataset(torch.zeros(2, 1)), weight=float("nan"))
    with pytest.raises(ValueError, match="warmup_steps"):
        KLDivergenceTask("kl", images_dataset(torch.zeros(2, 1)), warmup_steps=-1)


def test_kl_evaluate_kl_per_dim_and_active_units():
    # 4 images, 3 dims. dim 0: mu in {-1, 1} (var 1: active), logvar 0 -> KL 0.5 each;
    # dim 1: mu = 0.05 * (+-1) (var 0.0025: inactive), logvar = log 0.5;
    # dim 2: mu = 0, logvar = 0 (collapsed to the prior) -> KL 0.
    signs = torch.tensor([1.0, -1.0, 1.0, -1.0])
    mu = torch.stack([signs, 0.05 * signs, torch.zeros(4)], dim=1)
    logvar = torch.stack([torch.zeros(4), torch.full((4,), math.log(0.5)), torch.zeros(4)], dim=1)
    model = FixedPosterior(mu, logvar)
    task = KLDivergenceTask("kl", images_dataset(torch.arange(4.0).reshape(4, 1)))
    metrics = task.evaluate(model)
    kl_dim1 = 0.5 * (0.05**2 + 0.5 - 1.0 - math.log(0.5))
    assert metrics["kl_per_dim"] == pytest.approx([0.5, kl_dim1, 0.0], abs=1e-9)
    assert metrics["kl"] == pytest.approx(0.5 + kl_dim1, abs=1e-9)
    assert metrics["active_units"] == 1.0


def test_reconstruction_sum_reduction_is_per_image_sum():
    x = torch.zeros(2, 1, 4, 4)
    recon = torch.full((2, 1, 4, 4), 0.5)
    out = {ModelOutput.RECONSTRUCTION: recon}
    data = images_dataset(x)
    assert ReconstructionTask("r", data).compute_loss(out, x).item() == pytest.approx(0.5)
    summed = ReconstructionTask("r", data, reduction="sum").compute_loss(out, x).item()
    assert summed == pytest.approx(0.5 * 16)  # 16 pixels per image, mean over 2 images
    mse = ReconstructionTask("r", data, loss="mse", reduction="sum").compute_loss(out, x).item()
    assert mse == pytest.approx(0.25 * 16)
    with pytest.raises(ValueError, match="unknown reduction"):
        ReconstructionTask("r", data, reduction="max")


# --- the level-0 specialisation tasks, unchanged, on Conv2d layers ---------------------------


class OneConv(nn.Module):
    def __init__(self, weight: torch.Tensor) -> None:
        super().__init__()
        self.conv = nn.Conv2d(weight.shape[1], weight.shape[0], tuple(weight.shape[2:]), bias=False)
        self.conv.weight.data.copy_(weight)
        self.relu = nn.ReLU()

    def forward(self, x):
        return {ModelOutput.LATENT: self.relu(self.conv(x))}


def test_kernel_cosine_similarity_and_effective_rank_on_conv_weights():
    # three kernels [out=3, in=2, kh=1, kw=2], flattened to 4-vectors: e1, 3*e1 and 2*e4
    w = torch.zeros(3, 2, 1, 2)
    w[0, 0, 0, 0] = 1.0
    w[1, 0, 0, 0] = 3.0  # parallel to kernel 0
    w[2, 1, 0, 1] = 2.0  # orthogonal to both
    model, data = OneConv(w), images_dataset(torch.zeros(2, 2, 1, 2))
    cos = WeightDiversityTask("wd", data, "conv", label="conv1").evaluate(model)
    assert cos == {"weight_cosine_sim[conv1]": pytest.approx(2 / 6)}  # pairs (0,1),(1,0) are 1
    # singular values of the rows [e1, 3e1, 2e4]: sqrt(1 + 9) and 2
    erank = EffectiveRankTask("er", data, "conv", label="conv1").evaluate(model)
    s = torch.tensor([math.sqrt(10.0), 2.0], dtype=torch.float64)
    p = s / s.sum()
    expected = math.exp(-(p * p.log()).sum().item())
    # the same rows at unit norm, [e1, e1, e4]: singular values sqrt(2) and 1
    unit = torch.tensor([math.sqrt(2.0), 1.0], dtype=torch.float64)
    q = unit / unit.sum()
    expected_unit = math.exp(-(q * q.log()).sum().item())
    assert erank == {
        "effective_rank[conv1]": pytest.approx(expected, rel=1e-9),
        "effective_rank_normalized[conv1]": pytest.approx(expected_unit, rel=1e-9),
    }


def test_sparsity_and_dead_units_on_4d_activations():
    # a 1x1 conv with identity weights on 4 channels: the output equals the input, [N, 4, 2, 2]
    model = OneConv(torch.eye(4).reshape(4, 4, 1, 1))
    x = torch.zeros(2, 4, 2, 2)
    x[0, 0] = 4.0  # image 0: channel means (4, 1, 0, 0) after the next line
    x[0, 1, 0, 0] = 4.0
    x[1, 2] = -1.0  # image 1: ReLU -> channel 2 is 0; channel 1 spatial mean 0.5
    x[1, 1, 1, 1] = 2.0
    data = images_dataset(x)
    sparsity = ActivationSparsityTask("s", data, "relu", label="conv2").evaluate(model)
    # image 0: mean 1.25, above: ch 0 -> 1/4; image 1: means (0, .5, 0, 0), above: ch 1 -> 1/4
    # Hoyer: image 0 a = (4, 1, 0, 0): (2 - 5 / sqrt(17)) / (2 - 1); image 1 one channel: 1
    hoyer = ((2 - 5 / math.sqrt(17)) + 1.0) / 2
    assert sparsity == {
        "activation_sparsity[conv2]": pytest.approx(0.25),
        "sparsity_variance[conv2]": pytest.approx(0.0),
        "hoyer_sparsity[conv2]": pytest.approx(hoyer),
    }
    dead = DeadUnitsTask("d", data, "relu", label="conv2").evaluate(model)
    assert dead == {"dead_units[conv2]": 2.0}  # channels 2 and 3 never fire

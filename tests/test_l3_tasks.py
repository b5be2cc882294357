"""Level-3 tasks on cases with known answers: the probes (classification, regression), KL per
factor group, the traversal helpers and traversal_specificity, and the disentanglement task on
a code that is its factors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from acc.data import Dataset, Split
from acc.model_output import ModelOutput
from acc.models.factor_slot import FactorGroup
from acc.tasks.base import TaskError
from acc.tasks.classification import ClassificationTask
from acc.tasks.disentanglement import DisentanglementTask
from acc.tasks.kl_divergence import KLDivergenceTask
from acc.tasks.regression import RegressionTask
from acc.tasks.traversal_specificity import TraversalSpecificityTask
from acc.traversal import STEPS, principal_direction, traverse


def split(n: int, seed: int) -> Split:
    """Images whose mean brightness is a factor ("thickness") and whose left-right balance is
    another ("slant"); labels = brightness decile. Everything is a linear function of the image."""
    g = torch.Generator().manual_seed(seed)
    bright = 0.25 + 0.5 * torch.rand(n, generator=g)
    balance = 0.5 * (torch.rand(n, generator=g) - 0.5)
    images = torch.zeros(n, 1, 32, 32)
    images[:, 0, :, :16] = (bright + balance / 2)[:, None, None]
    images[:, 0, :, 16:] = (bright - balance / 2)[:, None, None]
    labels = ((bright - 0.25) * 20).long().clamp(max=9)
    factors = {"thickness": images.mean(dim=(1, 2, 3)), "slant": balance}
    return Split(images, labels, factors)


@pytest.fixture(scope="module")
def data() -> Dataset:
    return Dataset("synthetic", "32", split(2000, 0), split(500, 1))


class Readout(nn.Module):
    """LATENT = [brightness, left-minus-right], the two things the images vary in."""

    def forward(self, x: torch.Tensor) -> dict:
        left, right = x[..., :16].mean(dim=(1, 2, 3)), x[..., 16:].mean(dim=(1, 2, 3))
        return {ModelOutput.LATENT: torch.stack([(left + right) / 2, left - right], dim=1)}


def test_a_perfect_regression_probe_scores_r2_one_and_the_mean_scores_zero(data):
    task = RegressionTask("thickness", data, "thickness", 0, 1)
    with torch.no_grad():  # prediction = (brightness - mean) / std: the standardised factor
        task.probe.weight.fill_(1 / task.std)
        task.probe.bias.fill_(-task.mean / task.std)
    assert task.evaluate(Readout())["probe_r2[thickness]"] == pytest.approx(1.0, abs=1e-6)
    with torch.no_grad():
        task.probe.weight.zero_()
        task.probe.bias.fill_(float(task.target(data.test.factors["thickness"]).mean()))
    assert task.evaluate(Readout())["probe_r2[thickness]"] == pytest.approx(0.0, abs=1e-6)


def test_regression_probe_learns_its_factor_through_the_training_loss(data):
    task = RegressionTask("slant", data, "slant", 1, 2)
    optimizer = torch.optim.Adam(task.parameters(), lr=0.05)
    g = torch.Generator().manual_seed(0)
    for _ in range(300):
        task.indices = torch.randint(0, 2000, (64,), generator=g)
        loss = task.compute_loss(Readout()(data.train.images[task.indices]), None)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert task.evaluate(Readout())["probe_r2[slant]"] > 0.99
    assert (
        RegressionTask("wrong", data, "slant", 0, 1).evaluate(Readout())["probe_r2[slant]"] < 0.1
    )  # brightness does not predict the balance


def test_classification_probe_reports_test_accuracy(data):
    task = ClassificationTask("digit", data, 0, 1, label="digit")
    centres = 0.25 + (torch.arange(10) + 0.5) / 20  # the middle of each brightness decile

    class Nearest(nn.Module):  # an exact classifier in the probe's place: the nearest centre
        def forward(self, z):
            return -((z[:, :1] - centres) ** 2)

    task.probe = Nearest()
    assert task.evaluate(Readout())["probe_accuracy[digit]"] == pytest.approx(1.0, abs=1e-6)
    task.probe = lambda z: torch.zeros(len(z), 10).index_fill_(1, torch.tensor([3]), 1.0)
    always_3 = float((data.test.labels == 3).double().mean())
    assert task.evaluate(Readout())["probe_accuracy[digit]"] == pytest.approx(always_3)


def test_probes_need_their_factor_and_a_wide_enough_latent(data):
    with pytest.raises(TaskError, match="needs the measured factor 'width'"):
        RegressionTask("w", data, "width", 0, 1)
    task = RegressionTask("t", data, "thickness", 0, 5)
    with pytest.raises(TaskError, match=r"reads latent channels \[0, 5\) of a 2-channel latent"):
        task.evaluate(Readout())
    with pytest.raises(ValueError, match="start, end"):
        ClassificationTask("digit", data, 3, 3)


class FixedPosterior(nn.Module):
    def __init__(self, mu: torch.Tensor, logvar: torch.Tensor) -> None:
        super().__init__()
        self.mu, self.logvar = mu, logvar

    def forward(self, x):
        n = len(x)
        return {ModelOutput.MU: self.mu.expand(n, -1, -1, -1),
                ModelOutput.LOGVAR: self.logvar.expand(n, -1, -1, -1)}  # fmt: skip


def test_kl_per_group_adds_up_and_has_the_closed_form(data):
    groups = (FactorGroup("a", 0, 2), FactorGroup("b", 2, 5))
    mu = torch.zeros(1, 5, 3, 3)
    mu[:, 0] = 1.0  # group a: one channel at mu = 1 over 9 positions: 9 * 0.5 nats
    logvar = torch.zeros(1, 5, 3, 3)
    logvar[:, 3] = math.log(2.0)  # group b: var 2 over 9 positions: 9 * 0.5 (2 - 1 - ln 2)
    metrics = KLDivergenceTask("kl", data, groups=groups).evaluate(FixedPosterior(mu, logvar))
    assert metrics["kl[a]"] == pytest.approx(4.5)
    assert metrics["kl[b]"] == pytest.approx(9 * 0.5 * (1 - math.log(2.0)))
    assert metrics["kl"] == pytest.approx(metrics["kl[a]"] + metrics["kl[b]"])


def test_principal_direction_of_points_on_a_line():
    g = torch.Generator().manual_seed(0)
    t = torch.randn(500, generator=g)
    line = torch.tensor([3.0, -4.0]) / 5
    direction, spread = principal_direction(t[:, None] * line * 2 + torch.tensor([1.0, 1.0]))
    torch.testing.assert_close(direction, line * torch.sign(line[line.abs().argmax()]))
    assert spread == pytest.approx(2 * float(t.std()), rel=1e-5)


class MapDecoder(nn.Module):
    """decode(z) = z's first channel, so a traversal's offsets can be read back exactly."""

    def decode(self, z):
        return z[:, :1]


def test_traverse_moves_only_the_groups_channels_by_t_times_std():
    maps = torch.zeros(3, 4, 2, 2) + 0.5
    group = FactorGroup("g", 0, 2)
    direction = torch.tensor([0.6, 0.8])
    decoded = traverse(MapDecoder(), maps * 0 + 0.5, group, direction, 0.1)
    assert decoded.shape == (len(STEPS), 3, 1, 2, 2)
    expected = 0.5 + STEPS * 0.1 * 0.6
    torch.testing.assert_close(decoded[:, 0, 0, 0, 0], expected)
    other = traverse(MapDecoder(), maps, FactorGroup("h", 2, 4), direction, 0.1)
    torch.testing.assert_close(other, torch.full_like(other, 0.5))


def draw_bars(width: torch.Tensor, angle: torch.Tensor) -> torch.Tensor:
    """Anti-aliased bars [N, 1, 32, 32]: ``width`` pixels wide, tops leaning ``angle`` radians
    to the right, centred in the 28x28 middle of the canvas."""
    s = 4
    c = (torch.arange(28 * s) + 0.5) / s
    y, x = c[:, None], c[None, :]
    axis = 14.0 + torch.tan(angle)[:, None, None] * (14.0 - y)
    inside = ((x - axis).abs() <= width[:, None, None] / 2) & ((y - 14.0).abs() <= 9)
    small = inside.float().reshape(-1, 28, s, 28, s).mean(dim=(2, 4))
    return nn.functional.pad(small, (2, 2, 2, 2))[:, None]


class BarModel(nn.Module):
    """A made-up factor-slot model: channel 0 = thickness code, channel 1 = slant code. The
    decoder draws a bar from them; ``mix`` leaks each code into the other factor."""

    def __init__(self, codes: torch.Tensor, mix: float) -> None:
        super().__init__()
        self.codes, self.mix = codes, mix

    def encode(self, x):
        mu = self.codes[: len(x), :, None, None].expand(-1, -1, 2, 2)
        return mu, torch.zeros_like(mu)

    def decode(self, z):
        c = z.mean(dim=(2, 3))
        thick, slant = c[:, 0] + self.mix * c[:, 1], c[:, 1] + self.mix * c[:, 0]
        return draw_bars(2.5 + 0.8 * thick, 0.25 * slant)


@pytest.fixture(scope="module")
def bar_data() -> Dataset:
    g = torch.Generator().manual_seed(3)
    codes = torch.randn(120, 2, generator=g).clamp(-1.5, 1.5)
    images = draw_bars(2.5 + 0.8 * codes[:, 0], 0.25 * codes[:, 1])
    test = Split(images, torch.zeros(120, dtype=torch.long),
                 {"thickness": 0.8 * codes[:, 0], "slant": 0.25 * codes[:, 1]})  # fmt: skip
    return Dataset("bars", "32", test, test), codes


GROUPS = (FactorGroup("thickness", 0, 1), FactorGroup("slant", 1, 2))


def test_traversal_specificity_is_near_one_when_each_slot_draws_only_its_factor(bar_data):
    data, codes = bar_data
    task = TraversalSpecificityTask("traversal", data, GROUPS)
    score = task.evaluate(BarModel(codes, mix=0.0))["traversal_specificity"]
    assert score > 0.8


def test_traversal_specificity_is_near_one_half_when_both_slots_draw_both(bar_data):
    data, codes = bar_data
    task = TraversalSpecificityTask("traversal", data, GROUPS)
    entangled = task.evaluate(BarModel(codes, mix=1.0))["traversal_specificity"]
    separate = task.evaluate(BarModel(codes, mix=0.0))["traversal_specificity"]
    assert 0.3 < entangled < 0.7
    assert entangled < separate - 0.2


def test_traversal_specificity_needs_the_factors_and_a_decoder(bar_data, data):
    with pytest.raises(TaskError, match="needs the measured factors"):
        TraversalSpecificityTask("t", Dataset("x", "32", data.train, Split(
            data.test.images, data.test.labels)), GROUPS)  # fmt: skip
    task = TraversalSpecificityTask("t", bar_data[0], GROUPS)
    with pytest.raises(TaskError, match="needs a factor-slot model"):
        task.evaluate(Readout())


class FactorCode(nn.Module):
    """LATENT = the image's two factors, one per group: a perfectly disentangled code."""

    def forward(self, x):
        left, right = x[..., :16].mean(dim=(1, 2, 3)), x[..., 16:].mean(dim=(1, 2, 3))
        return {ModelOutput.LATENT: torch.stack([(left + right) / 2, left - right], dim=1)}


def test_disentanglement_of_a_code_that_is_its_factors(data):
    groups = (FactorGroup("thickness", 0, 1), FactorGroup("slant", 1, 2))
    task = DisentanglementTask("disentanglement", data, groups, factors=("thickness", "slant"))
    m = task.evaluate(FactorCode())
    assert m["factor_informativeness"] > 0.95  # each group predicts its own factor
    assert m["factor_leakage"] < 0.05  # and not the other one
    assert m["sap"] > 0.9
    assert m["dci_informativeness"] > 0.9
    assert np.isfinite(m["mig"]) and m["mig"] > 0.3

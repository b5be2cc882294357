"""FactorSlotAutoencoder: factor groups, shapes, rebuild from config, width presets, and what
``detach_factor_grad`` does to the decoder's gradient."""

from __future__ import annotations

import pytest
import torch

from acc.model_output import ModelOutput
from acc.models import FactorSlotAutoencoder
from acc.models.factor_slot import DEFAULT_GROUPS, FactorGroup, check_groups


@pytest.mark.parametrize(
    "groups, message",
    [
        ([], "at least one factor group"),
        ([FactorGroup("a", 0, 4), FactorGroup("a", 4, 8)], "distinct"),
        ([FactorGroup("a", 0, 4), FactorGroup("b", 5, 8)], "leaves a gap"),
        ([FactorGroup("a", 0, 4), FactorGroup("b", 3, 8)], "overlaps"),
        ([FactorGroup("a", 1, 4)], "starts at channel 1"),
        ([FactorGroup("a", 0, 0)], "empty or reversed"),
    ],
)
def test_bad_groups_are_refused_with_the_reason(groups, message):
    with pytest.raises(ValueError, match=message):
        check_groups(groups)


def test_groups_may_come_as_dicts_and_must_cover_the_channels_in_order():
    groups = check_groups(
        [{"name": "a", "start": 0, "end": 3}, {"name": "b", "start": 3, "end": 5}]
    )
    assert [g.size for g in groups] == [3, 2]


def test_unknown_width_names_the_valid_presets():
    with pytest.raises(ValueError, match="unknown width preset 'huge'; valid: full, half, small"):
        FactorSlotAutoencoder(width="huge")


def test_shapes_of_every_output():
    torch.manual_seed(0)
    model = FactorSlotAutoencoder(width="small")
    with torch.no_grad():
        out = model(torch.rand(3, 1, 32, 32))
    assert out[ModelOutput.LATENT].shape == (3, 20)
    assert out[ModelOutput.RECONSTRUCTION].shape == (3, 1, 32, 32)
    assert out[ModelOutput.MU].shape == out[ModelOutput.LOGVAR].shape == (3, 20, 8, 8)
    recon = out[ModelOutput.RECONSTRUCTION]
    assert float(recon.min()) >= 0.0 and float(recon.max()) <= 1.0


def test_in_eval_mode_the_latent_is_the_pooled_posterior_mean():
    torch.manual_seed(0)
    model = FactorSlotAutoencoder(width="small").eval()
    x = torch.rand(4, 1, 32, 32)
    out = model(x)
    mu, _ = model.encode(x)
    torch.testing.assert_close(out[ModelOutput.LATENT], mu.mean(dim=(2, 3)), rtol=0, atol=0)


def test_config_rebuilds_the_same_model():
    torch.manual_seed(0)
    groups = (FactorGroup("a", 0, 5), FactorGroup("b", 5, 12))
    model = FactorSlotAutoencoder(1, 32, groups, "small", detach_factor_grad=True).eval()
    config = {k: v for k, v in model.config().items() if k != "class"}
    twin = FactorSlotAutoencoder(**config).eval()
    twin.load_state_dict(model.state_dict())
    x = torch.rand(2, 1, 32, 32)
    assert twin.config() == model.config()
    torch.testing.assert_close(
        twin(x)[ModelOutput.RECONSTRUCTION], model(x)[ModelOutput.RECONSTRUCTION], rtol=0, atol=0
    )


def test_width_presets_scale_the_parameter_count():
    counts = {w: sum(p.numel() for p in FactorSlotAutoencoder(width=w).parameters())
              for w in ("small", "half", "full")}  # fmt: skip
    assert counts["small"] < counts["half"] < counts["full"]
    assert counts["full"] / counts["half"] == pytest.approx(4, rel=0.15)  # channels^2


def test_the_gating_layers_exist_under_their_documented_names():
    names = dict(FactorSlotAutoencoder(width="small").named_modules())
    for name in ("backbone.conv1", "backbone.relu1", "backbone.conv2", "backbone.relu2"):
        assert name in names


def decoder_gradient(detach: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """d(sum of the reconstruction)/dz and the reconstruction, for one fixed model and z."""
    torch.manual_seed(0)
    model = FactorSlotAutoencoder(width="small", detach_factor_grad=detach).eval()
    z = torch.randn(2, 20, 8, 8, requires_grad=True)
    recon = model.decode(z)
    recon.sum().backward()
    return z.grad, recon.detach()


def test_detach_keeps_the_decoded_values_and_stops_the_gradient_into_the_factor_vectors():
    grad_plain, recon_plain = decoder_gradient(detach=False)
    grad_detached, recon_detached = decoder_gradient(detach=True)
    torch.testing.assert_close(recon_detached, recon_plain, rtol=0, atol=1e-6)
    # The factor vector of a channel is its spatial mean: the gradient it receives is the sum
    # of the channel's gradient over positions.
    to_factors_plain = grad_plain.sum(dim=(2, 3))
    to_factors_detached = grad_detached.sum(dim=(2, 3))
    assert float(to_factors_plain.abs().max()) > 1e-3
    assert float(to_factors_detached.abs().max()) < 1e-5
    # The decoder still shapes the spatial pattern around each channel's mean.
    assert float(grad_detached.abs().max()) > 1e-3


def test_detach_leaves_the_probe_gradient_into_the_factor_vectors():
    torch.manual_seed(0)
    model = FactorSlotAutoencoder(width="small", detach_factor_grad=True).train()
    x = torch.rand(4, 1, 32, 32)
    out = model(x)
    out[ModelOutput.LATENT][:, DEFAULT_GROUPS[0].start : DEFAULT_GROUPS[0].end].sum().backward()
    assert float(model.mu.weight.grad[: DEFAULT_GROUPS[0].end].abs().sum()) > 0
    assert float(model.mu.weight.grad[DEFAULT_GROUPS[0].end :].abs().sum()) == 0

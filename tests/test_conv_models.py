"""Conv models: shapes, config round-trip, gating on 4D outputs, and the VAE's gradient paths."""

from __future__ import annotations

import copy

import pytest
import torch

from acc.gradient_gating import attach_competitive_gating
from acc.model_output import ModelOutput
from acc.models import MODELS, ConvAutoencoder, ConvVAE, build_model


def example_input(model: torch.nn.Module, batch: int = 4) -> torch.Tensor:
    """An input the model accepts, read from its config (flat for in_dim, images otherwise)."""
    config = model.config()
    if "in_dim" in config:
        return torch.rand(batch, config["in_dim"])
    return torch.rand(batch, config["in_channels"], config["image_size"], config["image_size"])


@pytest.mark.parametrize("name", sorted(MODELS))
def test_every_registered_model_trains(name):
    torch.manual_seed(0)
    model = MODELS[name]()
    x = example_input(model)
    output = model(x)
    assert output[ModelOutput.RECONSTRUCTION].shape == x.shape
    loss = sum(v.float().pow(2).mean() for v in output.values())
    loss.backward()
    for pname, param in model.named_parameters():
        assert param.grad is not None, f"{name}.{pname} got no gradient"
        assert torch.isfinite(param.grad).all(), f"{name}.{pname} has a non-finite gradient"
        assert param.grad.abs().sum() > 0, f"{name}.{pname} got an all-zero gradient"
    rebuilt = build_model(model.config())
    assert type(rebuilt) is type(model) and rebuilt.config() == model.config()


def test_conv_ae_shapes_and_layers():
    model = ConvAutoencoder(1, 64, 32)
    out = model(torch.rand(3, 1, 32, 32))
    assert out[ModelOutput.LATENT].shape == (3, 64)
    assert out[ModelOutput.RECONSTRUCTION].shape == (3, 1, 32, 32)
    r = out[ModelOutput.RECONSTRUCTION]
    assert (r > 0).all() and (r < 1).all()  # sigmoid output
    modules = dict(model.named_modules())
    assert modules["encoder.conv1"].weight.shape == (32, 1, 3, 3)
    assert modules["encoder.conv2"].weight.shape == (64, 32, 3, 3)
    assert model.to_latent.in_features == 64 * 8 * 8
    assert model.config() == {
        "class": "ConvAutoencoder",
        "in_channels": 1,
        "hidden_dim": 64,
        "image_size": 32,
    }
    assert ConvAutoencoder(1, 8, 28).to_latent.in_features == 64 * 7 * 7  # the plan's 28x28 case


def test_conv_models_reject_bad_input():
    with pytest.raises(ValueError, match="view '32'"):
        ConvAutoencoder()(torch.rand(2, 784))
    with pytest.raises(ValueError, match="multiple of 4"):
        ConvVAE(image_size=30)


def test_vae_eval_latent_is_mu_and_training_samples():
    torch.manual_seed(0)
    model = ConvVAE(1, 16, 32)
    x = torch.rand(5, 1, 32, 32)
    model.eval()
    out = model(x)
    assert torch.equal(out[ModelOutput.LATENT], out[ModelOutput.MU])
    assert out[ModelOutput.LOGVAR].shape == (5, 16)
    model.train()
    torch.manual_seed(1)
    z = model(x)[ModelOutput.LATENT]
    torch.manual_seed(1)
    out = model(x)
    assert not torch.allclose(z, out[ModelOutput.MU])  # training mode samples
    assert torch.equal(z, out[ModelOutput.LATENT])  # same seed, same noise
    std = torch.exp(0.5 * out[ModelOutput.LOGVAR])
    torch.manual_seed(1)
    model.encoder(x)  # no RNG use before the sample
    eps = torch.randn(5, 16)
    torch.testing.assert_close(z, out[ModelOutput.MU] + std * eps)


def expected_scale(
    a: torch.Tensor, gate_strength: float, temperature: float, mode: str
) -> torch.Tensor:
    """DESIGN.md's formula, written out independently of acc.gradient_gating."""
    if mode == "batch":
        strength = a.abs().mean(dim=(0, 2, 3))  # [C]
        mask = a.shape[1] * torch.softmax(strength / temperature, dim=0)
        return ((1 - gate_strength) + gate_strength * mask)[None, :, None, None]
    strength = a.abs().mean(dim=(2, 3))  # [B, C]
    mask = a.shape[1] * torch.softmax(strength / temperature, dim=1)
    return ((1 - gate_strength) + gate_strength * mask)[:, :, None, None]


def capture_output_grad(module: torch.nn.Module, store: dict) -> None:
    """Record a module's output and the gradient that finally reaches it (after any gate)."""

    def hook(_m, _i, out):
        store["a"] = out.detach().clone()
        out.register_hook(lambda g: store.__setitem__("grad", g.clone()))

    module.register_forward_hook(hook)


@pytest.mark.parametrize("mode", ["batch", "sample"])
def test_conv_gating_matches_formula_on_4d_outputs(mode):
    torch.manual_seed(0)
    plain = ConvAutoencoder(1, 16, 32)
    gated = copy.deepcopy(plain)
    attach_competitive_gating(gated, 0.5, {"encoder.conv1": {"gate_strength": 0.7, "mode": mode}})
    seen_plain, seen_gated = {}, {}
    capture_output_grad(plain.encoder.conv1, seen_plain)
    capture_output_grad(gated.encoder.conv1, seen_gated)
    x = torch.rand(6, 1, 32, 32)
    for model in (plain, gated):
        (model(x)[ModelOutput.RECONSTRUCTION] - x).abs().mean().backward()
    a = seen_plain["a"]
    assert a.shape == (6, 32, 16, 16)
    assert torch.equal(a, seen_gated["a"])
    scale = expected_scale(a, 0.7, 0.5, mode)
    assert scale.std() > 1e-3  # the gate really does something here
    torch.testing.assert_close(seen_gated["grad"], seen_plain["grad"] * scale, atol=1e-6, rtol=0)
    # and the weights see exactly that gated gradient
    a_ref = plain.encoder.conv1(x)
    (w_grad,) = torch.autograd.grad(
        a_ref, plain.encoder.conv1.weight, grad_outputs=seen_plain["grad"] * scale
    )
    torch.testing.assert_close(gated.encoder.conv1.weight.grad, w_grad, atol=1e-6, rtol=1e-5)


def test_gate_strength_zero_is_bit_identical_on_conv():
    torch.manual_seed(0)
    plain = ConvAutoencoder(1, 16, 32)
    gated = copy.deepcopy(plain)
    attach_competitive_gating(
        gated,
        1.0,
        {"encoder.conv1": {"gate_strength": 0.0}, "encoder.conv2": {"gate_strength": 0.0}},
    )
    x = torch.rand(4, 1, 32, 32)
    for model in (plain, gated):
        (model(x)[ModelOutput.RECONSTRUCTION] - x).abs().mean().backward()
    for (name, p), q in zip(plain.named_parameters(), gated.parameters(), strict=True):
        assert torch.equal(p.grad, q.grad), name


def vae_grads(model: ConvVAE, x: torch.Tensor) -> dict[str, torch.Tensor]:
    torch.manual_seed(7)  # the same reparameterisation noise for both models
    out = model(x)
    recon = (out[ModelOutput.RECONSTRUCTION] - x).abs().flatten(1).sum(1).mean()
    kl = (
        0.5
        * (out[ModelOutput.MU].pow(2) + out[ModelOutput.LOGVAR].exp() - 1 - out[ModelOutput.LOGVAR])
        .sum(1)
        .mean()
    )
    (recon + 0.05 * kl).backward()
    return {name: p.grad.clone() for name, p in model.named_parameters()}


def test_encoder_gating_leaves_heads_and_decoder_gradients_unchanged():
    torch.manual_seed(0)
    plain = ConvVAE(1, 16, 32)
    gated = copy.deepcopy(plain)
    attach_competitive_gating(
        gated,
        1.0,
        {"encoder.conv1": {"gate_strength": 1.0}, "encoder.conv2": {"gate_strength": 0.5}},
    )
    x = torch.rand(8, 1, 32, 32)
    g_plain, g_gated = vae_grads(plain, x), vae_grads(gated, x)
    for name, grad in g_gated.items():
        assert torch.isfinite(grad).all(), name
        if name.startswith(("mu.", "logvar.", "decoder.")):
            torch.testing.assert_close(grad, g_plain[name], atol=0, rtol=0)
    assert g_gated["mu.weight"].abs().sum() > 0 and g_gated["logvar.weight"].abs().sum() > 0
    # the gate does act upstream: the encoder's conv weights get different gradients
    assert not torch.allclose(g_gated["encoder.conv1.weight"], g_plain["encoder.conv1.weight"])
    assert not torch.allclose(g_gated["encoder.conv2.weight"], g_plain["encoder.conv2.weight"])

"""Competitive gradient gating against the DESIGN.md formula, written out independently here."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from acc.gradient_gating import GateWindow, GatingError, attach_competitive_gating
from acc.model_output import ModelOutput
from acc.models import LinearAutoencoder


def expected_scale(a: torch.Tensor, temperature: float, strength: float, mode: str) -> torch.Tensor:
    """The DESIGN.md formula, computed with explicit loops over channels (float64)."""
    a = a.detach().double()
    b, c = a.shape[:2]
    if mode == "batch":
        s = torch.stack([a[:, ch].abs().mean() for ch in range(c)])  # [C]
        mask = c * torch.exp(s / temperature) / torch.exp(s / temperature).sum()
        scale = (1 - strength) + strength * mask
        return scale.reshape(1, c, *([1] * (a.dim() - 2)))
    rows = []
    for n in range(b):
        s = torch.stack([a[n, ch].abs().mean() for ch in range(c)])
        mask = c * torch.exp(s / temperature) / torch.exp(s / temperature).sum()
        rows.append((1 - strength) + strength * mask)
    return torch.stack(rows).reshape(b, c, *([1] * (a.dim() - 2)))


def grads_of_output(module: nn.Module, x: torch.Tensor, upstream: torch.Tensor, gated: dict | None):
    """Gradient reaching the module's output and the module's weight, with optional gating."""
    captured = {}
    gating = (
        attach_competitive_gating(module_parent := nn.Sequential(module), 1.0, {"0": gated})
        if gated
        else None
    )
    model = module_parent if gated else module
    out = model(x)
    out.register_hook(lambda g: captured.setdefault("grad_out", g))
    captured["out"] = out.detach()
    (out * upstream).sum().backward()
    if gating:
        gating.remove()
    return captured, module.weight.grad.clone()


@pytest.mark.parametrize("mode", ["batch", "sample"])
@pytest.mark.parametrize("kind", ["linear", "conv"])
@pytest.mark.parametrize("temperature,strength", [(1.0, 1.0), (0.5, 0.3), (2.0, 0.75)])
def test_gradients_match_formula(kind, mode, temperature, strength):
    torch.manual_seed(0)
    if kind == "linear":
        layer, x = nn.Linear(10, 6), torch.randn(5, 10)
    else:
        layer, x = nn.Conv2d(2, 4, 3, padding=1), torch.randn(3, 2, 5, 5)
    reference = layer.weight.detach().clone(), layer.bias.detach().clone()
    upstream = torch.randn_like(layer(x))

    layer.zero_grad()
    plain, w_plain = grads_of_output(layer, x, upstream, None)
    layer.zero_grad()
    gated_cfg = {"temperature": temperature, "gate_strength": strength, "mode": mode}
    gated, w_gated = grads_of_output(layer, x, upstream, gated_cfg)
    assert torch.equal(layer.weight.detach(), reference[0])
    assert torch.equal(plain["grad_out"], upstream)

    # the gradient leaving the hook is upstream * scale, scale from the DESIGN.md formula
    scale = expected_scale(plain["out"], temperature, strength, mode)
    want = upstream.double() * scale
    assert torch.allclose(gated["grad_out"].double(), want, atol=1e-6, rtol=0)
    # and the weight gradient is the one that the scaled output gradient produces
    layer.zero_grad()
    layer(x).backward(want.float())
    assert torch.allclose(w_gated, layer.weight.grad, atol=1e-5, rtol=1e-5)  # float32 sums
    assert not torch.allclose(w_gated, w_plain, atol=1e-4)


@pytest.mark.parametrize("mode", ["batch", "sample"])
def test_gated_output_gradient_is_scaled_exactly(mode):
    """Read the gradient flowing *out of* the gated layer (into its input) in a tiny model."""
    torch.manual_seed(1)
    model = LinearAutoencoder(12, 5)
    x = torch.rand(7, 12)
    hidden = model.encoder[0](x)
    upstream = torch.randn(7, 5)
    gating = attach_competitive_gating(
        model, 0.7, {"encoder.0": {"gate_strength": 0.6, "mode": mode}}
    )
    x_req = x.clone().requires_grad_(True)
    (model.encoder[0](x_req) * upstream).sum().backward()
    got = x_req.grad
    scale = expected_scale(hidden, 0.7, 0.6, mode).float()
    want = (upstream * scale) @ model.encoder[0].weight.detach()
    assert torch.allclose(got, want, atol=1e-6)
    gating.remove()


def _train(model: nn.Module, gate: dict | None, steps: int = 20) -> dict:
    torch.manual_seed(3)
    data = torch.rand(steps, 16, 784)
    gating = attach_competitive_gating(model, 1.0, {"encoder.0": gate}) if gate else None
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for batch in data:
        loss = (model(batch)["reconstruction"] - batch).abs().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    if gating:
        gating.remove()
    return {k: v.clone() for k, v in model.state_dict().items()}


def _fresh(seed: int = 0) -> LinearAutoencoder:
    torch.manual_seed(seed)
    return LinearAutoencoder()


def test_gate_strength_zero_is_bit_identical():
    plain = _train(_fresh(), None)
    zero = _train(_fresh(), {"gate_strength": 0.0})
    full = _train(_fresh(), {"gate_strength": 1.0})
    assert all(torch.equal(plain[k], zero[k]) for k in plain)
    assert not torch.equal(plain["encoder.0.weight"], full["encoder.0.weight"])


def test_remove_restores_plain_gradients():
    model = _fresh()
    x = torch.rand(8, 784)

    def grad() -> torch.Tensor:
        model.zero_grad()
        model(x)["reconstruction"].sum().backward()
        return model.encoder[0].weight.grad.clone()

    plain = grad()
    gating = attach_competitive_gating(model, 1.0, {"encoder.0": {"gate_strength": 1.0}})
    gated = grad()
    gating.remove()
    restored = grad()
    assert not torch.allclose(plain, gated)
    assert torch.equal(plain, restored)


def test_no_hook_fires_without_grad():
    model = _fresh()
    gating = attach_competitive_gating(model, 1.0, {"encoder.0": {}})
    with torch.no_grad():
        out = model(torch.rand(4, 784))
    assert not out["latent"].requires_grad
    assert gating.describe()["encoder.0"] == {
        "layer": "encoder.0",
        "module": "Linear",
        "gate_strength": 1.0,
        "temperature": 1.0,
        "mode": "batch",
    }


@pytest.mark.parametrize(
    "config,message",
    [
        ({"temperature": 0.0}, "temperature must be a number > 0 or entropy:H"),
        ({"temperature": -1.0}, "temperature must be a number > 0 or entropy:H"),
        ({"temperature": float("nan")}, "temperature must be a number > 0 or entropy:H"),
        ({"gate_strength": 1.5}, "gate_strength must be in [0, 1]"),
        ({"gate_strength": -0.1}, "gate_strength must be in [0, 1]"),
        ({"mode": "channel"}, "unknown mode 'channel'; valid modes: batch, sample"),
        ({"strength": 1.0}, "unknown gating option(s) ['strength']"),
    ],
)
def test_bad_configs_are_clear_errors(config, message):
    with pytest.raises(GatingError) as err:
        attach_competitive_gating(_fresh(), 1.0, {"encoder.0": config})
    assert message in str(err.value)


def test_unknown_layer_lists_the_layers():
    with pytest.raises(GatingError) as err:
        attach_competitive_gating(_fresh(), 1.0, {"encoder.7": {}})
    assert "unknown layer 'encoder.7'" in str(err.value)
    assert "encoder.0, encoder.1, decoder, decoder.0, decoder.1" in str(err.value)


@pytest.mark.parametrize("mode", ["batch", "sample"])
def test_gate_statistics_are_the_mean_over_training_steps_since_the_last_read(mode):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 4))
    gating = attach_competitive_gating(model, 0.5, {"0": {"gate_strength": 1.0, "mode": mode}})
    batches = [torch.randn(3, 5) for _ in range(3)]
    expected = []
    for x in batches:
        a = model[0](x).detach().double()  # the formula, written out: softmax(mean|a| / T)
        strength = a.abs().mean(dim=0) if mode == "batch" else a.abs()
        p = torch.softmax(strength / 0.5, dim=-1)
        entropy = (-(p * p.log()).sum(-1) / math.log(4)).mean()
        expected.append([float(entropy), float((4 * p.max(dim=-1).values).mean())])
        model(x).sum().backward()
    with torch.no_grad():
        model(batches[0])  # evaluation passes are not training steps
    stats = gating.read_statistics()["0"]
    mean = [sum(e[i] for e in expected) / 3 for i in range(2)]
    assert stats == pytest.approx(mean, abs=1e-6)
    assert gating.read_statistics()["0"] == stats  # no step since: the last window again

    state = gating.state_dict()
    model(batches[1]).sum().backward()
    gating.load_state_dict(state)  # a resume point carries the running sums
    assert gating.read_statistics()["0"] == stats
    gating.remove()


def test_statistics_do_not_change_training():
    torch.manual_seed(1)
    plain, gated = LinearAutoencoder(784, 8), LinearAutoencoder(784, 8)
    gated.load_state_dict(plain.state_dict())
    attach_competitive_gating(gated, 1.0, {"encoder.0": {"gate_strength": 0.0}})
    x = torch.rand(4, 784)
    for model in (plain, gated):
        model(x)[ModelOutput.RECONSTRUCTION].sum().backward()
    assert all(torch.equal(a.grad, b.grad) for a, b in zip(plain.parameters(), gated.parameters()))


def test_gate_window_uniform_one_hot_and_per_image_masks():
    uniform, one_hot = torch.full((8,), 1 / 8), torch.eye(8)[2]
    for p, expected in ((uniform, [1.0, 1.0]), (one_hot, [0.0, 8.0])):
        window = GateWindow()
        window.add(p.clone())
        assert window.read(8) == pytest.approx(expected)
    window = GateWindow()
    window.add(torch.stack([uniform, one_hot]))  # mode sample: one mask per image, averaged
    assert window.read(8) == pytest.approx([0.5, 4.5])
    window.add(torch.tensor([0.5, 0.25, 0.25]))
    entropy = -(0.5 * math.log(0.5) + 2 * 0.25 * math.log(0.25)) / math.log(3)
    assert window.read(3) == pytest.approx([entropy, 1.5])

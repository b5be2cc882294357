"""A gate whose selectivity is set (temperature "entropy:H") and the shuffled control
(DESIGN.md "Control conditions and a gate that acts"), checked against independent numbers."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from acc.gradient_gating import (
    GateConfig,
    GatingError,
    attach_competitive_gating,
    gate_scale,
    parse_temperature,
    probabilities_at_entropy,
)
from acc.recipes import recipe_registry
from acc.recipes.base import experiment_conditions, experiment_hypotheses
from acc.runner import create_run, execute_run
from acc.sweep import SweepError, cell_hypotheses, expand


def entropy_of(p: torch.Tensor) -> torch.Tensor:
    """Normalised entropy of each row, written out directly (float64)."""
    p = p.double()
    return -(torch.special.xlogy(p, p)).sum(-1) / math.log(p.shape[-1])


@pytest.mark.parametrize("target", [0.05, 0.3, 0.5, 0.8, 0.95])
def test_entropy_target_is_met_whatever_the_scale(target):
    torch.manual_seed(0)
    for scale in (1e-3, 1.0, 50.0):  # the layer's activation scale must not matter
        strength = torch.rand(8, 64) * scale  # 8 rows: mode sample's per-image masks
        p = probabilities_at_entropy(strength, target)
        assert torch.allclose(p.sum(-1), torch.ones(8), atol=1e-5)
        assert (entropy_of(p) - target).abs().max() < 0.005
        # the mask is a softmax of strength / T: its order follows the strengths
        assert torch.equal(p.argmax(-1), strength.argmax(-1))


def test_equal_strengths_give_the_uniform_mask():
    p = probabilities_at_entropy(torch.full((16,), 0.7), 0.5)
    assert torch.allclose(p, torch.full((16,), 1 / 16))


@pytest.mark.parametrize(
    "text,value",
    [("entropy:0.5", "entropy:0.5"), (" ENTROPY:.8", "entropy:0.8"), ("2", 2.0), (0.3, 0.3)],
)
def test_temperature_is_a_number_or_an_entropy_target(text, value):
    assert parse_temperature(text) == value


@pytest.mark.parametrize("bad", ["entropy:0", "entropy:1", "entropy:1.5", "entropy:x", "hot",
                                 0, -1.0, float("nan"), float("inf"), True, None])  # fmt: skip
def test_bad_temperatures_say_what_is_valid(bad):
    with pytest.raises(GatingError, match=r"entropy|temperature"):
        parse_temperature(bad)


def test_entropy_target_keeps_the_gate_formula():
    """With the found T, scale = (1 - s) + s * C * softmax(strength / T), as for a fixed T."""
    torch.manual_seed(1)
    a = torch.randn(32, 12, 4, 4)
    config = GateConfig(gate_strength=0.6, temperature="entropy:0.7")
    strength = a.abs().mean(dim=(0, 2, 3))
    p = probabilities_at_entropy(strength, 0.7)
    expected = (0.4 + 0.6 * 12 * p).reshape(1, 12, 1, 1)
    # the gate searches on sum |a| (the scale does not matter), rounded apart from this mean
    # |a| by 1e-7: the two searches' T differ by that much times the mask's sensitivity
    assert torch.allclose(gate_scale(a, config), expected, atol=1e-4)


def shuffled_gradients(seed: int, steps: int, state: dict | None = None):
    """The gradient reaching a gated Linear's output over ``steps`` steps of the shuffled
    control (upstream gradient 1), with the gated scale it permutes; and the gates' state."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 10))
    gating = attach_competitive_gating(
        model, "entropy:0.5", {"0": {"gate_strength": 1.0}}, control="shuffled", seed=seed
    )
    if state is not None:
        gating.load_state_dict(state)
    x = torch.randn(4, 6)
    grads, scales = [], []
    for _ in range(steps):
        out = model(x)
        out.register_hook(lambda g: grads.append(g[0].clone()))
        out.sum().backward()
        scales.append(gate_scale(out.detach(), GateConfig(temperature="entropy:0.5"))[0])
    return grads, scales, gating.state_dict()


def test_shuffled_control_permutes_the_gates_scales_every_step():
    grads, scales, _ = shuffled_gradients(seed=7, steps=6)
    orders = set()
    for grad, scale in zip(grads, scales):
        # the same multiset of scales as the gate's (to float rounding), in another order
        assert torch.allclose(grad.sort().values, scale.sort().values, atol=1e-6)
        orders.add(tuple(grad.argsort().tolist()))
    assert len(orders) > 1  # a new permutation every step, not one fixed order


def test_shuffled_draws_follow_the_seed_and_resume_exactly():
    grads, _, _ = shuffled_gradients(seed=7, steps=6)
    again, _, _ = shuffled_gradients(seed=7, steps=6)
    other, _, _ = shuffled_gradients(seed=8, steps=6)
    assert all(torch.equal(a, b) for a, b in zip(grads, again))
    assert not all(torch.equal(a, b) for a, b in zip(grads, other))
    _, _, state = shuffled_gradients(seed=7, steps=3)
    resumed, _, _ = shuffled_gradients(seed=7, steps=3, state=state)
    assert all(torch.equal(a, b) for a, b in zip(grads[3:], resumed))


def test_unknown_control_is_refused():
    with pytest.raises(GatingError, match="valid controls: shuffled"):
        GateConfig(control="reversed")


def test_controls_add_a_shuffled_condition_and_its_hypotheses():
    recipe = recipe_registry().get("gradient_gating_l1")()
    p = recipe.Params(controls="shuffled", temperature="entropy:0.8")
    conditions = {c.name: c for c in experiment_conditions(recipe, p)}
    assert list(conditions) == ["standard", "gated", "shuffled"]
    assert conditions["shuffled"].gating.control == "shuffled"
    assert conditions["shuffled"].gating.layers == conditions["gated"].gating.layers
    rows = experiment_hypotheses(recipe, p)
    versus = [h for h in rows if h.control == "shuffled"]
    assert len(versus) == len(recipe.hypotheses)  # every "gated vs standard" row, again
    assert len({h.key + h.control for h in rows}) == len(rows)
    with pytest.raises(ValueError, match="unknown control 'bogus'; valid: shuffled"):
        recipe.Params(controls=["bogus"])


def test_a_temperature_axis_mixes_entropy_targets_and_numbers():
    recipe = recipe_registry().get("gradient_gating_l0")
    base = {"steps": 10, "controls": ["shuffled"]}
    expansion = expand(recipe, base, {"temperature": ["entropy:0.5", "entropy:0.8", 1.0]}, {})
    assert [c["temperature"] for c in expansion.cells] == ["entropy:0.5", "entropy:0.8", 1.0]
    p = recipe.Params(**base)
    rows = cell_hypotheses(recipe(), p, expansion.cells)
    shuffled = [h for h in rows if h.control.startswith("shuffled")]
    assert {h.control for h in shuffled} == {
        f"shuffled[temperature={t}]" for t in ("entropy:0.5", "entropy:0.8", 1.0)
    }
    assert all(h.treatment.replace("gated", "shuffled") == h.control for h in shuffled)
    with pytest.raises(SweepError, match="entropy target must be in"):
        expand(recipe, base, {"temperature": ["entropy:2"]}, {})
    with pytest.raises(SweepError, match="controls is not an axis"):
        expand(recipe, base, {"controls": [["shuffled"]]}, {})


def test_measured_gate_entropy_matches_the_target(store, tiny_mnist):
    """A real run: the gate_entropy reported from training equals H to 0.01, for the gated
    condition and its shuffled control (a permutation leaves the mask's entropy alone)."""
    params = {"steps": 30, "seeds": [3], "eval_every": 0, "batch_size": 16,
              "temperature": "entropy:0.6", "controls": "shuffled"}  # fmt: skip
    run_id = create_run(store, "gradient_gating_l1", params, device="cpu", data_dir=tiny_mnist)
    results = execute_run(store, run_id)
    assert results["status"] == "completed"
    for condition in ("gated", "shuffled"):
        [run] = results["conditions"][condition]["runs"]
        for layer in ("conv1", "conv2"):
            assert run["metrics"][f"gate_entropy[{layer}]"] == pytest.approx(0.6, abs=0.01)
    assert {(c["a"], c["b"]) for c in results["comparisons"]} == {
        ("gated", "standard"),
        ("gated", "shuffled"),
    }


def test_a_sweep_with_the_control_gets_a_heatmap_per_pair():
    """Each metric is drawn once against standard and once against the cell's shuffled arm."""
    from rich.console import Console

    from acc.sweep_report import sweep_tables

    def row(b: str, diff: float, verdict: str) -> dict:
        return {"metric": "weight_cosine_sim", "a": "gated", "b": b, "direction": "lower",
                "n": 3, "mean_diff": diff, "ci95": [diff - 0.01, diff + 0.01],
                "verdict": verdict, "adjustment": "fdr_bh"}  # fmt: skip

    def cell(condition: str, t: float, comparisons: list) -> dict:
        return {"setting": "base", "params": {"temperature": t}, "condition": condition,
                "mean": {}, "comparisons": comparisons}  # fmt: skip

    cells = [
        cell("gated", 0.5, [row("standard", -0.2, "supported"),
                            row("shuffled[temperature=0.5]", -0.1, "supported")]),
        cell("shuffled", 0.5, []),
        cell("gated", 2.0, [row("standard", 0.3, "contradicted"),
                            row("shuffled[temperature=2.0]", 0.0, "equivalent")]),
        cell("shuffled", 2.0, []),
    ]  # fmt: skip
    results = {"sweep_id": "s", "recipe": "gradient_gating_l0", "status": "completed",
               "settings": [{"id": "base", "comparisons": []}], "cells": cells,
               "seeds": [1, 2, 3]}  # fmt: skip
    console = Console(width=200, record=True)
    for part in sweep_tables(results):
        console.print(part)
    text = console.export_text()
    assert "weight_cosine_sim (gated − standard)" in text
    assert "weight_cosine_sim (gated − shuffled)" in text
    assert "best for weight_cosine_sim vs shuffled" in text and "-0.1 [-0.11, -0.09] ✓" in text
    assert "+0.3 [+0.29, +0.31] ✗" in text and "+0 [-0.01, +0.01] =" in text

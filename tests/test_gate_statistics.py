"""Gate statistics describe the competition the gradients got: at gate_strength 0 the mask is
not applied, so gate_entropy and gate_max are the uniform scale's (1 and 1), in the periodic
evaluations and the final metrics alike, while a gate that acts reports its mask's."""

from __future__ import annotations

from acc.runner import run_recipe

PARAMS = {"steps": 20, "seeds": [1], "eval_every": 10, "batch_size": 16, "temperature": 0.05}


def _gated(store, data_dir, strength: float) -> tuple[dict, list[dict]]:
    results = run_recipe(
        store, "gradient_gating_l0", {**PARAMS, "gate_strength": strength}, "cpu", data_dir
    )
    [run] = results["conditions"]["gated"]["runs"]
    [branch] = [b for b in store.branches(results["run_id"]) if b["condition"] == "gated"]
    return run["metrics"], store.evals(branch["id"])


def test_strength_0_reports_the_uniform_scale_not_the_idle_mask(store, tiny_mnist):
    metrics, evals = _gated(store, tiny_mnist, 0.0)
    assert (metrics["gate_entropy"], metrics["gate_max"]) == (1.0, 1.0)
    assert [e["step"] for e in evals] == [0, 10, 20]
    trained = [e["metrics"] for e in evals if e["step"] > 0]
    assert [(m["gate_entropy"], m["gate_max"]) for m in trained] == [(1.0, 1.0)] * 2


def test_a_gate_that_acts_reports_its_masks_statistics(store, tiny_mnist):
    metrics, _ = _gated(store, tiny_mnist, 1.0)
    assert metrics["gate_entropy"] < 0.99 and metrics["gate_max"] > 1.01

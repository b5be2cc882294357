"""Recipe gradient_gating_l0 through the runner: paired design, failures, interruption."""

from __future__ import annotations

import pytest
import torch

import acc.branch
from acc.runner import ParamsError, create_run, execute_run, run_recipe

FAST = {"steps": 20, "seeds": [42], "eval_every": 0}


def _final_weights(store, results, condition, seed=42):
    [run] = [r for r in results["conditions"][condition]["runs"] if r["seed"] == seed]
    return store.checkpoints.load_state_dict(run["checkpoint_id"])


def test_conditions_start_from_identical_weights(store):
    results = run_recipe(store, "gradient_gating_l0", {**FAST, "steps": 0, "seeds": [42, 123]})
    standard, gated = (
        _final_weights(store, results, "standard"),
        _final_weights(store, results, "gated"),
    )
    assert all(torch.equal(standard[k], gated[k]) for k in standard)
    other_seed = _final_weights(store, results, "standard", seed=123)
    assert not torch.equal(standard["encoder.0.weight"], other_seed["encoder.0.weight"])
    finals = [c for c in store.checkpoints.of_run(results["run_id"]) if c["tag"] == "final"]
    roots = {c["id"]: c for c in store.checkpoints.of_run(results["run_id"]) if c["tag"] == "init"}
    assert len(finals) == 4 and all(c["parent_id"] in roots for c in finals)
    assert all(roots[c["parent_id"]]["seed"] == c["seed"] for c in finals)


def test_same_batches_zero_gate_strength_trains_identically(store):
    results = run_recipe(store, "gradient_gating_l0", {**FAST, "gate_strength": 0.0})
    standard, gated = (
        _final_weights(store, results, "standard"),
        _final_weights(store, results, "gated"),
    )
    assert all(torch.equal(standard[k], gated[k]) for k in standard)
    full = run_recipe(store, "gradient_gating_l0", FAST)
    s2, g2 = _final_weights(store, full, "standard"), _final_weights(store, full, "gated")
    assert torch.equal(s2["decoder.0.weight"], standard["decoder.0.weight"])  # reproducible
    assert not torch.equal(s2["encoder.0.weight"], g2["encoder.0.weight"])


def test_results_have_every_metric_and_the_periodic_stream(store):
    results = run_recipe(store, "gradient_gating_l0", {**FAST, "eval_every": 10})
    assert results["status"] == "completed"
    metrics = results["conditions"]["gated"]["runs"][0]["metrics"]
    assert set(metrics) == {
        "l1",
        "psnr",
        "weight_cosine_sim",
        "effective_rank",
        "effective_rank_normalized",
        "weight_norm_concentration",
        "activation_sparsity",
        "sparsity_variance",
        "hoyer_sparsity",
        "dead_units",
        "gate_entropy",
        "gate_max",
    }
    assert "gate_entropy" not in results["conditions"]["standard"]["runs"][0]["metrics"]
    assert 0 < metrics["gate_entropy"] <= 1 and 1 <= metrics["gate_max"] <= 64
    assert 0 < metrics["l1"] < 0.5 and 5 < metrics["psnr"] < 40
    assert [c["metric"] for c in results["comparisons"]] == [
        "weight_cosine_sim",
        "activation_sparsity",
        "effective_rank",
        "effective_rank_normalized",
        "hoyer_sparsity",
    ]
    first = results["comparisons"][0]
    assert first | {"n": 1} == first | {
        "metric": "weight_cosine_sim",
        "a": "gated",
        "b": "standard",
        "direction": "lower",
        "hypothesis": "gated < standard",
        "n": 1,
        "ci95": None,
        "p_value": None,  # one seed: no test, so no adjustment either
        "delta": 0.01,
        "verdict": "inconclusive",
        "verdict_note": "needs ≥ 2 seeds",
    }
    branch = store.branches(results["run_id"])[0]
    assert [e["step"] for e in store.evals(branch["id"])] == [0, 10, 20]
    assert results["config"]["optimizer"] == "adam" and results["config"]["device"] == "cpu"


def test_failing_branch_is_recorded_and_others_go_on(store, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("gating exploded")

    monkeypatch.setattr(acc.branch, "attach_competitive_gating", broken)
    results = run_recipe(store, "gradient_gating_l0", {**FAST, "seeds": [1, 2]})
    assert results["status"] == "partial"  # the standard branches completed, the gated failed
    gated = results["conditions"]["gated"]["runs"]
    assert [r["status"] for r in gated] == ["failed", "failed"]
    assert gated[0]["error"] == "RuntimeError: gating exploded"
    assert [r["status"] for r in results["conditions"]["standard"]["runs"]] == ["completed"] * 2
    assert results["comparisons"][0]["n"] == 0


def test_interrupt_keeps_finished_branches(store):
    run_id = create_run(store, "gradient_gating_l0", {**FAST, "seeds": [1, 2]})
    seen = []

    def interrupt_in_second_seed(event):
        seen.append(event)
        if event["type"] == "step" and event["seed"] == 2:
            raise KeyboardInterrupt

    results = execute_run(store, run_id, on_event=interrupt_in_second_seed)
    assert results["status"] == "interrupted"
    statuses = {
        (c, r["seed"]): r["status"] for c, e in results["conditions"].items() for r in e["runs"]
    }
    assert statuses[("standard", 1)] == statuses[("gated", 1)] == "completed"
    assert statuses[("standard", 2)] == "interrupted"
    assert results["conditions"]["standard"]["runs"][0]["checkpoint"]


@pytest.mark.parametrize(
    "params,message",
    [
        ({"steps": -1}, "steps: Input should be greater than or equal to 0"),
        ({"seeds": []}, "seeds: List should have at least 1 item"),
        ({"seeds": ["a"]}, "seeds.0: Input should be a valid integer"),
        ({"seeds": [1, 1]}, "seeds must be distinct"),
        ({"temperature": 0}, "temperature: temperature must be a number > 0 or entropy:H"),
        ({"gate_strength": 1.5}, "gate_strength: Input should be less than or equal to 1"),
        ({"mode": "pixel"}, "mode: Input should be 'batch' or 'sample'"),
        ({"optimizer": "lbfgs"}, "optimizer: Input should be 'adam' or 'sgd'"),
        ({"colour": "red"}, "colour: Extra inputs are not permitted"),
    ],
)
def test_bad_params_are_clear_errors(store, params, message):
    with pytest.raises(ParamsError) as err:
        create_run(store, "gradient_gating_l0", params)
    assert message in str(err.value)
    assert store.list_runs() == []  # nothing was opened

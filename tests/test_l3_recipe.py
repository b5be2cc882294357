"""Level 3 end to end on tiny data: the four conditions train and report every level-3 key, the
measured factors reach the workers, and a run interrupted mid-branch resumes bit-identical
(model, optimizer, probes and RNG states all travel in the resume point)."""

from __future__ import annotations

import math

import torch

from acc.executors.inline import InlineExecutor
from acc.runner import create_run, execute_run
from acc.store import Store

PARAMS = {"steps": 30, "seeds": [1], "eval_every": 10, "batch_size": 8, "width": "small"}
LEVEL3_KEYS = {
    "mig", "dci_disentanglement", "dci_completeness", "dci_informativeness", "sap",
    "factor_informativeness", "factor_leakage", "traversal_specificity",
    "probe_accuracy[digit]", "probe_r2[thickness]", "probe_r2[slant]",
    "kl[digit]", "kl[thickness]", "kl[slant]",
}  # fmt: skip


def _run(store: Store, data_dir, on_event=None) -> dict:
    run_id = create_run(store, "gradient_gating_l3", PARAMS, "cpu", data_dir, checkpoint_every=10)
    return execute_run(store, run_id, InlineExecutor(), on_event=on_event)


def _final_weights(store: Store, results: dict) -> dict:
    return {
        (name, r["seed"]): store.checkpoints.load_state_dict(r["checkpoint_id"])
        for name, entry in results["conditions"].items()
        for r in entry["runs"]
    }


def _same(a, b) -> bool:
    if isinstance(a, list):
        return len(a) == len(b) and all(map(_same, a, b))
    return a == b or (math.isnan(a) and math.isnan(b))


def test_level3_trains_four_conditions_and_resumes_bit_identical(tmp_path, micro_mnist):
    plain_store, resumed_store = Store(tmp_path / "plain"), Store(tmp_path / "resumed")
    plain = _run(plain_store, micro_mnist)
    assert plain["status"] == "completed", plain["error"]
    assert list(plain["conditions"]) == ["standard", "gated", "detach", "gated_detach"]
    metrics = plain["conditions"]["gated_detach"]["runs"][0]["metrics"]
    assert set(metrics) >= LEVEL3_KEYS
    assert 0.0 <= metrics["factor_leakage"] <= 1.0 and 0.0 <= metrics["dci_disentanglement"] <= 1
    assert (
        "gate_entropy[conv1]" in metrics
        and "gate_entropy[conv1]" not in (plain["conditions"]["detach"]["runs"][0]["metrics"])
    )

    def stop_in_the_last_branch(event):
        if event["type"] == "resume_point" and event.get("condition") == "gated_detach":
            raise KeyboardInterrupt

    interrupted = _run(resumed_store, micro_mnist, on_event=stop_in_the_last_branch)
    assert interrupted["status"] == "interrupted"
    resumed = execute_run(resumed_store, interrupted["run_id"], InlineExecutor())
    assert resumed["status"] == "completed", resumed["error"]

    a, b = _final_weights(plain_store, plain), _final_weights(resumed_store, resumed)
    assert a.keys() == b.keys()
    for key in a:
        for name in a[key]:
            assert torch.equal(a[key][name], b[key][name]), (key, name)
    for name, entry in plain["conditions"].items():
        ma, mb = entry["runs"][0]["metrics"], resumed["conditions"][name]["runs"][0]["metrics"]
        assert all(_same(ma[k], mb[k]) for k in ma), name

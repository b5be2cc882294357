"""Sweeps: axes expand into settings x cells, each cell pairs with its setting's standard
branch (trained once per seed and setting), bad axes start nothing, sweeps resume."""

from __future__ import annotations

import json

import pytest
import torch
from typer.testing import CliRunner

from acc.cli import app
from acc.recipes import recipe_registry
from acc.runner import create_sweep, execute_sweep, prepare_sweep
from acc.store import Store
from acc.sweep import SweepError, expand, label, parse_axis

runner = CliRunner()
L0 = recipe_registry().get("gradient_gating_l0")
BASE = {"steps": 6, "seeds": [1, 2], "eval_every": 3, "batch_size": 8}


def _cli(*args):
    return runner.invoke(app, list(args), catch_exceptions=False)


def test_grid_axes_multiply_zip_axes_advance_together_and_gating_axes_make_cells():
    expansion = expand(
        L0,
        {},
        {"temperature": [0.5, 2.0], "gate_strength": [0.5, 1.0], "hidden_dim": [8, 16]},
        {"optimizer": ["adam", "sgd"], "lr": [0.001, 5.0]},
    )
    assert expansion.settings == [
        {"hidden_dim": 8, "optimizer": "adam", "lr": 0.001},
        {"hidden_dim": 8, "optimizer": "sgd", "lr": 5.0},
        {"hidden_dim": 16, "optimizer": "adam", "lr": 0.001},
        {"hidden_dim": 16, "optimizer": "sgd", "lr": 5.0},
    ]
    assert [label(c) for c in expansion.cells] == [
        "temperature=0.5,gate_strength=0.5",
        "temperature=0.5,gate_strength=1.0",
        "temperature=2.0,gate_strength=0.5",
        "temperature=2.0,gate_strength=1.0",
    ]
    gating_zip = expand(L0, {}, {}, {"temperature": [0.5, 2.0], "gate_strength": [0.25, 1.0]})
    assert gating_zip.settings == [{}] and len(gating_zip.cells) == 2
    assert expand(L0, {}, {"lr": [0.1, 0.2]}, {}).cells == []  # no gating axis: no cells
    assert parse_axis("temperature=0.3, 1,2") == ("temperature", [0.3, 1, 2])
    assert parse_axis("mode=batch,sample") == ("mode", ["batch", "sample"])


@pytest.fixture(scope="module")
def swept(tmp_path_factory, tiny_mnist):
    store = Store(tmp_path_factory.mktemp("sweep") / "store")
    sweep_id = create_sweep(
        store,
        "gradient_gating_l0",
        BASE,
        {"temperature": [0.5, 2.0], "gate_strength": [0.0, 1.0]},
        {"optimizer": ["adam", "sgd"], "lr": [0.001, 0.5]},
        device="cpu",
        data_dir=tiny_mnist,
    )
    return store, execute_sweep(store, sweep_id)


def test_a_standard_branch_trains_once_per_seed_and_setting(swept):
    store, results = swept
    assert results["status"] == "completed"
    trained = [b for s in results["settings"] for b in store.branches(s["run_id"])]
    arms = sorted({b["condition"] for b in trained})
    assert len(trained) == 2 * 2 * (1 + 4)  # settings x seeds x (standard + 4 cells)
    assert arms.count("standard") == 1 and len(arms) == 5
    assert all(b["status"] == "completed" for b in trained)
    settings = [s["id"] for s in results["settings"]]
    assert settings == ["optimizer=adam,lr=0.001", "optimizer=sgd,lr=0.5"]
    assert len(results["cells"]) == 8 and {c["condition"] for c in results["cells"]} == {"gated"}
    # each cell names the run's condition it is (the page ticks it into the compare view)
    for cell in results["cells"]:
        assert cell["name"] == f"gated[{label(cell['params'])}]"
        assert cell["name"] in {b["condition"] for b in store.branches(cell["run_id"])}


def test_cells_pair_with_their_settings_standard(swept):
    store, results = swept
    for cell in results["cells"]:
        [setting] = [s for s in results["settings"] if s["id"] == cell["setting"]]
        standard = {r["seed"]: r["metrics"] for r in setting["standard"]["runs"]}
        gated = {r["seed"]: r["metrics"] for r in cell["runs"]}
        row = next(c for c in cell["comparisons"] if c["metric"] == "weight_cosine_sim")
        diffs = [gated[s]["weight_cosine_sim"] - standard[s]["weight_cosine_sim"] for s in (1, 2)]
        assert row["a"] == "gated" and row["b"] == "standard" and row["n"] == 2
        assert row["mean_diff"] == pytest.approx(sum(diffs) / 2, rel=1e-12)
        assert 0 <= cell["mean"]["gate_entropy"] <= 1
    # gate strength 0 is no gating: bit for bit the setting's standard branch (same root, batches)
    zero = next(c for c in results["cells"] if c["params"]["gate_strength"] == 0.0)
    [setting] = [s for s in results["settings"] if s["id"] == zero["setting"]]
    for run, plain in zip(zero["runs"], setting["standard"]["runs"]):
        a = store.checkpoints.load_state_dict(run["checkpoint_id"])
        b = store.checkpoints.load_state_dict(plain["checkpoint_id"])
        assert all(torch.equal(a[k], b[k]) for k in a)


def test_results_json_has_the_design_fields(swept):
    _, results = swept
    assert set(results) >= {"sweep_id", "recipe", "status", "axes", "seeds", "base_params",
                            "settings", "cells"}  # fmt: skip
    assert results["axes"] == {
        "grid": {"temperature": [0.5, 2.0], "gate_strength": [0.0, 1.0]},
        "zip": {"optimizer": ["adam", "sgd"], "lr": [0.001, 0.5]},
    }
    assert results["seeds"] == [1, 2] and results["base_params"]["steps"] == 6
    setting = results["settings"][0]
    assert setting["params"] == {"optimizer": "adam", "lr": 0.001}
    assert set(setting["standard"]) == {"runs", "mean", "std"}
    assert setting["standard"]["runs"][0]["checkpoint"].endswith(".safetensors")
    cell = results["cells"][0]
    assert cell["setting"] == "optimizer=adam,lr=0.001"
    assert cell["params"] == {"temperature": 0.5, "gate_strength": 0.0}
    json.dumps(results)  # plain JSON


@pytest.mark.parametrize(
    "args,message",
    [
        (["--grid", "colour=red,blue"], "unknown parameter 'colour' for gradient_gating_l0; its "
                                        "parameters: steps, seeds"),
        (["--grid", "temperature=0.5,0"], "axis temperature: value 0 is invalid: temperature "
                                          "must be a number > 0"),
        (["--zip", "optimizer=adam,sgd", "--zip", "lr=0.1"], "optimizer has 2, lr has 1"),
        (["--grid", "temperature="], "axis temperature has no values"),
        (["--grid", "seeds=1,2"], "seeds is not an axis"),
        (["--grid", "temperature=0.5", "--grid", "temperature=2"],
         "--grid temperature is given twice ('temperature=0.5' and 'temperature=2'); give all "
         "its values in one: --grid temperature=V1,V2,..."),
        (["--grid", "temperature=1,1"], "axis temperature: 1 is given twice; give each value once"),
        (["--grid", "temperature=1,2,1.0"],
         "axis temperature: 1 and 1.0 are the same value (1.0); give each value once"),
        (["--zip", "optimizer=adam,sgd,adam", "--zip", "lr=0.1,0.1,0.1"],
         "zipped axes (optimizer, lr): optimizer=adam,lr=0.1 is given twice; give each row once"),
        (["--grid", "temperature=1,2", "-p", "temperature=0.5"],
         "temperature is both a parameter of the whole sweep (-p/params) and an axis"),
        (["-p", "temperature=nan", "-p", "temperature=0.5"],
         "-p temperature is given twice ('temperature=nan' and 'temperature=0.5'); give it once"),
        (["-p", "steps=5"], "steps is given twice (-p steps and --steps); give it once"),
        (["--zip", "temperature=1,2", "--zip", "lr=0.1,0.2"], "zipped axes must all be gating"),
        ([f"--grid=lr={','.join(str(0.01 * i) for i in range(1, 21))}",
          f"--grid=temperature={','.join(str(0.1 * i) for i in range(1, 21))}"],
         "this sweep trains 1260 branches (more than 1000); pass --yes"),
    ],
)  # fmt: skip
def test_bad_axes_are_clear_errors_and_start_nothing(tmp_path, tiny_mnist, args, message):
    out = _cli(
        "sweep", "gradient_gating_l0", "--seeds", "1,2,3", "--steps", "0", "--eval-every", "0",
        "--data-dir", str(tiny_mnist), "--store", str(tmp_path), *args,
    )  # fmt: skip
    assert out.exit_code == 2, out.output
    assert message in " ".join(out.output.split())
    store = Store(tmp_path)
    assert store.list_sweeps() == [] and store.list_runs() == []


def test_a_huge_grid_is_refused_from_its_axis_lengths_before_anything_is_expanded(monkeypatch):
    def expanded(*args):
        raise AssertionError("the grid was expanded before its size was checked")

    monkeypatch.setattr("acc.sweep._product", expanded)
    lr = [0.001 * i for i in range(1, 2001)]
    base = {"seeds": [1, 2], "steps": 0}
    large = {"lr": lr[:100], "hidden_dim": list(range(2, 102))}  # 10,000 settings x 2 x 2
    with pytest.raises(SweepError, match="trains 40000 branches .more than 1000.; pass --yes"):
        prepare_sweep("gradient_gating_l0", base, large, {}, device="cpu")
    huge = {"lr": lr, "hidden_dim": list(range(2, 2002))}  # 4 million settings
    for limit in (1000, None):
        with pytest.raises(SweepError, match="trains 16000000 branches; no sweep may train more "
                           "than 100000, even with --yes"):  # fmt: skip
            prepare_sweep("gradient_gating_l0", base, huge, {}, device="cpu", max_branches=limit)
    cells = {"temperature": [0.01 * i for i in range(1, 2001)]}  # x lr: 2000 x (1 + 2000) x 2
    with pytest.raises(SweepError, match="trains 8004000 branches"):
        expand(L0, base, {"lr": lr, **cells}, {})


def test_the_cli_sweeps_shows_lists_and_resumes(tmp_path, tiny_mnist):
    common = ["--store", str(tmp_path), "--data-dir", str(tiny_mnist), "-p", "batch_size=8"]
    out = tmp_path / "sweep.json"
    first = _cli(
        "sweep", "gradient_gating_l0", "--grid", "temperature=0.5,2", "--grid",
        "gate_strength=0.5,1", "--seeds", "1,2", "--steps", "4", "--eval-every", "2",
        "--workers", "2", "--json", str(out), *common,
    )  # fmt: skip
    assert first.exit_code == 0, first.output
    results = json.loads(out.read_text())
    sweep_id = results["sweep_id"]
    text = " ".join(first.output.split())
    assert "weight_cosine_sim · base" in text and "temperature \\ gate_strength" in text
    assert "best for weight_cosine_sim (lower is the hypothesis)" in text
    assert "gate_entropy (1 = uniform mask, 0 = one-hot)" in text
    shown = _cli("show", sweep_id, "--json", "--store", str(tmp_path))
    assert json.loads(shown.output) == results
    assert sweep_id in _cli("sweeps", "--store", str(tmp_path)).output
    done = _cli("sweep", "--resume", sweep_id, "--store", str(tmp_path))
    assert done.exit_code == 0 and "nothing to resume" in done.output
    run_id = results["settings"][0]["run_id"]
    not_a_sweep = _cli("sweep", "--resume", run_id, "--store", str(tmp_path))
    assert not_a_sweep.exit_code == 2 and "is a run, not a sweep" in not_a_sweep.output
    unknown = _cli("sweep", "--resume", "nope", "--store", str(tmp_path))
    assert unknown.exit_code == 2 and sweep_id in " ".join(unknown.output.split())


def test_an_interrupted_sweep_resumes_and_keeps_what_finished(tmp_path, tiny_mnist):
    store = Store(tmp_path)
    sweep_id = create_sweep(
        store, "gradient_gating_l0", {**BASE, "steps": 4}, {"gate_strength": [0.5, 1.0]},
        {}, device="cpu", data_dir=tiny_mnist,
    )  # fmt: skip
    finished = []

    def interrupt_after_two(event):
        if event["type"] == "branch" and event["state"] == "completed":
            finished.append(event)
        if len(finished) == 2 and event["type"] == "step":
            raise KeyboardInterrupt

    assert execute_sweep(store, sweep_id, on_event=interrupt_after_two)["status"] == "interrupted"
    kept = {b["id"]: b["checkpoint_id"] for r in store.sweep_runs(sweep_id)
            for b in store.branches(r["id"]) if b["status"] == "completed"}  # fmt: skip
    assert len(kept) == 2
    out = _cli("sweep", "--resume", sweep_id, "--store", str(tmp_path))
    assert out.exit_code == 0, out.output
    assert "4 of 6 branches to finish" in out.output
    after = {b["id"]: b for r in store.sweep_runs(sweep_id) for b in store.branches(r["id"])}
    assert all(b["status"] == "completed" for b in after.values()) and len(after) == 6
    assert all(after[i]["checkpoint_id"] == ckpt for i, ckpt in kept.items())
    assert store.get_sweep(sweep_id)["status"] == "completed"


def test_prepare_sweep_counts_branches_without_opening_anything(tmp_path):
    plan = prepare_sweep(
        "gradient_gating_l0", {"seeds": [1, 2, 3]},
        {"temperature": [0.3, 0.5, 1, 2, 5], "gate_strength": [0.25, 0.5, 0.75, 1]},
        {"optimizer": ["adam", "sgd"], "lr": [0.001, 5.0]}, device="cpu",
    )  # fmt: skip
    assert plan.branches == 2 * 3 * (1 + 20)  # the plan's sweep: 126 branches
    with pytest.raises(SweepError, match=r"trains 63 branches \(more than 50\)"):
        prepare_sweep("gradient_gating_l0", {"seeds": [1, 2, 3]},
                      {"temperature": [0.3, 0.5, 1, 2, 5], "gate_strength": [0.25, 0.5, 0.75, 1]},
                      {}, device="cpu", max_branches=50)  # fmt: skip


def test_a_sweep_without_gating_axes_compares_each_settings_own_conditions(tmp_path, tiny_mnist):
    out = _cli(
        "sweep", "gradient_gating_l0", "--grid", "lr=0.001,0.01", "--seeds", "1,2", "--steps",
        "3", "--eval-every", "0", "-p", "batch_size=8", "--data-dir", str(tiny_mnist),
        "--store", str(tmp_path), "--json", str(tmp_path / "s.json"),
    )  # fmt: skip
    assert out.exit_code == 0, out.output
    results = json.loads((tmp_path / "s.json").read_text())
    assert results["cells"] == [] and [s["id"] for s in results["settings"]] == [
        "lr=0.001",
        "lr=0.01",
    ]
    setting = results["settings"][0]
    assert set(setting["conditions"]) == {"standard", "gated"}
    assert {c["a"] for c in setting["comparisons"]} == {"gated"}
    text = " ".join(out.output.split())
    # per setting its metrics as rows and its conditions as columns (issue 20, defect 7)
    assert "setting lr=0.01: mean ± std over seeds" in text
    assert "┃ metric ┃ standard ┃ gated ┃" in text and "│ hypotheses │" in text

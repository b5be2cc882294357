"""`acc export` and GET /api/runs/{id}/export: a real small run's numbers as JSON, tidy CSV
and TensorBoard logs, checked against the store (exactly; TensorBoard to float32)."""

from __future__ import annotations

import csv
import io
import json
import math
import os
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import metadata
from typer.testing import CliRunner

from acc.cli import app
from acc.cli.common import write_json as write_results_json
from acc.export import (
    CSV_FILES,
    EVENT_FILE,
    export_run,
    export_zip,
    write_csv,
    write_json,
    write_tensorboard,
)
from acc.jsonable import finite
from acc.results import build_results
from acc.runner import create_run, execute_run
from acc.server import create_app
from acc.status import Status
from acc.store import Store, StoreError

SEEDS = [4, 5]


@pytest.fixture(scope="module")
def real_run(tmp_path_factory):
    """A finished level-0 run: 2 conditions x 2 seeds, 20 steps, evaluations at 0, 10, 20."""
    torch.set_num_threads(1)  # the autouse fixture that does this runs after module fixtures
    root = tmp_path_factory.mktemp("export") / "store"
    store = Store(root)
    run_id = create_run(
        store, "gradient_gating_l0", {"steps": 20, "seeds": SEEDS, "eval_every": 10}, "cpu"
    )
    execute_run(store, run_id)
    store.close()
    return root, run_id


@pytest.fixture
def real_store(real_run):
    store = Store(real_run[0])
    yield store
    store.close()


def _strict_json(data: str | bytes):
    """json.loads that refuses NaN and Infinity (what browsers and most tools do)."""

    def refuse(constant):
        raise ValueError(f"not JSON: {constant}")

    return json.loads(data, parse_constant=refuse)


def _number(text: str) -> float:
    return float(text)


def test_json_export_holds_results_and_every_curve(real_store, real_run, tmp_path):
    _, run_id = real_run
    path = export_run(real_store, run_id, "json", tmp_path)
    assert path == tmp_path / f"{run_id}.json"
    doc = _strict_json(path.read_text())
    assert doc["run"] == json.loads(json.dumps(finite(build_results(real_store, run_id))))
    branches = real_store.branches(run_id)
    assert [(b["condition"], b["seed"]) for b in doc["branches"]] == [
        (b["condition"], b["seed"]) for b in branches
    ]
    for exported, branch in zip(doc["branches"], branches):
        assert exported["status"] == "completed" and exported["steps_done"] == 20
        assert exported["final_metrics"] == branch["metrics"]
        losses = real_store.losses(branch["id"], with_time=True)
        assert exported["losses"]["reconstruction"] == {
            "step": [r["step"] for r in losses],
            "value": [r["value"] for r in losses],
            "time": [r["time"] for r in losses],  # when each point was recorded (issue 20)
        }
        assert exported["losses"]["reconstruction"]["step"][-1] == 20
        evals = real_store.evals(branch["id"], with_time=True)
        assert exported["evals"]["step"] == [e["step"] for e in evals] == [0, 10, 20]
        assert exported["evals"]["time"] == [e["time"] for e in evals]
        for key, values in exported["evals"]["metrics"].items():
            assert values == [e["metrics"].get(key) for e in evals]  # None: not measured
        assert "weight_cosine_sim" in exported["evals"]["metrics"]


def test_csv_export_is_tidy_and_exact(real_store, real_run, tmp_path):
    _, run_id = real_run
    folder = export_run(real_store, run_id, "csv", tmp_path)
    assert folder == tmp_path / f"{run_id}-csv"
    assert sorted(p.name for p in folder.iterdir()) == sorted(CSV_FILES)
    tables = {name: list(csv.DictReader((folder / name).open())) for name in CSV_FILES}
    final = {
        (r["condition"], int(r["seed"]), r["metric"]): _number(r["value"])
        for r in tables["final_metrics.csv"]
    }
    losses, evals = {}, {}
    for r in tables["losses.csv"]:
        losses[(r["condition"], int(r["seed"]), r["task"], int(r["step"]))] = _number(r["value"])
    for r in tables["evals.csv"]:
        evals[(r["condition"], int(r["seed"]), int(r["step"]), r["metric"])] = _number(r["value"])
    assert {r["run_id"] for t in tables.values() for r in t} == {run_id}
    want_final, want_losses, want_evals = {}, {}, {}
    for b in real_store.branches(run_id):
        key = (b["condition"], b["seed"])
        want_final.update({(*key, k): v for k, v in b["metrics"].items()})
        for r in real_store.losses(b["id"]):
            want_losses[(*key, r["task"], r["step"])] = r["value"]
        for e in real_store.evals(b["id"]):
            want_evals.update({(*key, e["step"], k): v for k, v in e["metrics"].items()})
    assert final == want_final  # floats equal exactly: csv holds the shortest round-trip form
    assert losses == want_losses and len(losses) >= 2 * len(SEEDS)
    assert evals == want_evals
    assert ("gated", 4, "gate_entropy") in final and ("standard", 4, "gate_entropy") not in final


def test_the_readme_names_each_csv_files_columns(real_store, real_run, tmp_path):
    """Issue 20, defect 13: the README listed one set of columns for all three files."""
    _, run_id = real_run
    folder = export_run(real_store, run_id, "csv", tmp_path)
    readme = " ".join((Path(__file__).parents[1] / "README.md").read_text().split())
    for name in CSV_FILES:
        header = (folder / name).open().readline().strip().split(",")
        assert f"`{name}` ({', '.join(header)})" in readme, name


def test_tensorboard_export_reads_back(real_store, real_run, tmp_path):
    _, run_id = real_run
    folder = export_run(real_store, run_id, "tensorboard", tmp_path)
    assert folder == tmp_path / f"{run_id}-tensorboard"
    for branch in real_store.branches(run_id):
        directory = folder / branch["condition"] / f"seed_{branch['seed']}"
        assert [p.name for p in directory.iterdir()] == [EVENT_FILE]
        events = EventAccumulator(str(directory), size_guidance={"scalars": 0})
        events.Reload()

        def scalars(tag, events=events):
            return [(e.step, e.value) for e in events.Scalars(tag)]

        losses = real_store.losses(branch["id"])
        assert scalars("loss/reconstruction") == [
            (r["step"], np.float32(r["value"])) for r in losses
        ]
        evals = real_store.evals(branch["id"])
        for key in ("weight_cosine_sim", "effective_rank", "dead_units"):
            assert scalars(f"eval/{key}") == [
                (e["step"], np.float32(e["metrics"][key])) for e in evals
            ]
        for key, value in branch["metrics"].items():
            assert scalars(f"final/{key}") == [(20, np.float32(value))]
        content = events.PluginTagToContent("hparams")
        start = metadata.parse_session_start_info_plugin_data(
            content[metadata.SESSION_START_INFO_TAG]
        )
        hparams = {k: v for k, v in start.hparams.items()}
        assert hparams["condition"].string_value == branch["condition"]
        assert hparams["seed"].number_value == branch["seed"]
        assert hparams["run_id"].string_value == run_id
        assert hparams["recipe"].string_value == "gradient_gating_l0"
        assert hparams["steps"].number_value == 20
        assert hparams["lr"].number_value == pytest.approx(0.001)
        assert hparams["temperature"].number_value == 1.0
        assert "seeds" not in hparams and "data_dir" not in hparams  # lists and None left out
        end = metadata.parse_session_end_info_plugin_data(content[metadata.SESSION_END_INFO_TAG])
        assert end.status == 1  # STATUS_SUCCESS


def _odd_run(store: Store) -> str:
    """A run still open, with what real runs may hold: an infinite loss and PSNR (SQLite
    keeps no NaN), a list-valued metric, a branch that failed and one that has not started."""
    run_id = store.create_run(
        "gradient_gating_l0",
        {"steps": 10, "seeds": [1, 2], "lr": 0.5, "data_dir": None},
        [],
        {"standard": "plain"},
    )
    first = store.plan_branch(run_id, "standard", 1)
    store.start_branch(first)
    store.add_losses(first, 5, {"reconstruction": float("inf")})
    store.add_eval(first, 5, {"psnr": float("inf"), "kl_per_dim": [0.5, 0.25]})
    store.record_metrics(first, {"psnr": float("inf"), "kl_per_dim": [0.5, 0.25], "l1": 0.1})
    store.finish_branch(first, Status.FAILED, 5, error="loss is infinite")
    store.plan_branch(run_id, "standard", 2)
    return run_id


def test_non_finite_and_list_values_in_an_open_run(store, tmp_path):
    run_id = _odd_run(store)
    doc = _strict_json(write_json(store, run_id, tmp_path / "run.json").read_text())
    assert doc["run"]["status"] == "running"
    failed, queued = doc["branches"]
    assert failed["losses"]["reconstruction"]["value"] == [None]
    assert failed["evals"]["metrics"] == {"psnr": [None]}  # list-valued curves left out
    assert failed["final_metrics"] == {"psnr": None, "kl_per_dim": [0.5, 0.25], "l1": 0.1}
    assert failed["error"] == "loss is infinite" and queued["status"] == "queued"
    assert queued["losses"] == {} and queued["evals"] == {"step": [], "time": [], "metrics": {}}

    folder = write_csv(store, run_id, tmp_path / "csv")
    final = list(csv.reader((folder / "final_metrics.csv").open()))[1:]
    assert [r[3:] for r in final] == [
        ["psnr", "inf"],
        ["kl_per_dim[0]", "0.5"],
        ["kl_per_dim[1]", "0.25"],
        ["l1", "0.1"],
    ]
    [loss] = list(csv.DictReader((folder / "losses.csv").open()))
    assert loss["value"] == "inf" and math.isinf(float(loss["value"]))
    evals = list(csv.DictReader((folder / "evals.csv").open()))
    assert [(r["metric"], r["value"]) for r in evals] == [
        ("psnr", "inf"),
        ("kl_per_dim[0]", "0.5"),
        ("kl_per_dim[1]", "0.25"),
    ]

    board = write_tensorboard(store, run_id, tmp_path / "tb")
    events = EventAccumulator(str(board / "standard" / "seed_1"))
    events.Reload()
    assert math.isinf(events.Scalars("loss/reconstruction")[0].value)
    assert events.Scalars("final/l1")[0].value == np.float32(0.1)
    end = metadata.parse_session_end_info_plugin_data(
        events.PluginTagToContent("hparams")[metadata.SESSION_END_INFO_TAG]
    )
    assert end.status == 2  # STATUS_FAILURE
    waiting = EventAccumulator(str(board / "standard" / "seed_2"))
    waiting.Reload()
    content = waiting.PluginTagToContent("hparams")
    assert metadata.SESSION_START_INFO_TAG in content
    assert metadata.SESSION_END_INFO_TAG not in content  # still to run: no end


def test_export_into_a_used_folder_keeps_other_files(real_store, real_run, tmp_path):
    _, run_id = real_run
    mine = tmp_path / "notes.txt"
    mine.write_text("mine")
    branch_dir = tmp_path / f"{run_id}-tensorboard" / "standard" / "seed_4"
    branch_dir.mkdir(parents=True)
    (branch_dir / "keep.txt").write_text("mine too")
    stale = tmp_path / f"{run_id}-csv" / "losses.csv"
    stale.parent.mkdir()
    stale.write_text("old\n")
    for _ in range(2):
        for fmt in ("json", "csv", "tensorboard"):
            export_run(real_store, run_id, fmt, tmp_path)
    assert mine.read_text() == "mine" and (branch_dir / "keep.txt").read_text() == "mine too"
    assert sorted(p.name for p in branch_dir.iterdir()) == [EVENT_FILE, "keep.txt"]
    assert stale.read_text().startswith("run_id,condition,seed,task,step,value\n")
    leftovers = [p for p in tmp_path.rglob(".*")]
    assert not leftovers  # no temporary files or folders left behind


def test_unknown_run_and_format(real_store, real_run, tmp_path):
    with pytest.raises(StoreError, match="no run"):
        export_run(real_store, "20990101-000000-nope-000000", "csv", tmp_path / "out")
    assert not (tmp_path / "out").exists()  # nothing made for a run that is not there
    with pytest.raises(ValueError, match="json, csv, tensorboard"):
        export_run(real_store, real_run[1], "xml", tmp_path / "out")
    with pytest.raises(ValueError, match="json, csv, tensorboard"):
        export_zip(real_store, real_run[1], "parquet")


runner = CliRunner()


def test_cli_export(real_run, tmp_path):
    root, run_id = real_run
    out = tmp_path / "exports"
    for fmt in ("json", "csv", "tensorboard"):
        result = runner.invoke(
            app, ["export", run_id, "--format", fmt, "--out", str(out), "--store", str(root)]
        )
        assert result.exit_code == 0, result.output
        assert run_id in result.output
    assert "tensorboard --logdir" in result.output
    assert _strict_json((out / f"{run_id}.json").read_text())["run"]["run_id"] == run_id
    assert sorted(p.name for p in (out / f"{run_id}-csv").iterdir()) == sorted(CSV_FILES)
    assert (out / f"{run_id}-tensorboard" / "gated" / "seed_5" / EVENT_FILE).is_file()

    bad = runner.invoke(app, ["export", run_id, "--format", "xml", "--store", str(root)])
    assert bad.exit_code == 2
    assert all(name in bad.output for name in ("json", "csv", "tensorboard"))
    missing = runner.invoke(app, ["export", "nope", "--out", str(out), "--store", str(root)])
    assert missing.exit_code != 0 and "no run 'nope'" in missing.output
    nowhere = runner.invoke(app, ["export", run_id, "--store", str(tmp_path / "no-store")])
    assert nowhere.exit_code != 0 and "no store" in nowhere.output
    assert not (tmp_path / "no-store").exists()  # a reading command never makes a store


def test_cli_default_folder(real_run, tmp_path, monkeypatch):
    root, run_id = real_run
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ACC_STORE", str(root))
    result = runner.invoke(app, ["export", run_id, "--format", "csv"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "exports" / f"{run_id}-csv" / "evals.csv").is_file()


def test_http_export(real_run, real_store):
    root, run_id = real_run
    with TestClient(create_app(root, max_concurrent=0)) as client:
        assert "/api/runs/{run_id}/export" in client.get("/openapi.json").json()["paths"]
        url = f"/api/runs/{run_id}/export"
        as_json = client.get(url, params={"format": "json"})
        assert as_json.status_code == 200
        assert as_json.headers["content-type"] == "application/json"
        assert as_json.headers["content-disposition"] == f'attachment; filename="{run_id}.json"'
        doc = _strict_json(as_json.content)
        assert doc["run"]["run_id"] == run_id and len(doc["branches"]) == 2 * len(SEEDS)
        assert client.get(url).content == as_json.content  # json is the default

        for fmt, names in (
            ("csv", sorted(f"{run_id}-csv/{n}" for n in CSV_FILES)),
            (
                "tensorboard",
                sorted(
                    f"{run_id}-tensorboard/{c}/seed_{s}/{EVENT_FILE}"
                    for c in ("standard", "gated")
                    for s in SEEDS
                ),
            ),
        ):
            response = client.get(url, params={"format": fmt})
            assert response.status_code == 200
            assert response.headers["content-type"] == "application/zip"
            assert (
                response.headers["content-disposition"]
                == f'attachment; filename="{run_id}-{fmt}.zip"'
            )
            archive = zipfile.ZipFile(io.BytesIO(response.content))
            assert sorted(archive.namelist()) == names
        csv_zip = zipfile.ZipFile(io.BytesIO(client.get(url, params={"format": "csv"}).content))
        losses = csv_zip.read(f"{run_id}-csv/losses.csv").decode()
        want = "".join(
            f"{run_id},{b['condition']},{b['seed']},{r['task']},{r['step']},{r['value']!r}\n"
            for b in real_store.branches(run_id)
            for r in real_store.losses(b["id"])
        )
        assert losses == "run_id,condition,seed,task,step,value\n" + want

        bad = client.get(url, params={"format": "xml"})
        assert bad.status_code == 422
        assert all(name in bad.text for name in ("json", "csv", "tensorboard"))
        for fmt in ("json", "csv", "tensorboard"):
            missing = client.get("/api/runs/20990101-000000-nope-000000/export?format=" + fmt)
            assert missing.status_code == 404 and "no run" in missing.json()["detail"]


def test_export_zip_of_json(real_store, real_run):
    _, run_id = real_run
    archive = zipfile.ZipFile(io.BytesIO(export_zip(real_store, run_id, "json")))
    assert archive.namelist() == [f"{run_id}.json"]
    assert Path(archive.namelist()[0]).suffix == ".json"


@pytest.mark.parametrize("umask", [0o022, 0o027])
def test_exports_and_results_json_follow_the_umask(real_store, real_run, tmp_path, umask):
    """Issue 20, defect 13: exports were written 0600 whatever the umask (mkstemp's mode)."""
    _, run_id = real_run
    before = os.umask(umask)
    try:
        for fmt in ("json", "csv", "tensorboard"):
            export_run(real_store, run_id, fmt, tmp_path)
        write_results_json(tmp_path / "results.json", {"status": "completed"})
    finally:
        os.umask(before)
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert len(files) == 1 + len(CSV_FILES) + 4 + 1  # 2 conditions x 2 seeds of event files
    assert {oct(p.stat().st_mode & 0o777) for p in files} == {oct(0o666 & ~umask)}


def test_cli_export_into_a_file_is_a_usage_error(real_run, tmp_path):
    root, run_id = real_run
    taken = tmp_path / "taken"
    taken.write_text("a file")
    result = runner.invoke(app, ["export", run_id, "--out", str(taken), "--store", str(root)])
    assert result.exit_code == 2 and "give a folder" in " ".join(result.output.split())

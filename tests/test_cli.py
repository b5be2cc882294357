"""The `acc` command end to end: run, show, list, and the error messages for bad input."""

from __future__ import annotations

import gzip
import json
import shutil
import signal

import pytest
from typer.testing import CliRunner

from acc.cli import app
from acc.store import Store

runner = CliRunner()


def _run(*args: str):
    return runner.invoke(app, list(args), catch_exceptions=False)


def test_run_writes_valid_results_json_and_show_reprints_it(tmp_path):
    out = tmp_path / "results" / "l0.json"
    result = _run(
        "run",
        "gradient_gating_l0",
        "--steps",
        "5",
        "--seeds",
        "42",
        "--eval-every",
        "2",
        "--store",
        str(tmp_path / "store"),
        "--json",
        str(out),
    )
    assert result.exit_code == 0, result.output
    assert "weight_cosine_sim" in result.output and "gated < standard" in result.output
    results = json.loads(out.read_text())
    assert results["recipe"] == "gradient_gating_l0" and results["status"] == "completed"
    assert results["config"]["steps"] == 5 and results["config"]["seeds"] == [42]
    # the star follows acc.best: none on the dead-units tie (0 and 0), in the JSON and the table
    assert "dead_units" not in results["best"]
    [dead_row] = [line for line in result.output.splitlines() if "dead_units" in line]
    assert "*" not in dead_row
    for condition in ("standard", "gated"):
        entry = results["conditions"][condition]
        [seed_run] = entry["runs"]
        assert seed_run["seed"] == 42 and seed_run["steps"] == 5
        assert seed_run["checkpoint"].startswith("/") and seed_run["checkpoint"].endswith(
            ".safetensors"
        )
        assert set(entry["mean"]) >= {
            "l1",
            "psnr",
            "weight_cosine_sim",
            "activation_sparsity",
            "sparsity_variance",
            "effective_rank",
        }
        assert all(v is None for v in entry["std"].values())  # one seed: no std
    for row in results["comparisons"]:
        assert row["ci95"] is None and row["verdict"] == "inconclusive"

    shown = _run("show", results["run_id"], "--json", "--store", str(tmp_path / "store"))
    assert json.loads(shown.output) == results
    table = _run("show", results["run_id"], "--store", str(tmp_path / "store"))
    assert "standard (n=1)" in table.output and "effective_rank" in table.output
    listing = _run("runs", "--store", str(tmp_path / "store"))
    assert results["run_id"] in listing.output


def test_optimizer_and_params_reach_the_run_config(tmp_path):
    out = tmp_path / "r.json"
    result = _run(
        "run",
        "gradient_gating_l0",
        "--steps",
        "2",
        "--seeds",
        "7",
        "--eval-every",
        "0",
        "--optimizer",
        "sgd",
        "--lr",
        "0.05",
        "-p",
        "temperature=0.5",
        "-p",
        "mode=sample",
        "--store",
        str(tmp_path / "s"),
        "--json",
        str(out),
    )
    assert result.exit_code == 0, result.output
    config = json.loads(out.read_text())["config"]
    assert (config["optimizer"], config["lr"], config["temperature"], config["mode"]) == (
        "sgd",
        0.05,
        0.5,
        "sample",
    )


def test_list_shows_recipes_with_defaults():
    result = _run("list")
    assert "gradient_gating_l0" in result.output and "steps=25000" in result.output


@pytest.mark.parametrize(
    "args,message",
    [
        (
            ["run", "no_such_recipe"],
            "unknown recipe 'no_such_recipe'; known recipes: gradient_gating_l0",
        ),
        (["run", "gradient_gating_l0", "--seeds", "1,x"], "seeds must be comma-separated integers"),
        (["run", "gradient_gating_l0", "--steps", "-5"], "greater than or equal to 0"),
        (
            ["run", "gradient_gating_l0", "-p", "temperature=0"],
            "temperature: temperature must be a number > 0",
        ),
        (
            ["run", "gradient_gating_l0", "-p", "gate_strength=2"],
            "gate_strength: Input should be less",
        ),
        (
            ["run", "gradient_gating_l0", "-p", "mode=x"],
            "mode: Input should be 'batch' or 'sample'",
        ),
        (["run", "gradient_gating_l0", "--device", "tpu"], "unknown device 'tpu'"),
        (["run", "gradient_gating_l0", "-p", "novalue"], "--param takes KEY=VALUE"),
        (["show", "nope"], "no store at"),  # reading commands never create one
    ],
)
def test_bad_input_gets_a_clear_error(tmp_path, args, message):
    result = runner.invoke(app, [*args, "--store", str(tmp_path / "store")])
    assert result.exit_code == 2
    assert message in " ".join(result.output.split())


def test_data_dir_without_files_and_unwritable_store(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    result = runner.invoke(
        app, ["run", "gradient_gating_l0", "--data-dir", str(empty), "--store", str(tmp_path / "s")]
    )
    assert result.exit_code == 2 and "lacks train-images-idx3-ubyte" in " ".join(
        result.output.split()
    )
    blocker = tmp_path / "blocker"
    blocker.write_text("")
    result = runner.invoke(app, ["run", "gradient_gating_l0", "--store", str(blocker / "s")])
    assert result.exit_code == 2 and "cannot write to the store" in " ".join(result.output.split())


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        ("truncate", "header says [64, 28, 28] but the file holds 50166 bytes"),
        ("labels", "train labels must be digits 0 to 9; found 200"),
        ("gzip", "cannot be read as IDX"),
    ],
)
def test_bad_idx_data_is_refused_before_a_run_or_sweep_opens(tmp_path, tiny_mnist, damage, message):
    """Issue 20, defect 13: a damaged IDX file was found only by the branches of a run
    already opened (and failed) in the store."""
    data = shutil.copytree(tiny_mnist, tmp_path / "data")
    images, labels = data / "train-images-idx3-ubyte.gz", data / "train-labels-idx1-ubyte.gz"
    if damage == "truncate":
        images.write_bytes(gzip.compress(gzip.decompress(images.read_bytes())[:-10]))
    elif damage == "labels":
        raw = bytearray(gzip.decompress(labels.read_bytes()))
        raw[8 + 5] = 200  # the sixth label, after the 8-byte header
        labels.write_bytes(gzip.compress(bytes(raw)))
    else:
        images.write_bytes(images.read_bytes()[:40])
    common = ["--steps", "1", "--seeds", "1", "--data-dir", str(data), "--store", tmp_path / "s"]
    recipe = "gradient_gating_l0"
    for command in (["run", recipe], ["sweep", recipe, "--grid", "lr=0.1,1"]):
        result = runner.invoke(app, [*command, *map(str, common)])
        assert result.exit_code == 2 and message in " ".join(result.output.split()), result.output
    store = Store(tmp_path / "s")
    assert store.list_runs() == [] and store.list_sweeps() == []


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_ctrl_c_or_kill_keeps_finished_work_and_marks_interrupted(tmp_path, sig, long_cli_run):
    proc, store = long_cli_run(tmp_path / "store")
    proc.send_signal(sig)
    output = proc.communicate(timeout=120)[0].decode()
    assert proc.returncode == 130, output
    run = store.get_run(store.list_runs()[0]["id"])
    assert run["status"] == "interrupted"
    training, waiting = store.branches(run["id"])  # standard trains, gated waits its turn
    assert training["status"] == "interrupted" and training["steps_done"] > 0
    assert waiting["status"] == "interrupted" and waiting["steps_done"] == 0
    assert f"acc run --resume {run['id']}" in output


def test_a_run_killed_outright_is_marked_interrupted_by_the_next_reader(tmp_path, long_cli_run):
    proc, store = long_cli_run(tmp_path / "store")
    proc.kill()  # SIGKILL: no handler runs, the run is left 'running'
    proc.communicate(timeout=60)
    run_id = store.list_runs()[0]["id"]
    assert store.get_run(run_id)["status"] == "running"

    listing = runner.invoke(app, ["runs", "--store", str(tmp_path / "store")])
    assert listing.exit_code == 0 and "interrupted" in listing.output
    run = store.get_run(run_id)
    assert run["status"] == "interrupted" and f"pid {proc.pid}" in run["error"]
    training, waiting = store.branches(run_id)
    assert training["status"] == "interrupted" and training["steps_done"] > 0
    assert waiting["status"] == "interrupted" and waiting["steps_done"] == 0


@pytest.mark.parametrize("command", [["runs"], ["show", "20260101-000000-x-abcdef"], ["sweeps"]])
def test_reading_commands_never_create_a_store(tmp_path, command):
    typo = tmp_path / "typo" / "store"
    result = _run(*command, "--store", str(typo))
    assert result.exit_code == 2
    assert f"no store at {typo}" in " ".join(result.output.split())
    assert not typo.exists() and not typo.parent.exists()


def test_a_json_path_that_cannot_be_written_is_refused_before_training(tmp_path):
    store = tmp_path / "store"
    a_file = tmp_path / "a-file"
    a_file.write_text("not a folder")
    for target, message in (
        (tmp_path, "is a directory; give a file name"),
        (a_file / "results.json", "cannot be written"),
    ):
        result = _run("run", "gradient_gating_l0", "--steps", "2", "--seeds", "1",
                      "--json", str(target), "--store", str(store))  # fmt: skip
        assert result.exit_code == 2 and message in " ".join(result.output.split())
    assert not (store / "acc.sqlite").exists()  # refused before the store was even opened


def test_show_names_an_unknown_run_in_an_existing_store(tmp_path):
    Store(tmp_path).close()
    result = runner.invoke(app, ["show", "nope", "--store", str(tmp_path)])
    assert result.exit_code == 2 and "no run or sweep 'nope'" in " ".join(result.output.split())

"""The results store: runs, branches, series and safetensors checkpoints survive a round trip."""

from __future__ import annotations

import json
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import time

import pytest
import torch
from safetensors import safe_open
from typer.testing import CliRunner

from acc.checkpoints import CheckpointError
from acc.cli import app
from acc.models import LinearAutoencoder, build_model
from acc.runner import run_recipe
from acc.schema import MIGRATIONS
from acc.series import run_series
from acc.store import Store, StoreError, valid_id


def test_run_branch_series_round_trip(store):
    run_id = store.create_run(
        "r", {"steps": 3}, [{"metric": "l1", "expect": "lower"}], {"standard": "plain"}
    )
    branch = store.plan_branch(run_id, "standard", 42)
    assert store.plan_branch(run_id, "standard", 42) == branch  # planned once
    assert store.branches(run_id)[0]["status"] == "queued"
    store.start_branch(branch)
    store.add_losses(branch, 50, {"reconstruction": 0.25})
    store.add_losses(branch, 100, {"reconstruction": 0.125})
    store.add_eval(branch, 100, {"weight_cosine_sim": 0.5})
    store.record_metrics(branch, {"l1": 0.1, "kl_per_dim": [1.0, 2.0]})
    store.finish_branch(branch, "completed", 100)
    store.finish_run(run_id, "completed")

    reopened = Store(store.root)
    run = reopened.get_run(run_id)
    assert run["status"] == "completed" and run["config"] == {"steps": 3}
    assert run["hypotheses"] == [{"metric": "l1", "expect": "lower"}]
    [row] = reopened.branches(run_id)
    assert (row["condition"], row["seed"], row["steps_done"]) == ("standard", 42, 100)
    assert row["metrics"] == {"l1": 0.1, "kl_per_dim": [1.0, 2.0]}
    assert reopened.losses(branch) == [
        {"step": 50, "task": "reconstruction", "value": 0.25},
        {"step": 100, "task": "reconstruction", "value": 0.125},
    ]
    assert reopened.evals(branch) == [{"step": 100, "metrics": {"weight_cosine_sim": 0.5}}]
    assert reopened.list_runs()[0]["id"] == run_id


def test_loss_points_and_evaluations_say_when_they_were_recorded(store):
    """Issue 20, capabilities: the charts' wall-clock and relative-time axes need each point's
    time; the series give it, and a completed branch's final point its finish."""
    run_id = store.create_run("r", {"steps": 100}, [], {"standard": "plain"})
    branch = store.plan_branch(run_id, "standard", 1)
    store.start_branch(branch)
    points = {"step": [10, 20], "losses": {"reconstruction": [0.5, 0.25]}}
    store.add_losses(branch, 20, {"reconstruction": 0.25}, points=points, at=1000.5)
    store.add_eval(branch, 50, {"weight_cosine_sim": 0.5}, at=1002.0)
    before = time.time()
    store.add_losses(branch, 30, {"reconstruction": 0.125})  # now, when not given
    store.record_metrics(branch, {"weight_cosine_sim": 0.25})
    store.finish_branch(branch, "completed", 100)
    times = [r["time"] for r in store.losses(branch, with_time=True)]
    assert times[:2] == [1000.5, 1000.5] and before <= times[2] <= time.time()
    assert store.evals(branch, with_time=True)[0]["time"] == 1002.0
    [b] = run_series(store, run_id)["branches"]
    assert b["losses"]["reconstruction"]["time"] == times
    finished = store.branches(run_id)[0]["finished_at"]
    assert b["evals"] == {
        "step": [50, 100],
        "time": [1002.0, finished],
        "metrics": {"weight_cosine_sim": [0.5, 0.25]},
    }
    assert b["started_at"] == store.branches(run_id)[0]["started_at"]


def test_checkpoint_is_safetensors_with_metadata(store):
    torch.manual_seed(0)
    model = LinearAutoencoder(20, 4)
    run_id = store.create_run("r", {}, [], {})
    root = store.checkpoints.save(
        run_id, model.state_dict(), "init", step=0, metadata={"model": model.config()}, seed=7
    )
    child = store.checkpoints.save(
        run_id,
        model.state_dict(),
        "final",
        step=9,
        metadata={"model": model.config()},
        seed=7,
        parent_id=root.id,
    )
    assert child.path.is_absolute() and child.path.suffix == ".safetensors"
    assert not list(child.path.parent.glob("*.tmp"))  # atomic writes leave no temporaries
    with safe_open(str(child.path), "pt") as f:
        assert set(f.keys()) == set(model.state_dict())
        assert json.loads(f.metadata()["acc"])["parent"] == root.id
    sidecar = json.loads(child.path.with_suffix(".json").read_text())
    assert sidecar["model"] == {"class": "LinearAutoencoder", "in_dim": 20, "hidden_dim": 4}
    rebuilt = build_model(store.checkpoints.get(child.id).metadata["model"])
    rebuilt.load_state_dict(store.checkpoints.load_state_dict(child.id))
    assert all(
        torch.equal(a, b)
        for a, b in zip(rebuilt.state_dict().values(), model.state_dict().values())
    )
    tree = store.checkpoints.of_run(run_id)
    assert [(c["tag"], c["parent_id"]) for c in tree] == [("init", None), ("final", root.id)]


@pytest.mark.parametrize("bad", ["../etc/passwd", "/abs/path", "a/b", "..", "", "x" * 200])
def test_ids_cannot_reach_outside_the_store(store, bad):
    assert not valid_id(bad)
    with pytest.raises(StoreError):
        store.get_run(bad)
    with pytest.raises(CheckpointError):
        store.checkpoints.get(bad)


def test_unwritable_store_is_a_clear_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(StoreError, match="cannot write to the store"):
        Store(blocker / "store")


def test_a_queued_run_starts_and_a_stopped_one_reopens(store):
    run_id = store.create_run("r", {}, [], {}, status="queued")
    assert store.get_run(run_id)["status"] == "queued"
    store.start_run(run_id)
    assert store.get_run(run_id)["status"] == "running"
    store.finish_run(run_id, "interrupted", "killed")
    store.start_run(run_id)  # resuming reopens it
    run = store.get_run(run_id)
    assert run["status"] == "running" and run["error"] is None and run["finished_at"] is None
    with pytest.raises(StoreError, match="queued or running"):
        store.create_run("r", {}, [], {}, status="completed")


def test_runs_whose_process_died_are_closed_and_no_others(store):
    ended = subprocess.Popen([sys.executable, "-c", "pass"])
    ended.wait()
    here = socket.gethostname()
    owners = {
        "dead": f"{here}:{ended.pid}",
        "alive": f"{here}:{os.getpid()}",
        "elsewhere": f"another-host:{ended.pid}",
        "excluded": f"{here}:{ended.pid}",
    }
    ids = {}
    for name, owner in owners.items():
        ids[name] = store.create_run(name, {}, [], {})
        store.start_branch(store.plan_branch(ids[name], "standard", 1))
        store._db.execute("UPDATE runs SET owner = ? WHERE id = ?", (owner, ids[name]))
    queued = store.create_run("queued", {}, [], {}, status="queued")  # no owner yet

    assert store.close_orphaned_runs(exclude={ids["excluded"]}) == [ids["dead"]]
    dead = store.get_run(ids["dead"])
    assert dead["status"] == "interrupted" and f"pid {ended.pid}" in dead["error"]
    assert store.branches(ids["dead"])[0]["status"] == "interrupted"
    for name in ("alive", "elsewhere", "excluded"):
        assert store.get_run(ids[name])["status"] == "running", name
    assert store.get_run(queued)["status"] == "queued"


def test_start_run_records_this_process_as_owner(store):
    run_id = store.create_run("r", {}, [], {})
    store.start_run(run_id)
    assert store.get_run(run_id)["owner"] == f"{socket.gethostname()}:{os.getpid()}"
    assert store.close_orphaned_runs() == []


def test_a_store_from_before_run_owners_gains_the_column(tmp_path):
    root = tmp_path / "old"
    root.mkdir()
    db = sqlite3.connect(root / "acc.sqlite")
    db.execute(
        "CREATE TABLE runs (id TEXT PRIMARY KEY, recipe TEXT NOT NULL, status TEXT NOT NULL, "
        "config TEXT NOT NULL, hypotheses TEXT NOT NULL DEFAULT '[]', conditions TEXT NOT NULL "
        "DEFAULT '{}', error TEXT, created_at REAL NOT NULL, finished_at REAL)"
    )
    db.execute(
        "INSERT INTO runs VALUES ('old-run', 'r', 'running', '{}', '[]', '{}', NULL, 0, NULL)"
    )
    db.commit()
    db.close()
    store = Store(root)
    assert store.get_run("old-run")["owner"] is None
    assert store.close_orphaned_runs() == []  # no owner: never judged
    store.start_run(store.create_run("r", {}, [], {}))


def test_an_unversioned_store_is_migrated_in_place(tmp_path):
    """A store written before schema versioning (user_version 0, no owner/health columns, no
    resume points) opens, upgrades once, and keeps its data."""
    root = tmp_path / "old"
    root.mkdir()
    db = sqlite3.connect(root / "acc.sqlite")
    db.executescript(
        "CREATE TABLE runs (id TEXT PRIMARY KEY, recipe TEXT NOT NULL, status TEXT NOT NULL, "
        "config TEXT NOT NULL, hypotheses TEXT NOT NULL DEFAULT '[]', conditions TEXT NOT NULL "
        "DEFAULT '{}', error TEXT, created_at REAL NOT NULL, finished_at REAL);"
        "CREATE TABLE branches (id INTEGER PRIMARY KEY, run_id TEXT NOT NULL, condition TEXT "
        "NOT NULL, seed INTEGER NOT NULL, status TEXT NOT NULL, steps_done INTEGER NOT NULL "
        "DEFAULT 0, metrics TEXT, checkpoint_id TEXT, error TEXT, started_at REAL, finished_at "
        "REAL, UNIQUE (run_id, condition, seed));"
        "INSERT INTO runs VALUES ('r1', 'x', 'completed', '{}', '[]', '{}', NULL, 0, 1);"
        "INSERT INTO branches (run_id, condition, seed, status, metrics) "
        "VALUES ('r1', 'standard', 1, 'completed', '{\"l1\": 0.5}');"
    )
    db.commit()
    db.close()
    store = Store(root)
    version = store._db.execute("PRAGMA user_version").fetchone()[0]
    assert version == len(MIGRATIONS)
    [branch] = store.branches("r1")
    assert branch["metrics"] == {"l1": 0.5} and branch["health"] is None
    assert store.checkpoints.resume_point(branch["id"]) is None
    Store(root).close()  # opening again changes nothing
    assert store._db.execute("PRAGMA user_version").fetchone()[0] == version


def test_a_store_from_a_newer_acc_is_refused(tmp_path):
    Store(tmp_path / "s").close()
    db = sqlite3.connect(tmp_path / "s" / "acc.sqlite")
    db.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 1}")
    db.commit()
    db.close()
    with pytest.raises(StoreError, match="newer than this ACC knows"):
        Store(tmp_path / "s")


def test_a_copied_store_reads_its_own_checkpoints(tmp_path):
    original = Store(tmp_path / "a")
    model = LinearAutoencoder(20, 4)
    run_id = original.create_run("r", {}, [], {})
    ckpt = original.checkpoints.save(run_id, model.state_dict(), "init", 0, {}, seed=1)
    original.checkpoints.save_resume_point(run_id, 1, 10, b"first")
    original.checkpoints.save_resume_point(run_id, 1, 20, b"second")  # replaces the first
    assert original.checkpoints.resume_point(1) == (20, b"second")
    assert len(list((tmp_path / "a" / "checkpoints" / run_id / "resume").iterdir())) == 1
    original.close()
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    shutil.rmtree(tmp_path / "a")
    copy = Store(tmp_path / "b")
    assert copy.checkpoints.get(ckpt.id).path == (tmp_path / "b").resolve() / ckpt.path.relative_to(
        (tmp_path / "a").resolve()
    )
    assert torch.equal(copy.checkpoints.load_state_dict(ckpt.id)["encoder.0.weight"],
                       model.state_dict()["encoder.0.weight"])  # fmt: skip
    assert copy.checkpoints.resume_point(1) == (20, b"second")
    copy.checkpoints.drop_resume_point(1)
    assert copy.checkpoints.resume_point(1) is None


def test_leftovers_of_killed_checkpoint_writes_are_cleaned_on_the_next_open(tmp_path):
    store = Store(tmp_path)
    run_id = store.create_run("gradient_gating_l0", {"steps": 1}, [], {"standard": ""})
    kept = store.checkpoints.save(run_id, {"w": torch.ones(2)}, "init", 0, {})
    folder = kept.path.parent
    leftovers = [
        folder / ".ck-0123456789ab.safetensors.x1y2.tmp",  # killed inside atomic_write
        folder / ".tmpB553Qi",  # killed inside safetensors' own save_file (older stores)
        folder / "ck-0123456789ab.safetensors",  # written, killed before its row
        folder / "ck-0123456789ab.json",
        folder / "resume" / "branch-1-step-100.safetensors",  # a resume point with no row
    ]
    for path in leftovers:
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(b"x" * 100)
    fresh = folder / ".ck-fedcba987654.safetensors.a.tmp"  # another process writing right now
    fresh.write_bytes(b"x")
    old = time.time() - 3600
    for path in leftovers:
        os.utime(path, (old, old))

    result = CliRunner().invoke(app, ["runs", "--store", str(tmp_path)])
    assert result.exit_code == 0
    assert "removed 5 leftover file(s) of interrupted checkpoint writes" in " ".join(
        result.stderr.split()
    )
    assert not any(path.exists() for path in leftovers)
    assert fresh.exists() and kept.path.exists() and kept.path.with_suffix(".json").exists()
    assert Store(tmp_path).checkpoints.load_state_dict(kept.id)["w"].tolist() == [1.0, 1.0]


def test_the_cleanup_notice_goes_to_stderr_so_show_json_stays_json(tmp_path):
    store = Store(tmp_path)
    run_id = store.create_run("gradient_gating_l0", {"steps": 1}, [], {"standard": ""})
    kept = store.checkpoints.save(run_id, {"w": torch.ones(2)}, "init", 0, {})
    leftovers = [kept.path.parent / ".tmpB553Qi", kept.path.parent / ".ck-1.safetensors.ab.tmp"]
    for leftover in leftovers:
        leftover.write_bytes(b"x" * 100)
        os.utime(leftover, (time.time() - 3600,) * 2)
    result = CliRunner().invoke(app, ["show", run_id, "--json", "--store", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["run_id"] == run_id
    assert "removed 2 leftover file(s)" in result.stderr
    assert not any(leftover.exists() for leftover in leftovers)


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda raw: b"", "is empty (0 bytes): it was truncated"),
        (lambda raw: b"not a database" * 400, "is corrupt (file is not a database)"),
        (lambda raw: raw[: len(raw) // 2], "is corrupt"),
    ],
    ids=["zero-byte", "garbage", "half"],
)
def test_a_damaged_database_is_named_as_such_not_as_unwritable(tmp_path, damage, message):
    store = Store(tmp_path)
    store.create_run("gradient_gating_l0", {"steps": 1}, [], {"standard": ""})
    store.close()
    database = tmp_path / "acc.sqlite"
    for wal in tmp_path.glob("acc.sqlite-*"):
        wal.unlink()
    database.write_bytes(damage(database.read_bytes()))
    result = CliRunner().invoke(app, ["runs", "--store", str(tmp_path)])
    assert result.exit_code == 2
    text = " ".join(result.output.split())
    assert message in text and str(database) in text and "cannot write" not in text


@pytest.fixture(scope="module")
def finished_store(tmp_path_factory, tiny_mnist):
    """A store holding one small finished run, its WAL folded into acc.sqlite."""
    root = tmp_path_factory.mktemp("damaged") / "store"
    store = Store(root)
    params = {"steps": 4, "seeds": [1], "eval_every": 2}
    run_id = run_recipe(store, "gradient_gating_l0", params, "cpu", tiny_mnist)["run_id"]
    store.close()
    return root, run_id


@pytest.mark.parametrize(
    ("table", "commands"), [("runs", ["runs", "show", "export"]), ("losses", ["export"])]
)
def test_damaged_pages_inside_the_database_are_named_by_every_command_that_meets_them(
    finished_store, tmp_path, table, commands
):
    """Issue 20, defect 11: random bytes over a table's page, the file's header intact."""
    root = tmp_path / "store"
    shutil.copytree(finished_store[0], root)
    run_id, database = finished_store[1], root / "acc.sqlite"
    db = sqlite3.connect(database)
    page_size = db.execute("PRAGMA page_size").fetchone()[0]
    pages = db.execute("SELECT rootpage FROM sqlite_master WHERE tbl_name = ?", (table,))
    pages = [row[0] for row in pages.fetchall()]  # the table's and its indexes' (one page each)
    db.close()
    with open(database, "r+b") as raw:
        for page in pages:
            raw.seek((page - 1) * page_size)
            raw.write(bytes(range(256)) * (page_size // 256))
    exports = str(tmp_path / "exports")
    args = {
        "runs": ["runs"],
        "show": ["show", run_id],
        "export": ["export", run_id, "--out", exports],
    }
    for command in commands:
        result = CliRunner().invoke(app, [*args[command], "--store", str(root)])
        text = " ".join(result.output.split())
        assert result.exit_code == 2, (command, text, result.exception)
        assert f"{database} is corrupt (database disk image is malformed)" in text
        assert f"sqlite3 {database} 'PRAGMA integrity_check'" in text

"""Run management: a name and a note per run, list filters, and deleting a run (its rows in
every table and its files on disk) through the store, the HTTP API and the CLI.

One module-scoped store holds two real tiny runs: one completed, one interrupted midway (so
it has a resume point). Tests that change a store work on a copy of it.
"""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from acc.cli import app as cli_app
from acc.db import connect
from acc.results import build_results
from acc.runner import create_run, create_sweep, execute_run, execute_sweep
from acc.schema import MIGRATIONS
from acc.server import create_app
from acc.server.jobstore import JobStore
from acc.status import Status
from acc.store import RunInUse, Store, StoreError

RECIPE = "gradient_gating_l0"
PARAMS = {"steps": 10, "seeds": [1], "eval_every": 5}


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """(store root, completed run id, interrupted run id)."""
    root = tmp_path_factory.mktemp("manage") / "store"
    store = Store(root)
    done = create_run(store, RECIPE, PARAMS, "cpu", name="Baseline", note="first try")
    assert execute_run(store, done)["status"] == "completed"
    stopped = create_run(store, RECIPE, PARAMS, "cpu", checkpoint_every=2)
    steps = []

    def interrupt(event):
        if event["type"] == "step":
            steps.append(event)
            if len(steps) > 1:
                raise KeyboardInterrupt

    assert execute_run(store, stopped, on_event=interrupt)["status"] == "interrupted"
    store.close()
    return root, done, stopped


@pytest.fixture
def copy(made, tmp_path):
    """A private copy of the store: (root, completed run id, interrupted run id)."""
    root, done, stopped = made
    shutil.copytree(root, tmp_path / "store")
    return tmp_path / "store", done, stopped


def rows(root: Path, sql: str, *args) -> list[tuple]:
    db = sqlite3.connect(root / "acc.sqlite")
    try:
        return db.execute(sql, args).fetchall()
    finally:
        db.close()


def open_run(store: Store) -> str:
    """A run that is running now (this process drives it)."""
    run_id = create_run(store, RECIPE, {"steps": 1, "seeds": [1]}, "cpu")
    store.start_run(run_id)
    return run_id


def sweep_run(store: Store) -> tuple[str, str]:
    """(sweep id, a finished run of that sweep)."""
    sweep_id = store.create_sweep(RECIPE, {"settings": []})
    run_id = store.create_run(RECIPE, {}, [], {}, sweep_id=sweep_id, setting="lr=0.1")
    store.finish_run(run_id, Status.COMPLETED)
    store.set_sweep_status(sweep_id, Status.COMPLETED)
    return sweep_id, run_id


# --- store: labels --------------------------------------------------------------------------


def test_labels_are_set_kept_and_cleared_field_by_field(copy):
    root, done, stopped = copy
    store = Store(root)
    assert store.get_run(done)["name"] == "Baseline" and store.get_run(done)["note"] == "first try"
    assert store.get_run(stopped)["name"] is None and store.get_run(stopped)["note"] is None

    run = store.label_run(stopped, name="  lr sweep  ")
    assert run["name"] == "lr sweep" and run["note"] is None  # stripped; the note untouched
    run = store.label_run(stopped, note="line one\nline two\ttabbed")
    assert run["name"] == "lr sweep" and run["note"] == "line one\nline two\ttabbed"
    run = store.label_run(stopped, name="")
    assert run["name"] is None and run["note"] == "line one\nline two\ttabbed"
    assert store.label_run(stopped)["note"] == "line one\nline two\ttabbed"  # nothing given
    store.label_run(stopped, note="   ")
    assert store.get_run(stopped)["note"] is None  # blank clears too

    listed = {r["id"]: r for r in store.list_runs()}
    assert listed[done]["name"] == "Baseline" and listed[done]["note"] == "first try"
    results = build_results(store, done)
    assert results["name"] == "Baseline" and results["note"] == "first try"
    assert build_results(store, stopped)["name"] is None


@pytest.mark.parametrize(
    ("label", "message"),
    [
        ({"name": "x" * 101}, "name is at most 100 characters, not 101"),
        ({"name": "two\nlines"}, "name cannot hold line breaks or control characters"),
        ({"name": "bell\x07"}, "cannot hold"),
        ({"name": "ansi \x1b[31m"}, "cannot hold"),
        ({"name": "sep\u2028arated"}, "cannot hold"),
        ({"note": "y" * 2001}, "note is at most 2000 characters, not 2001"),
        ({"note": "nul \x00"}, "note cannot hold control characters"),
    ],
)
def test_bad_labels_are_refused_with_the_reason(copy, label, message):
    root, done, _ = copy
    store = Store(root)
    with pytest.raises(ValueError, match=message):
        store.label_run(done, **label)
    assert store.get_run(done)["name"] == "Baseline"  # unchanged
    before = len(store.list_runs())
    with pytest.raises(ValueError, match=message):
        create_run(store, RECIPE, {"steps": 1, "seeds": [1]}, "cpu", **label)
    assert len(store.list_runs()) == before  # nothing opened


def test_limits_are_inclusive_and_unknown_runs_are_store_errors(copy):
    root, done, _ = copy
    store = Store(root)
    assert store.label_run(done, name="n" * 100, note="m" * 2000)["name"] == "n" * 100
    with pytest.raises(StoreError, match="no run 'nope'"):
        store.label_run("nope", name="x")
    with pytest.raises(StoreError, match="no run"):
        store.label_run("../etc", note="x")


def test_an_older_store_gains_the_columns_in_place(tmp_path):
    root = tmp_path / "old"
    root.mkdir()
    old = connect(root / "acc.sqlite", MIGRATIONS[:-1])
    old.execute(
        "INSERT INTO runs (id, recipe, status, config, created_at) "
        "VALUES ('r-old', 'x', 'completed', '{}', 1.0)"
    )
    old.close()
    store = Store(root)
    assert store._db.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
    run = store.get_run("r-old")
    assert run["name"] is None and run["note"] is None
    assert store.label_run("r-old", name="kept")["name"] == "kept"


# --- store: listing -------------------------------------------------------------------------


def test_list_filters_by_recipe_status_and_search(copy):
    root, done, stopped = copy
    store = Store(root)
    store.label_run(stopped, note="Tried a HIGHER learning rate")
    ids = lambda **kw: [r["id"] for r in store.list_runs(**kw)]  # noqa: E731
    assert ids() == [stopped, done]  # newest first
    assert ids(recipe=RECIPE) == [stopped, done] and ids(recipe="other") == []
    assert ids(status="completed") == [done] and ids(status=Status.INTERRUPTED) == [stopped]
    assert ids(status="running") == []
    assert ids(search="baseLINE") == [done]  # name, any case
    assert ids(search="higher learning") == [stopped]  # note
    assert ids(search=stopped[-6:].upper()) == [stopped]  # id
    assert ids(search="gradient_gating") == [stopped, done]
    assert ids(search="gradient_gating", limit=1) == [stopped]
    assert ids(search="nothing like it") == []
    assert ids(search="%") == [] and ids(search="_") == [stopped, done]  # literal, not LIKE
    assert ids(status="completed", search="higher") == []
    with pytest.raises(ValueError, match="unknown status 'done'; one of: queued, running"):
        store.list_runs(status="done")


# --- store: deleting ------------------------------------------------------------------------


def test_delete_removes_every_row_and_file_of_the_run_and_nothing_else(copy):
    root, done, stopped = copy
    store = Store(root)
    jobs = JobStore(root)
    job = jobs.create(stopped, RECIPE, PARAMS)
    jobs.add_event(job, {"type": "log", "message": "hello"})
    jobs.finish(job, "interrupted")
    other_job = jobs.create(done, RECIPE, PARAMS)
    jobs.finish(other_job, "completed")

    branch_ids = [b["id"] for b in store.branches(stopped)]
    files = store.checkpoints.files_of_run(stopped)
    resume = [f for f in files if "resume" in f.parts]
    assert len(branch_ids) == 2 and resume and all(f.is_file() for f in files)
    assert rows(root, "SELECT COUNT(*) FROM losses WHERE branch_id = ?", branch_ids[0])[0][0] > 0
    folder = root / "checkpoints" / stopped
    assert folder.is_dir()
    kept = [Path(c["path"]) for c in store.checkpoints.of_run(done)]
    assert len(kept) == 3 and all(p.is_file() for p in kept)

    planned = {"branches": 2, "checkpoints": 1, "files": len(files)}  # the root: no finals
    assert store.delete_run(stopped, dry_run=True) == planned
    assert store.get_run(stopped)  # a dry run deletes nothing
    files[1].unlink()  # a file already gone is fine
    deleted = store.delete_run(stopped)
    assert deleted == {"branches": 2, "checkpoints": 1, "files": len(files) - 1}
    assert not any(f.exists() for f in files) and not folder.exists()

    marks = ", ".join("?" for _ in branch_ids)
    for table in ("losses", "evals", "resume_points"):
        assert rows(root, f"SELECT * FROM {table} WHERE branch_id IN ({marks})", *branch_ids) == []
    for table in ("branches", "checkpoints", "jobs"):
        assert rows(root, f"SELECT * FROM {table} WHERE run_id = ?", stopped) == []
    assert rows(root, "SELECT * FROM job_events WHERE job_id = ?", job) == []
    assert rows(root, "SELECT * FROM runs WHERE id = ?", stopped) == []
    with pytest.raises(StoreError, match="no run"):
        store.get_run(stopped)
    with pytest.raises(StoreError, match="no run"):
        store.delete_run(stopped)

    # the other run is whole: rows, files, results, loadable weights, its job
    assert [r["id"] for r in store.list_runs()] == [done]
    assert build_results(store, done)["status"] == "completed"
    for ckpt in store.checkpoints.of_run(done):
        assert store.checkpoints.load_state_dict(ckpt["id"])
    assert jobs.get(other_job)["run_id"] == done
    assert (root / "checkpoints").is_dir()


def test_delete_leaves_files_outside_the_store_alone(copy, tmp_path):
    """A row that names an absolute path elsewhere (a copied store's old rows) is not ours."""
    root, done, _ = copy
    store = Store(root)
    outside = tmp_path / "elsewhere.safetensors"
    outside.write_bytes(b"not ours")
    [first, *_] = store.checkpoints.of_run(done)
    with sqlite3.connect(root / "acc.sqlite") as db:
        db.execute("UPDATE checkpoints SET path = ? WHERE id = ?", (str(outside), first["id"]))
    deleted = store.delete_run(done)
    assert deleted["checkpoints"] == 3 and deleted["files"] == 4
    assert outside.read_bytes() == b"not ours"


def test_delete_is_refused_while_open_with_an_open_job_or_in_a_sweep(copy):
    root, done, _ = copy
    store = Store(root)
    running = open_run(store)
    with pytest.raises(RunInUse, match=f"run {running} is running: cancel it first"):
        store.delete_run(running)
    store.queue_run(running)
    with pytest.raises(RunInUse, match="is queued: cancel it first"):
        store.delete_run(running, dry_run=True)
    assert store.get_run(running)["status"] == "queued"

    sweep_id, in_sweep = sweep_run(store)
    with pytest.raises(RunInUse, match=f"part of sweep {sweep_id}"):
        store.delete_run(in_sweep)
    assert store.get_run(in_sweep)

    job = JobStore(root).create(done, RECIPE, PARAMS)
    with pytest.raises(RunInUse, match=f"job {job} is queued: cancel it first"):
        store.delete_run(done)
    assert all(Path(c["path"]).is_file() for c in store.checkpoints.of_run(done))
    assert isinstance(RunInUse("x"), StoreError)


def test_a_read_only_store_refuses_labels_and_deletes(made):
    root, done, _ = made
    store = Store.read_only(root)
    with pytest.raises(sqlite3.OperationalError):
        store.label_run(done, name="x")
    with pytest.raises(sqlite3.OperationalError):
        store.delete_run(done)
    assert store.get_run(done)["name"] == "Baseline"
    assert all(Path(c["path"]).is_file() for c in store.checkpoints.of_run(done))
    store.close()


# --- HTTP -----------------------------------------------------------------------------------


def test_http_label_filter_and_delete(copy):
    root, done, stopped = copy
    store = Store(root)
    running = open_run(store)
    _, in_sweep = sweep_run(store)
    with TestClient(create_app(root, max_concurrent=0)) as c:
        patched = c.patch(f"/api/runs/{stopped}", json={"name": "Second"})
        assert patched.status_code == 200, patched.text
        summary = patched.json()
        assert summary["id"] == stopped and summary["name"] == "Second"
        assert summary["note"] is None and summary["status"] == "interrupted"
        assert c.patch(f"/api/runs/{stopped}", json={"note": "a\nb"}).json()["name"] == "Second"
        cleared = c.patch(f"/api/runs/{stopped}", json={"name": None}).json()
        assert cleared["name"] is None and cleared["note"] == "a\nb"
        assert c.patch(f"/api/runs/{stopped}", json={}).json()["note"] == "a\nb"
        assert c.patch(f"/api/runs/{stopped}", json={"note": ""}).json()["note"] is None
        assert c.get(f"/api/runs/{done}").json()["name"] == "Baseline"

        for body in (
            {"name": "x" * 101},
            {"note": "x" * 2001},
            {"name": "a\nb"},
            {"name": 5},
            {"colour": "red"},
            [],
        ):
            bad = c.patch(f"/api/runs/{stopped}", json=body)
            assert bad.status_code == 422, (body, bad.text)
        assert "line breaks" in str(c.patch(f"/api/runs/{done}", json={"name": "a\nb"}).json())
        assert c.patch("/api/runs/nope", json={"name": "x"}).status_code == 404
        assert c.patch("/api/runs/..%2Fx", json={"name": "x"}).status_code == 404

        listed = lambda **q: [r["id"] for r in c.get("/api/runs", params=q).json()]  # noqa: E731
        assert set(listed()) == {done, stopped, running, in_sweep}
        assert c.get("/api/runs").json()[-1]["name"] == "Baseline"
        assert listed(q="BASELINE") == [done] and listed(q=stopped) == [stopped]
        assert listed(status="completed") == [in_sweep, done]
        assert listed(status="completed", q="base") == [done]
        assert listed(recipe="nope") == [] and len(listed(recipe=RECIPE)) == 4
        bad_status = c.get("/api/runs", params={"status": "done"})
        assert bad_status.status_code == 422 and "'interrupted'" in bad_status.text
        assert c.get("/api/runs", params={"q": "x" * 201}).status_code == 422

        refused = c.delete(f"/api/runs/{running}")
        assert refused.status_code == 409 and "cancel it first" in refused.json()["detail"]
        in_use = c.delete(f"/api/runs/{in_sweep}")
        assert in_use.status_code == 409 and "part of sweep" in in_use.json()["detail"]
        assert c.delete("/api/runs/nope").status_code == 404

        files = store.checkpoints.files_of_run(done)
        assert files and all(f.is_file() for f in files)
        gone = c.delete(f"/api/runs/{done}")
        assert gone.status_code == 200, gone.text
        assert gone.json() == {"deleted": done, "branches": 2, "checkpoints": 3, "files": 6}
        assert not any(f.exists() for f in files)
        assert c.get(f"/api/runs/{done}").status_code == 404
        assert c.delete(f"/api/runs/{done}").status_code == 404
        assert done not in listed()
        assert c.get(f"/api/runs/{stopped}/checkpoints").status_code == 200

        spec = c.get("/openapi.json").json()
        assert {"get", "patch", "delete"} <= set(spec["paths"]["/api/runs/{run_id}"])
        assert {"RunLabel", "RunDeleted"} <= set(spec["components"]["schemas"])


# --- CLI ------------------------------------------------------------------------------------

runner = CliRunner()


def acc(*args: str, input: str | None = None):
    return runner.invoke(cli_app, list(args), input=input, catch_exceptions=False)


def flat(output: str) -> str:
    return " ".join(output.split())


def test_cli_label_runs_show_and_delete(copy):
    root, done, stopped = copy
    s = ("--store", str(root))

    assert acc("label", stopped, *s).exit_code == 2  # nothing to set
    labelled = acc("label", stopped, "--name", "[red]tricky", "--note", "tried sgd", *s)
    assert labelled.exit_code == 0, labelled.output
    assert "[red]tricky" in labelled.output and "tried sgd" in labelled.output
    bad = acc("label", stopped, "--name", "x" * 101, *s)
    assert bad.exit_code == 2 and "at most 100 characters" in flat(bad.output)
    unknown = acc("label", "nope", "--name", "x", *s)
    assert unknown.exit_code == 2 and "no run 'nope'" in flat(unknown.output)

    listing = acc("runs", *s)
    assert listing.exit_code == 0 and "[red]tricky" in listing.output
    assert "Baseline" in listing.output and done in listing.output
    found = acc("runs", "--search", "SGD", *s).output
    assert stopped in found and done not in found
    assert done in acc("runs", "--status", "completed", *s).output
    assert stopped not in acc("runs", "--status", "completed", *s).output
    assert done not in acc("runs", "--recipe", "other", *s).output
    wrong = acc("runs", "--status", "done", *s)
    assert wrong.exit_code == 2 and "one of: queued, running" in flat(wrong.output)

    shown = acc("show", done, *s)
    assert "Baseline" in shown.output and "first try" in shown.output

    kept = acc("delete", done, *s, input="n\n")
    assert kept.exit_code == 1 and "2 branches, 3 checkpoints, 6 files?" in flat(kept.output)
    assert "(Baseline)" in kept.output
    files = Store(root).checkpoints.files_of_run(done)
    assert all(f.is_file() for f in files)
    gone = acc("delete", done, *s, input="y\n")
    assert gone.exit_code == 0, gone.output
    assert f"deleted run {done}: 2 branches, 3 checkpoints, 6 files" in flat(gone.output)
    assert not any(f.exists() for f in files)
    assert done not in acc("runs", *s).output
    assert acc("delete", done, "--yes", *s).exit_code == 2


def test_cli_delete_refuses_an_open_run_and_a_sweep_run(copy):
    root, _, _ = copy
    store = Store(root)
    running = open_run(store)
    sweep_id, in_sweep = sweep_run(store)
    refused = acc("delete", running, "--yes", "--store", str(root))
    assert refused.exit_code == 2 and "is running: cancel it first" in flat(refused.output)
    in_use = acc("delete", in_sweep, "--store", str(root))  # refused before asking
    assert in_use.exit_code == 2 and f"part of sweep {sweep_id}" in flat(in_use.output)
    assert f"deleted with their sweep (acc delete {sweep_id})" in flat(in_use.output)
    assert store.get_run(running) and store.get_run(in_sweep)


def test_cli_write_commands_never_create_a_store(tmp_path):
    typo = tmp_path / "typo" / "store"
    for command in (["label", "r-1", "--name", "x"], ["delete", "r-1", "--yes"]):
        result = acc(*command, "--store", str(typo))
        assert result.exit_code == 2 and f"no store at {typo}" in flat(result.output)
    bad = acc("run", RECIPE, "--steps", "1", "--name", "a\tb", "--store", str(typo))
    assert bad.exit_code == 2 and "cannot hold" in flat(bad.output)
    assert not typo.parent.exists()


def test_cli_run_takes_a_name_and_a_note(copy):
    root, _, _ = copy
    s = ("--store", str(root))
    result = acc("run", RECIPE, "--steps", "2", "--seeds", "3", "--eval-every", "0",
                 "--name", "from the cli", "--note", "quick check", *s)  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "from the cli" in result.output and "quick check" in result.output
    [run] = Store(root).list_runs(search="from the cli")
    assert run["note"] == "quick check" and run["status"] == "completed"


# --- sweeps ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def swept_store(tmp_path_factory):
    """(store root, a completed sweep of two settings x two cells, a completed lone run)."""
    root = tmp_path_factory.mktemp("sweep-delete") / "store"
    store = Store(root)
    params = {"steps": 4, "seeds": [1], "eval_every": 0}
    grid = {"temperature": [0.5, 2.0], "lr": [0.001, 0.01]}
    sweep_id = create_sweep(store, RECIPE, params, grid, {}, device="cpu")
    assert execute_sweep(store, sweep_id)["status"] == "completed"
    alone = create_run(store, RECIPE, params, "cpu")
    assert execute_run(store, alone)["status"] == "completed"
    store.close()
    return root, sweep_id, alone


@pytest.fixture
def swept(swept_store, tmp_path):
    root, sweep_id, alone = swept_store
    shutil.copytree(root, tmp_path / "store")
    return tmp_path / "store", sweep_id, alone


def test_a_sweep_is_deleted_with_its_runs_from_the_cli(swept):
    """Issue 20, defect 13: `acc delete SWEEP` said "no run"; a sweep could not be deleted."""
    root, sweep_id, alone = swept
    s = ("--store", str(root))
    store = Store(root)
    runs = [r["id"] for r in store.sweep_runs(sweep_id)]
    files = [f for run in runs for f in store.checkpoints.files_of_run(run)]
    assert len(runs) == 2 and files and all(f.is_file() for f in files)
    JobStore(root).finish(JobStore(root).create(sweep_id, RECIPE, {}, sweep_id), "completed", None)
    kept = acc("delete", sweep_id, *s, input="n\n")
    # 2 settings x (standard + 2 cells) x 1 seed; a checkpoint per branch plus each root
    assert kept.exit_code == 1 and f"delete sweep {sweep_id}: 2 runs, 6 branches" in flat(
        kept.output
    )
    assert all(f.is_file() for f in files)
    gone = acc("delete", sweep_id, *s, input="y\n")
    assert gone.exit_code == 0, gone.output
    assert f"deleted sweep {sweep_id}: 2 runs, 6 branches" in flat(gone.output)
    assert not any(f.exists() for f in files)
    for table, column in (("runs", "id"), ("branches", "run_id"), ("checkpoints", "run_id")):
        assert rows(root, f"SELECT COUNT(*) FROM {table} WHERE {column} IN (?, ?)", *runs) == [(0,)]
    assert rows(root, "SELECT COUNT(*) FROM sweeps") == [(0,)]
    assert rows(root, "SELECT COUNT(*) FROM jobs") == [(0,)]
    assert [r["id"] for r in Store(root).list_runs()] == [alone]  # the lone run is whole
    assert build_results(Store(root), alone)["status"] == "completed"
    missing = acc("delete", sweep_id, "--yes", *s)
    assert missing.exit_code == 2 and f"no run or sweep {sweep_id!r}" in flat(missing.output)


def test_an_open_sweep_is_not_deleted_and_http_deletes_a_finished_one(swept):
    root, sweep_id, _ = swept
    store = Store(root)
    [first, _] = [r["id"] for r in store.sweep_runs(sweep_id)]
    store.set_sweep_status(sweep_id, Status.RUNNING)
    with pytest.raises(RunInUse, match=f"sweep {sweep_id} is running: cancel it first"):
        store.delete_sweep(sweep_id)
    refused = acc("delete", sweep_id, "--yes", "--store", str(root))
    assert refused.exit_code == 2 and "is running: cancel it first" in flat(refused.output)
    store.set_sweep_status(sweep_id, Status.COMPLETED)
    store.queue_run(first)
    with pytest.raises(RunInUse, match=f"sweep {sweep_id}'s run {first} is queued"):
        store.delete_sweep(sweep_id, dry_run=True)
    store.finish_run(first, Status.COMPLETED)
    with TestClient(create_app(root, max_concurrent=0)) as c:
        job = c.post(f"/api/sweeps/{sweep_id}/resume")  # nothing to resume: 409, no job
        assert job.status_code == 409
        deleted = c.delete(f"/api/sweeps/{sweep_id}")
        assert deleted.status_code == 200, deleted.text
        body = deleted.json()
        assert body["deleted"] == sweep_id and body["runs"] == 2 and body["branches"] == 6
        assert body["checkpoints"] >= 6 and body["files"] >= 12
        assert c.get(f"/api/sweeps/{sweep_id}").status_code == 404
        assert c.delete(f"/api/sweeps/{sweep_id}").status_code == 404
        assert c.get(f"/api/runs/{first}").status_code == 404

"""The results store: SQLite (WAL) for runs, branches, losses and evaluations; safetensors
checkpoints on disk (``CheckpointStore``). It is the hub: a run started from the CLI is
visible to the dashboard. Only the process that drives a run writes it (the CLI or the
server); worker processes send their events and results to that process.

Layout under the store directory (default ``./acc-store``, or ``$ACC_STORE``, or ``--store``):

    acc.sqlite                                   runs, branches, losses, evals, checkpoints, jobs
    checkpoints/<run_id>/<ckpt_id>.safetensors   the model's state_dict, same key names
    checkpoints/<run_id>/<ckpt_id>.json          its metadata (also in the safetensors header)
    checkpoints/<run_id>/resume/                 each unfinished branch's newest resume point

Every file is written to a temporary name and renamed into place, so a crash never leaves a
half-written checkpoint; every database write is one transaction.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import sqlite3
import tempfile
import time
import unicodedata
from pathlib import Path

from acc.checkpoints import Checkpoint, CheckpointStore
from acc.db import SchemaTooNew, connect, connect_read_only, transaction
from acc.ids import valid_id
from acc.schema import MIGRATIONS
from acc.status import OPEN, Status

DEFAULT_STORE = "acc-store"


MAX_NAME, MAX_NOTE = 100, 2000  # characters of a run's name and note


class StoreError(ValueError):
    """A store that cannot be used, or an id that is not in it."""


class RunInUse(StoreError):
    """A run or sweep that cannot be deleted now: it (or its job) is queued or running, or
    the run is a setting of a sweep (deleted with its sweep)."""


def default_store_dir() -> Path:
    return Path(os.environ.get("ACC_STORE") or DEFAULT_STORE)


def database_problem(database: Path, exc: sqlite3.DatabaseError) -> str:
    """What a store database that failed under a read or write means, and what to do: corrupt
    (a damaged page, a truncated or overwritten file), or unusable now (locked, disk full)."""
    if isinstance(exc, sqlite3.OperationalError):
        return f"the store's database {database} cannot be used now: {exc}"
    return (
        f"the store's database {database} is corrupt ({exc}); check it with "
        f"`sqlite3 {database} 'PRAGMA integrity_check'` and restore it from a backup"
    )


class Store:
    def __init__(self, root: str | Path | None = None) -> None:
        self.root = Path(root) if root is not None else default_store_dir()
        database = self.root / "acc.sqlite"
        if database.is_file() and database.stat().st_size == 0:
            raise StoreError(
                f"the store's database {database} is empty (0 bytes): it was truncated, not "
                "created empty; restore it from a backup, or move it aside to start a new store"
            )
        try:
            (self.root / "checkpoints").mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=self.root, prefix=".probe-"):
                pass  # fail now, with a clear message, rather than at the first checkpoint
            self._db = connect(database, MIGRATIONS)
        except SchemaTooNew as exc:
            raise StoreError(f"{self.root}: {exc}") from exc
        except sqlite3.DatabaseError as exc:
            if isinstance(exc, sqlite3.OperationalError):  # locked, read-only, no space...
                raise StoreError(
                    f"cannot write to the store at {self.root}: {exc}; "
                    "pass --store DIR (or set ACC_STORE) to a writable directory"
                ) from exc
            raise StoreError(database_problem(database, exc)) from exc
        except (OSError, sqlite3.Error) as exc:
            raise StoreError(
                f"cannot write to the store at {self.root}: {exc}; "
                "pass --store DIR (or set ACC_STORE) to a writable directory"
            ) from exc
        self.checkpoints = CheckpointStore(self.root, self._db)

    @classmethod
    def read_only(cls, root: str | Path) -> Store:
        """A store this process may not write (read-only media, another user's folder): runs,
        sweeps and checkpoints can be read; anything that writes fails."""
        store = cls.__new__(cls)
        store.root = Path(root)
        database = store.root / "acc.sqlite"
        try:
            store._db = connect_read_only(database)
            version = int(store._db.execute("PRAGMA user_version").fetchone()[0])
        except sqlite3.Error as exc:
            if isinstance(exc, sqlite3.DatabaseError) and not isinstance(
                exc, sqlite3.OperationalError
            ):
                raise StoreError(database_problem(database, exc)) from exc
            raise StoreError(f"cannot read the store at {store.root}: {exc}") from exc
        if version != len(MIGRATIONS):
            raise StoreError(
                f"the read-only store at {store.root} has schema version {version}, this ACC "
                f"reads version {len(MIGRATIONS)}; open it once where it can be written"
            )
        store.checkpoints = CheckpointStore(store.root, store._db)
        return store

    def close(self) -> None:
        self._db.close()

    # --- runs --------------------------------------------------------------------------------

    def create_run(
        self,
        recipe: str,
        config: dict,
        hypotheses: list[dict],
        conditions: dict[str, str],
        status: Status = Status.RUNNING,
        sweep_id: str | None = None,
        setting: str | None = None,
        name: str | None = None,
        note: str | None = None,
    ) -> str:
        """Open a run: 'running' when it starts now (CLI), 'queued' when it waits for a worker.
        A sweep's runs name their sweep and setting; any run may have a name and a note
        (ValueError if they are too long or hold control characters: see ``check_label``)."""
        if Status(status) not in OPEN:
            raise StoreError(f"a new run is queued or running, not {status!r}")
        label = check_label(name, note)
        run_id = f"{time.strftime('%Y%m%d-%H%M%S')}-{recipe}-{secrets.token_hex(3)}"
        with transaction(self._db) as db:
            db.execute(
                "INSERT INTO runs (id, recipe, status, config, hypotheses, conditions, "
                "created_at, sweep_id, setting, name, note) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    run_id,
                    recipe,
                    str(status),
                    json.dumps(config),
                    json.dumps(hypotheses),
                    json.dumps(conditions),
                    time.time(),
                    sweep_id,
                    setting,
                    label.get("name"),
                    label.get("note"),
                ),
            )
        return run_id

    def start_run(self, run_id: str) -> None:
        """This process drives the run now: it is 'running' and owned by this process, so
        that, should the process die without closing it, ``close_orphaned_runs`` can tell.
        A finished run (being resumed) is reopened."""
        with transaction(self._db) as db:
            db.execute(
                "UPDATE runs SET status = 'running', owner = ?, error = NULL, finished_at = NULL "
                "WHERE id = ?",
                (_this_process(), run_id),
            )

    def queue_run(self, run_id: str) -> None:
        """A stopped run waits for a job that will resume it."""
        with transaction(self._db) as db:
            db.execute(
                "UPDATE runs SET status = 'queued', finished_at = NULL WHERE id = ?", (run_id,)
            )

    def relabel_stopped(self, run_id: str, status: Status, error: str) -> None:
        """A run stopped as 'cancelled' that was in fact interrupted (its server stopped):
        the run and its cancelled branches take ``status`` and ``error``."""
        with transaction(self._db) as db:
            db.execute(
                "UPDATE branches SET status = ?, error = ? WHERE run_id = ? AND status = ?",
                (str(status), error, run_id, str(Status.CANCELLED)),
            )
            db.execute(
                "UPDATE runs SET status = ?, error = ? WHERE id = ?", (str(status), error, run_id)
            )

    def finish_run(self, run_id: str, status: Status, error: str | None = None) -> None:
        with transaction(self._db) as db:
            db.execute(
                "UPDATE runs SET status = ?, error = ?, finished_at = ? WHERE id = ?",
                (str(status), error, time.time(), run_id),
            )

    def get_run(self, run_id: str) -> dict:
        row = (
            self._db.execute("SELECT * FROM runs WHERE id = ?", (run_id,)).fetchone()
            if valid_id(run_id)
            else None
        )
        if row is None:
            raise StoreError(f"no run {run_id!r} in the store at {self.root}")
        run = dict(row)
        for key in ("config", "hypotheses", "conditions"):
            run[key] = json.loads(run[key])
        return run

    def list_runs(
        self,
        limit: int = 100,
        recipe: str | None = None,
        status: Status | str | None = None,
        search: str | None = None,
        offset: int = 0,
    ) -> list[dict]:
        """The newest ``limit`` runs after the first ``offset`` (a page of the list),
        optionally only those of ``recipe``, in ``status``, or whose id, name or note holds
        ``search`` (case-insensitive). ValueError for a status that does not exist."""
        where, args = _run_filter(recipe, status)
        if not search:
            cursor = self._db.execute(
                f"SELECT {_RUN_COLUMNS} FROM runs {where}ORDER BY created_at DESC, rowid DESC "
                "LIMIT ? OFFSET ?",
                [*args, limit, offset],
            )
            return [dict(r) for r in cursor.fetchall()]
        found = self._search_runs(where, args, search, offset + limit)
        return found[offset:]

    def count_runs(
        self,
        recipe: str | None = None,
        status: Status | str | None = None,
        search: str | None = None,
    ) -> int:
        """How many runs ``list_runs`` pages through with these filters (the list's total)."""
        where, args = _run_filter(recipe, status)
        if not search:
            return self._db.execute(f"SELECT COUNT(*) FROM runs {where}", args).fetchone()[0]
        return len(self._search_runs(where, args, search, None))

    def _search_runs(self, where: str, args: list, search: str, limit: int | None) -> list[dict]:
        """Runs whose id, name or note holds ``search``, newest first, at most ``limit``. In
        Python: SQLite's LIKE and lower() fold ASCII letters only."""
        cursor = self._db.execute(
            f"SELECT {_RUN_COLUMNS} FROM runs {where}ORDER BY created_at DESC, rowid DESC", args
        )
        needle, found = search.casefold(), []
        for row in cursor:
            if any(needle in (row[k] or "").casefold() for k in ("id", "name", "note")):
                found.append(dict(row))
                if limit is not None and len(found) >= limit:
                    break
        cursor.close()
        return found

    def label_run(self, run_id: str, name: str | None = None, note: str | None = None) -> dict:
        """Set the run's name and/or note (None: leave it as it is; "": clear it) and return
        the run. StoreError for an unknown run, ValueError for a bad name or note."""
        label = check_label(name, note)
        self.get_run(run_id)
        if label:
            with transaction(self._db) as db:
                db.execute(
                    f"UPDATE runs SET {', '.join(f'{key} = ?' for key in label)} WHERE id = ?",
                    (*label.values(), run_id),
                )
        return self.get_run(run_id)

    def delete_run(self, run_id: str, dry_run: bool = False) -> dict[str, int]:
        """Delete a finished run: its rows (branches, losses, evaluations, checkpoints, resume
        points, jobs and their events, the run) in one transaction, then its checkpoint and
        resume-point files and the folders they leave empty. Returns how many branches,
        checkpoints and files went (``dry_run``: would go; nothing is deleted). StoreError for
        an unknown run; RunInUse while it is queued or running (or its job is), or when it is
        one of a sweep's runs."""
        self.get_run(run_id)
        with transaction(self._db) as db:
            run = db.execute("SELECT status, sweep_id FROM runs WHERE id = ?", (run_id,)).fetchone()
            if run is None:
                raise StoreError(f"no run {run_id!r} in the store at {self.root}")
            if run["sweep_id"]:
                raise RunInUse(
                    f"run {run_id} is part of sweep {run['sweep_id']}: a sweep's runs are "
                    f"deleted with their sweep (acc delete {run['sweep_id']})"
                )
            _refuse_open(db, f"run {run_id}", run["status"], run_id)
            files = self.checkpoints.files_of_run(run_id)
            if dry_run:
                return {**_count_rows(db, run_id), "files": sum(p.is_file() for p in files)}
            deleted = _delete_rows(db, run_id)
        deleted["files"] = self.checkpoints.remove_run_files(run_id, files)
        return deleted

    def delete_sweep(self, sweep_id: str, dry_run: bool = False) -> dict[str, int]:
        """Delete a finished sweep with its runs (as ``delete_run`` deletes one) and its jobs,
        in one transaction, then their files. Returns how many runs, branches, checkpoints and
        files went (``dry_run``: would go). StoreError for an unknown sweep; RunInUse while the
        sweep, one of its runs or its job is queued or running."""
        sweep = self.get_sweep(sweep_id)
        with transaction(self._db) as db:
            _refuse_open(db, f"sweep {sweep_id}", sweep["status"], sweep_id)
            runs = [r["id"] for r in self.sweep_runs(sweep_id)]
            for run_id in runs:
                status = db.execute("SELECT status FROM runs WHERE id = ?", (run_id,)).fetchone()
                _refuse_open(db, f"sweep {sweep_id}'s run {run_id}", status[0], run_id)
            files = {run_id: self.checkpoints.files_of_run(run_id) for run_id in runs}
            totals = {"runs": len(runs), "branches": 0, "checkpoints": 0}
            for run_id in runs:
                rows = _count_rows(db, run_id) if dry_run else _delete_rows(db, run_id)
                totals["branches"] += rows["branches"]
                totals["checkpoints"] += rows["checkpoints"]
            if dry_run:
                return {**totals, "files": sum(p.is_file() for f in files.values() for p in f)}
            jobs = "SELECT id FROM jobs WHERE sweep_id = ? OR run_id = ?"
            db.execute(f"DELETE FROM job_events WHERE job_id IN ({jobs})", (sweep_id, sweep_id))
            db.execute("DELETE FROM jobs WHERE sweep_id = ? OR run_id = ?", (sweep_id, sweep_id))
            db.execute("DELETE FROM sweeps WHERE id = ?", (sweep_id,))
        removed = sum(self.checkpoints.remove_run_files(r, f) for r, f in files.items())
        return {**totals, "files": removed}

    # --- sweeps ------------------------------------------------------------------------------

    def create_sweep(self, recipe: str, spec: dict, status: Status = Status.RUNNING) -> str:
        sweep_id = f"{time.strftime('%Y%m%d-%H%M%S')}-sweep-{recipe}-{secrets.token_hex(3)}"
        with transaction(self._db) as db:
            db.execute(
                "INSERT INTO sweeps (id, recipe, status, spec, created_at) VALUES (?, ?, ?, ?, ?)",
                (sweep_id, recipe, str(status), json.dumps(spec), time.time()),
            )
        return sweep_id

    def get_sweep(self, sweep_id: str) -> dict:
        row = (
            self._db.execute("SELECT * FROM sweeps WHERE id = ?", (sweep_id,)).fetchone()
            if valid_id(sweep_id)
            else None
        )
        if row is None:
            raise StoreError(f"no sweep {sweep_id!r} in the store at {self.root}")
        return {**dict(row), "spec": json.loads(row["spec"])}

    def list_sweeps(self, limit: int = 100) -> list[dict]:
        rows = self._db.execute(
            "SELECT id, recipe, status, created_at, finished_at FROM sweeps "
            "ORDER BY created_at DESC, rowid DESC LIMIT ?",
            (limit,),
        ).fetchall()
        return [dict(r) for r in rows]

    def sweep_runs(self, sweep_id: str) -> list[dict]:
        """The sweep's runs (one per setting), in the order the settings were expanded."""
        rows = self._db.execute(
            "SELECT id, setting, status FROM runs WHERE sweep_id = ? ORDER BY created_at, rowid",
            (sweep_id,),
        ).fetchall()
        return [dict(r) for r in rows]

    def set_sweep_status(self, sweep_id: str, status: Status, error: str | None = None) -> None:
        """Running (owned by this process, like a run) or finished with ``status``."""
        finished = None if Status(status).is_open else time.time()
        owner = _this_process() if status == Status.RUNNING else None
        with transaction(self._db) as db:
            db.execute(
                "UPDATE sweeps SET status = ?, error = ?, finished_at = ?, "
                "owner = COALESCE(?, owner) WHERE id = ?",
                (str(status), error, finished, owner, sweep_id),
            )

    # --- branches ----------------------------------------------------------------------------

    def plan_branch(self, run_id: str, condition: str, seed: int) -> int:
        """The branch's id; a new branch is recorded 'queued' (an existing one is kept)."""
        with transaction(self._db) as db:
            db.execute(
                "INSERT OR IGNORE INTO branches (run_id, condition, seed, status) "
                "VALUES (?, ?, ?, 'queued')",
                (run_id, condition, seed),
            )
            row = db.execute(
                "SELECT id FROM branches WHERE run_id = ? AND condition = ? AND seed = ?",
                (run_id, condition, seed),
            ).fetchone()
        return int(row["id"])

    def start_branch(self, branch_id: int, from_step: int = 0, restarted: bool = False) -> None:
        """The branch trains from ``from_step``: anything it recorded after that step (by an
        attempt that did not finish) is dropped, so the series never holds a step twice.
        ``restarted``: a retry within the same execution (a lost Ray node), which keeps the
        branch's first ``started_at``."""
        with transaction(self._db) as db:
            after = -1 if from_step == 0 else from_step
            db.execute("DELETE FROM losses WHERE branch_id = ? AND step > ?", (branch_id, after))
            db.execute("DELETE FROM evals WHERE branch_id = ? AND step > ?", (branch_id, after))
            started = "COALESCE(started_at, ?)" if restarted else "?"
            db.execute(
                "UPDATE branches SET status = 'running', steps_done = ?, error = NULL, "
                f"metrics = NULL, checkpoint_id = NULL, health = NULL, started_at = {started}, "
                "finished_at = NULL WHERE id = ?",
                (from_step, time.time(), branch_id),
            )

    def finish_branch(
        self,
        branch_id: int,
        status: Status,
        steps_done: int | None = None,
        error: str | None = None,
    ) -> None:
        with transaction(self._db) as db:
            db.execute(
                "UPDATE branches SET status = ?, steps_done = COALESCE(?, steps_done), "
                "error = ?, finished_at = ? WHERE id = ?",
                (str(status), steps_done, error, time.time(), branch_id),
            )

    def record_metrics(self, branch_id: int, metrics: dict) -> None:
        with transaction(self._db) as db:
            db.execute(
                "UPDATE branches SET metrics = ? WHERE id = ?", (json.dumps(metrics), branch_id)
            )

    def set_branch_checkpoint(self, branch_id: int, checkpoint_id: str) -> None:
        with transaction(self._db) as db:
            db.execute(
                "UPDATE branches SET checkpoint_id = ? WHERE id = ?", (checkpoint_id, branch_id)
            )

    def branches(self, run_id: str) -> list[dict]:
        rows = self._db.execute(
            "SELECT * FROM branches WHERE run_id = ? ORDER BY id", (run_id,)
        ).fetchall()
        out = []
        for row in rows:
            branch = dict(row)
            for key in ("metrics", "health"):
                branch[key] = json.loads(branch[key]) if branch[key] else None
            out.append(branch)
        return out

    def close_orphaned_runs(self, exclude: set[str] | frozenset[str] = frozenset()) -> list[str]:
        """Mark 'interrupted' the running runs whose owning process on this machine is gone
        (killed with SIGKILL, out of memory, power cut), with their unfinished branches;
        return their ids. Runs owned on another machine, and those in ``exclude``, are left
        alone. An interrupted run can be resumed (``acc run --resume``)."""
        host = socket.gethostname()
        orphans = []
        for row in self._db.execute(
            "SELECT id, owner FROM runs WHERE status = 'running' AND owner IS NOT NULL"
        ).fetchall():
            owner_host, _, pid = row["owner"].rpartition(":")
            if row["id"] in exclude or owner_host != host or _alive(int(pid)):
                continue
            orphans.append(row["id"])
            error = f"the process that ran it (pid {pid}) ended without closing it"
            self.interrupt_open_branches(row["id"], error)
            with transaction(self._db) as db:
                db.execute(
                    "UPDATE runs SET status = 'interrupted', error = ?, finished_at = ? "
                    "WHERE id = ? AND status = 'running'",
                    (error, time.time(), row["id"]),
                )
        self._close_orphaned_sweeps(host, exclude)
        return orphans

    def _close_orphaned_sweeps(self, host: str, exclude) -> None:
        for row in self._db.execute(
            "SELECT id, owner FROM sweeps WHERE status = 'running' AND owner IS NOT NULL"
        ).fetchall():
            owner_host, _, pid = row["owner"].rpartition(":")
            if row["id"] in exclude or owner_host != host or _alive(int(pid)):
                continue
            error = f"the process that ran it (pid {pid}) ended without closing it"
            self.set_sweep_status(row["id"], Status.INTERRUPTED, error)

    def interrupt_open_branches(
        self, run_id: str, error: str, status: Status = Status.INTERRUPTED
    ) -> None:
        """Close the run's queued and running branches (nobody is training them any more)."""
        with transaction(self._db) as db:
            db.execute(
                "UPDATE branches SET status = ?, error = ?, finished_at = ? "
                "WHERE run_id = ? AND status IN ('queued', 'running')",
                (str(status), error, time.time(), run_id),
            )

    # --- time series -------------------------------------------------------------------------

    def add_losses(
        self,
        branch_id: int,
        step: int,
        losses: dict[str, float],
        health: dict | None = None,
        points: dict | None = None,
        at: float | None = None,
    ) -> None:
        """The branch has trained ``step`` steps: its loss rows and health, in one transaction.
        The rows are ``points`` when given (a step event's ``{"step": [s, ...], "losses":
        {task: [v, ...]}}``: one row per point and task), else ``losses`` at ``step``; all
        recorded ``at`` (seconds since the epoch; now when not given)."""
        at = time.time() if at is None else at
        if points is None:
            rows = [(branch_id, step, task, value, at) for task, value in losses.items()]
        else:
            columns = points["losses"].items()
            rows = [
                (branch_id, s, task, values[i], at)
                for i, s in enumerate(points["step"])
                for task, values in columns
            ]
        with transaction(self._db) as db:
            db.executemany(
                "INSERT INTO losses (branch_id, step, task, value, time) VALUES (?, ?, ?, ?, ?)",
                rows,
            )
            db.execute(
                "UPDATE branches SET steps_done = ?, health = COALESCE(?, health) WHERE id = ?",
                (step, json.dumps(health) if health else None, branch_id),
            )

    def set_health(self, branch_id: int, health: dict) -> None:
        """Merge a LossHealth verdict into the branch's (e.g. 'diverged' for a NaN loss)."""
        with transaction(self._db) as db:
            row = db.execute("SELECT health FROM branches WHERE id = ?", (branch_id,)).fetchone()
            merged = {**(json.loads(row["health"]) if row and row["health"] else {}), **health}
            db.execute(
                "UPDATE branches SET health = ? WHERE id = ?", (json.dumps(merged), branch_id)
            )

    def add_eval(self, branch_id: int, step: int, metrics: dict, at: float | None = None) -> None:
        """One periodic evaluation, recorded ``at`` (seconds since the epoch; now if not given)."""
        at = time.time() if at is None else at
        with transaction(self._db) as db:
            db.execute(
                "INSERT INTO evals (branch_id, step, metrics, time) VALUES (?, ?, ?, ?)",
                (branch_id, step, json.dumps(metrics), at),
            )

    def losses(self, branch_id: int, with_time: bool = False) -> list[dict]:
        """The branch's loss rows by step; ``with_time`` adds when each was recorded (None in
        rows recorded before times were stored)."""
        columns = "step, task, value, time" if with_time else "step, task, value"
        rows = self._db.execute(
            f"SELECT {columns} FROM losses WHERE branch_id = ? ORDER BY step", (branch_id,)
        ).fetchall()
        return [dict(r) for r in rows]

    def evals(self, branch_id: int, with_time: bool = False) -> list[dict]:
        """The branch's periodic evaluations by step (``with_time``: as ``losses``)."""
        rows = self._db.execute(
            "SELECT step, metrics, time FROM evals WHERE branch_id = ? ORDER BY step", (branch_id,)
        ).fetchall()
        out = [{"step": r["step"], "metrics": json.loads(r["metrics"])} for r in rows]
        if with_time:
            for row, r in zip(out, rows):
                row["time"] = r["time"]
        return out


_RUN_COLUMNS = "id, recipe, status, created_at, finished_at, sweep_id, name, note"


def _run_filter(recipe: str | None, status: Status | str | None) -> tuple[str, list]:
    """The WHERE clause (with a trailing space, or "") and its arguments for a run list's
    recipe and status filters. ValueError for a status that does not exist."""
    clauses, args = [], []
    if recipe is not None:
        clauses.append("recipe = ?")
        args.append(recipe)
    if status is not None:
        clauses.append("status = ?")
        args.append(str(parse_status(status)))
    return (f"WHERE {' AND '.join(clauses)} " if clauses else ""), args


def _refuse_open(db: sqlite3.Connection, what: str, status: str, run_id: str) -> None:
    """RunInUse while ``what`` is queued or running, or a job that drives ``run_id`` (a run's
    or a sweep's id) is: deleting it would pull its rows from under the training."""
    if Status(status) in OPEN:
        raise RunInUse(
            f"{what} is {status}: cancel it first (its job in the dashboard, or Ctrl-C the "
            "`acc run`/`acc sweep` that trains it), then delete it"
        )
    job = db.execute(
        "SELECT id, status FROM jobs WHERE run_id = ? AND status IN ('queued', 'running')",
        (run_id,),
    ).fetchone()
    if job is not None:
        raise RunInUse(
            f"{what}'s job {job['id']} is {job['status']}: cancel it first, then delete it"
        )


def _count_rows(db: sqlite3.Connection, run_id: str) -> dict[str, int]:
    count = "SELECT COUNT(*) FROM {} WHERE run_id = ?"
    return {
        "branches": db.execute(count.format("branches"), (run_id,)).fetchone()[0],
        "checkpoints": db.execute(count.format("checkpoints"), (run_id,)).fetchone()[0],
    }


def _delete_rows(db: sqlite3.Connection, run_id: str) -> dict[str, int]:
    """A run's rows, inside the caller's transaction; its own jobs (not a sweep's) too."""
    branches = "SELECT id FROM branches WHERE run_id = ?"
    jobs = "SELECT id FROM jobs WHERE run_id = ? AND sweep_id IS NULL"
    for table in ("losses", "evals", "resume_points"):
        db.execute(f"DELETE FROM {table} WHERE branch_id IN ({branches})", (run_id,))
    deleted = {
        "checkpoints": db.execute("DELETE FROM checkpoints WHERE run_id = ?", (run_id,)).rowcount,
        "branches": db.execute("DELETE FROM branches WHERE run_id = ?", (run_id,)).rowcount,
    }
    db.execute(f"DELETE FROM job_events WHERE job_id IN ({jobs})", (run_id,))
    db.execute("DELETE FROM jobs WHERE run_id = ? AND sweep_id IS NULL", (run_id,))
    db.execute("DELETE FROM runs WHERE id = ?", (run_id,))
    return deleted


def parse_status(value: Status | str) -> Status:
    """A status by its value; ValueError naming the valid ones otherwise."""
    try:
        return Status(value)
    except ValueError:
        valid = ", ".join(s.value for s in Status)
        raise ValueError(f"unknown status {value!r}; one of: {valid}") from None


def check_label(name: str | None = None, note: str | None = None) -> dict[str, str | None]:
    """The given fields of a run's label as they are stored (None: not given, left out):
    stripped, "" clears (NULL). ValueError for a name of more than MAX_NAME characters or
    with control characters (line breaks included), or a note of more than MAX_NOTE
    characters or with control characters other than line breaks and tabs."""
    label: dict[str, str | None] = {}
    fields = (("name", name, MAX_NAME, ""), ("note", note, MAX_NOTE, "\n\r\t"))
    for key, value, limit, allowed in fields:
        if value is None:
            continue
        if not isinstance(value, str):
            raise ValueError(f"a run's {key} is text, not {type(value).__name__}")
        value = value.strip()
        if len(value) > limit:
            raise ValueError(f"a run's {key} is at most {limit} characters, not {len(value)}")
        controls = (c for c in value if unicodedata.category(c) in ("Cc", "Zl", "Zp"))
        bad = next((c for c in controls if c not in allowed), None)
        if bad is not None:
            what = "line breaks or control characters" if key == "name" else "control characters"
            raise ValueError(f"a run's {key} cannot hold {what} (found {bad!r})")
        label[key] = value or None
    return label


def _this_process() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _alive(pid: int) -> bool:
    """Whether a process with this pid exists (signal 0 checks without sending anything)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    return True


__all__ = [
    "Checkpoint",
    "RunInUse",
    "Store",
    "StoreError",
    "check_label",
    "default_store_dir",
    "parse_status",
    "valid_id",
]

"""Jobs and their event log, kept in the results store's SQLite file beside the runs.

A job is one recipe run started (or resumed) from the server. Its driver appends every event
the run emits (log, branch, train, step, eval, resume_point, results) plus the job's own state
changes (job, final) to ``job_events``. The row id is the event's sequence number: it only
grows, whoever writes, so a reconnecting stream resumes exactly after its Last-Event-ID.
Keeping events in the store (not in server memory) means a server restart loses nothing.
"""

from __future__ import annotations

import json
import secrets
import sqlite3
import time
from pathlib import Path

from acc.db import connect, transaction
from acc.ids import valid_id
from acc.schema import MIGRATIONS


class JobStore:
    """The jobs table and the event log. One connection per process; safe across threads."""

    def __init__(self, root: str | Path) -> None:
        self.path = Path(root) / "acc.sqlite"
        self._db = connect(self.path, MIGRATIONS)

    def close(self) -> None:
        self._db.close()

    # --- jobs --------------------------------------------------------------------------------

    def create(self, run_id: str, recipe: str, params: dict, sweep_id: str | None = None) -> str:
        """A queued job for a run, or for a sweep (``run_id`` is then the sweep's id too)."""
        job_id = f"job-{secrets.token_hex(6)}"
        with transaction(self._db) as db:
            db.execute(
                "INSERT INTO jobs (id, run_id, recipe, params, status, created_at, sweep_id) "
                "VALUES (?, ?, ?, ?, 'queued', ?, ?)",
                (job_id, run_id, recipe, json.dumps(params), time.time(), sweep_id),
            )
        return job_id

    def get(self, job_id: str) -> dict | None:
        if not valid_id(job_id):
            return None
        row = self._db.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return _job(row) if row else None

    def list(self, limit: int = 100) -> list[dict]:
        rows = self._db.execute(
            "SELECT * FROM jobs ORDER BY created_at DESC, rowid DESC LIMIT ?", (limit,)
        ).fetchall()
        return [_job(r) for r in rows]

    def count(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM jobs").fetchone()[0])

    def with_status(self, *statuses: str) -> list[dict]:
        marks = ", ".join("?" for _ in statuses)
        rows = self._db.execute(
            f"SELECT * FROM jobs WHERE status IN ({marks}) ORDER BY created_at, rowid", statuses
        ).fetchall()
        return [_job(r) for r in rows]

    def job_ids_by_run(self) -> dict[str, str]:
        """run id -> id of the (latest) job that ran it; CLI runs have none."""
        rows = self._db.execute("SELECT run_id, id FROM jobs ORDER BY created_at").fetchall()
        return {r["run_id"]: r["id"] for r in rows}

    def set_running(self, job_id: str, pid: int) -> None:
        with transaction(self._db) as db:
            db.execute(
                "UPDATE jobs SET status = 'running', pid = ?, started_at = ? WHERE id = ?",
                (pid, time.time(), job_id),
            )

    def finish(self, job_id: str, status: str, error: str | None = None) -> bool:
        """Mark a job finished, once: False if it already was (the first verdict stands)."""
        with transaction(self._db) as db:
            cur = db.execute(
                "UPDATE jobs SET status = ?, error = ?, finished_at = ? "
                "WHERE id = ? AND status IN ('queued', 'running')",
                (status, error, time.time(), job_id),
            )
        return cur.rowcount == 1

    # --- events ------------------------------------------------------------------------------

    def add_event(self, job_id: str, event: dict) -> int:
        with transaction(self._db) as db:
            cur = db.execute(
                "INSERT INTO job_events (job_id, type, data, created_at) VALUES (?, ?, ?, ?)",
                (job_id, str(event.get("type", "log")), json.dumps(event), time.time()),
            )
        return int(cur.lastrowid)

    def events_after(self, job_id: str, after: int, limit: int = 500) -> list[tuple[int, str]]:
        """(sequence number, JSON text) of the job's events after ``after``, oldest first."""
        rows = self._db.execute(
            "SELECT id, data FROM job_events WHERE job_id = ? AND id > ? ORDER BY id LIMIT ?",
            (job_id, after, limit),
        ).fetchall()
        return [(int(r["id"]), r["data"]) for r in rows]

    def last_event_id(self, job_id: str) -> int:
        row = self._db.execute(
            "SELECT MAX(id) AS last FROM job_events WHERE job_id = ?", (job_id,)
        ).fetchone()
        return int(row["last"] or 0)


def _job(row: sqlite3.Row) -> dict:
    job = dict(row)
    job["params"] = json.loads(job["params"])
    return job

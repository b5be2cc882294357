"""The store's SQLite schema as an ordered list of migrations (see ``acc.db.migrate``).

Never edit a migration that has shipped: append a new one. Stores made before versioning
(``user_version`` 0) already hold some of these tables, so the early steps are idempotent.
"""

from __future__ import annotations

import sqlite3

from acc.db import Migration

INITIAL = """
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY, recipe TEXT NOT NULL, status TEXT NOT NULL, config TEXT NOT NULL,
    hypotheses TEXT NOT NULL DEFAULT '[]', conditions TEXT NOT NULL DEFAULT '{}',
    error TEXT, created_at REAL NOT NULL, finished_at REAL);
CREATE TABLE IF NOT EXISTS branches (
    id INTEGER PRIMARY KEY, run_id TEXT NOT NULL REFERENCES runs(id), condition TEXT NOT NULL,
    seed INTEGER NOT NULL, status TEXT NOT NULL, steps_done INTEGER NOT NULL DEFAULT 0,
    metrics TEXT, checkpoint_id TEXT, error TEXT, started_at REAL, finished_at REAL,
    UNIQUE (run_id, condition, seed));
CREATE TABLE IF NOT EXISTS losses (
    branch_id INTEGER NOT NULL REFERENCES branches(id), step INTEGER NOT NULL,
    task TEXT NOT NULL, value REAL NOT NULL);
CREATE TABLE IF NOT EXISTS evals (
    branch_id INTEGER NOT NULL REFERENCES branches(id), step INTEGER NOT NULL,
    metrics TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS checkpoints (
    id TEXT PRIMARY KEY, run_id TEXT NOT NULL, branch_id INTEGER, parent_id TEXT,
    tag TEXT NOT NULL, seed INTEGER, step INTEGER NOT NULL, path TEXT NOT NULL,
    metadata TEXT NOT NULL, created_at REAL NOT NULL);
CREATE INDEX IF NOT EXISTS losses_by_branch ON losses(branch_id, step);
CREATE INDEX IF NOT EXISTS evals_by_branch ON evals(branch_id, step);
CREATE INDEX IF NOT EXISTS branches_by_run ON branches(run_id);
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY, run_id TEXT NOT NULL, recipe TEXT NOT NULL, params TEXT NOT NULL,
    status TEXT NOT NULL, error TEXT, pid INTEGER, created_at REAL NOT NULL,
    started_at REAL, finished_at REAL);
CREATE TABLE IF NOT EXISTS job_events (
    id INTEGER PRIMARY KEY AUTOINCREMENT, job_id TEXT NOT NULL, type TEXT NOT NULL,
    data TEXT NOT NULL, created_at REAL NOT NULL);
CREATE INDEX IF NOT EXISTS job_events_by_job ON job_events(job_id, id)
"""


def add_run_owner(db: sqlite3.Connection) -> None:
    """Runs record the host:pid that trains them (stores from before may have it already)."""
    columns = {row["name"] for row in db.execute("PRAGMA table_info(runs)")}
    if "owner" not in columns:
        db.execute("ALTER TABLE runs ADD COLUMN owner TEXT")


BRANCHES_AS_UNITS = """
ALTER TABLE branches ADD COLUMN health TEXT;
CREATE TABLE resume_points (
    branch_id INTEGER PRIMARY KEY REFERENCES branches(id), step INTEGER NOT NULL,
    path TEXT NOT NULL, created_at REAL NOT NULL)
"""

SWEEPS = """
CREATE TABLE sweeps (
    id TEXT PRIMARY KEY, recipe TEXT NOT NULL, status TEXT NOT NULL, spec TEXT NOT NULL,
    error TEXT, created_at REAL NOT NULL, finished_at REAL, owner TEXT);
ALTER TABLE runs ADD COLUMN sweep_id TEXT;
ALTER TABLE runs ADD COLUMN setting TEXT;
CREATE INDEX runs_by_sweep ON runs(sweep_id);
ALTER TABLE jobs ADD COLUMN sweep_id TEXT
"""

RUN_LABELS = """
ALTER TABLE runs ADD COLUMN name TEXT;
ALTER TABLE runs ADD COLUMN note TEXT
"""

# When each loss point and evaluation was recorded (seconds since the epoch; NULL in rows
# recorded before): the charts' wall-clock and relative-time x-axes.
POINT_TIMES = """
ALTER TABLE losses ADD COLUMN time REAL;
ALTER TABLE evals ADD COLUMN time REAL
"""

MIGRATIONS: list[Migration] = [
    INITIAL,
    add_run_owner,
    BRANCHES_AS_UNITS,
    SWEEPS,
    RUN_LABELS,
    POINT_TIMES,
]

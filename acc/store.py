"""The results store: SQLite (WAL) for runs, branches, losses and evaluations; safetensors
checkpoints on disk. It is the hub: a run started from the CLI is visible to the dashboard.

Layout under the store directory (default ``./acc-store``, or ``$ACC_STORE``, or ``--store``):

    acc.sqlite                              runs, branches, losses, evals, checkpoints
    checkpoints/<run_id>/<ckpt_id>.safetensors   the model's state_dict, same key names
    checkpoints/<run_id>/<ckpt_id>.json          its metadata (also in the safetensors header)

Every file is written to a temporary name and renamed into place, so a crash never leaves a
half-written checkpoint; every database write is one transaction.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import socket
import sqlite3
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from acc.db import connect, transaction

DEFAULT_STORE = "acc-store"
OPEN_RUN_STATES = ("queued", "running")  # a run in either state has not finished
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY, recipe TEXT NOT NULL, status TEXT NOT NULL, config TEXT NOT NULL,
    hypotheses TEXT NOT NULL DEFAULT '[]', conditions TEXT NOT NULL DEFAULT '{}',
    error TEXT, created_at REAL NOT NULL, finished_at REAL, owner TEXT);
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
"""


class StoreError(ValueError):
    """A store that cannot be used, or an id that is not in it."""


@dataclass(frozen=True)
class Checkpoint:
    id: str
    path: Path
    metadata: dict


def default_store_dir() -> Path:
    return Path(os.environ.get("ACC_STORE") or DEFAULT_STORE)


def valid_id(value: str) -> bool:
    """Ids are plain names: no separators, no '..', so they can never reach outside the store."""
    return bool(_ID.match(value)) and ".." not in value


class Store:
    def __init__(self, root: str | Path | None = None) -> None:
        self.root = Path(root) if root is not None else default_store_dir()
        try:
            (self.root / "checkpoints").mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=self.root, prefix=".probe-"):
                pass  # fail now, with a clear message, rather than at the first checkpoint
            self._db = connect(self.root / "acc.sqlite", SCHEMA)
            _add_owner_column(self._db)
        except (OSError, sqlite3.Error) as exc:
            raise StoreError(
                f"cannot write to the store at {self.root}: {exc}; "
                "pass --store DIR (or set ACC_STORE) to a writable directory"
            ) from exc

    def close(self) -> None:
        self._db.close()

    # --- runs --------------------------------------------------------------------------------

    def create_run(
        self,
        recipe: str,
        config: dict,
        hypotheses: list[dict],
        conditions: dict[str, str],
        status: str = "running",
    ) -> str:
        """Open a run: 'running' when it starts now (CLI), 'queued' when it waits for a worker."""
        if status not in OPEN_RUN_STATES:
            raise StoreError(f"a new run is {' or '.join(OPEN_RUN_STATES)}, not {status!r}")
        run_id = f"{time.strftime('%Y%m%d-%H%M%S')}-{recipe}-{secrets.token_hex(2)}"
        with transaction(self._db) as db:
            db.execute(
                "INSERT INTO runs (id, recipe, status, config, hypotheses, conditions, "
                "created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    run_id,
                    recipe,
                    status,
                    json.dumps(config),
                    json.dumps(hypotheses),
                    json.dumps(conditions),
                    time.time(),
                ),
            )
        return run_id

    def start_run(self, run_id: str) -> None:
        """This process begins training the run: it is 'running' and this process owns it, so
        that, should the process die without closing it, ``close_orphaned_runs`` can tell."""
        with transaction(self._db) as db:
            db.execute(
                "UPDATE runs SET status = 'running', owner = ? "
                "WHERE id = ? AND status IN ('queued', 'running')",
                (_this_process(), run_id),
            )

    def finish_run(self, run_id: str, status: str, error: str | None = None) -> None:
        with transaction(self._db) as db:
            db.execute(
                "UPDATE runs SET status = ?, error = ?, finished_at = ? WHERE id = ?",
                (status, error, time.time(), run_id),
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

    def list_runs(self, limit: int = 100) -> list[dict]:
        rows = self._db.execute(
            "SELECT id, recipe, status, created_at, finished_at FROM runs "
            "ORDER BY created_at DESC LIMIT ?",
            (limit,),
        ).fetchall()
        return [dict(r) for r in rows]

    # --- branches ----------------------------------------------------------------------------

    def start_branch(self, run_id: str, condition: str, seed: int) -> int:
        with transaction(self._db) as db:
            cur = db.execute(
                "INSERT INTO branches (run_id, condition, seed, status, started_at) "
                "VALUES (?, ?, ?, 'running', ?)",
                (run_id, condition, seed, time.time()),
            )
        return int(cur.lastrowid)

    def finish_branch(
        self, branch_id: int, status: str, steps_done: int, error: str | None = None
    ) -> None:
        with transaction(self._db) as db:
            db.execute(
                "UPDATE branches SET status = ?, steps_done = ?, error = ?, finished_at = ? "
                "WHERE id = ?",
                (status, steps_done, error, time.time(), branch_id),
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
            branch["metrics"] = json.loads(branch["metrics"]) if branch["metrics"] else None
            out.append(branch)
        return out

    def close_orphaned_runs(self, exclude: set[str] | frozenset[str] = frozenset()) -> list[str]:
        """Mark 'interrupted' the running runs whose owning process on this machine is gone
        (killed with SIGKILL, out of memory, power cut), with their running branches; return
        their ids. Runs owned on another machine, and those in ``exclude``, are left alone."""
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
            with transaction(self._db) as db:
                db.execute(
                    "UPDATE branches SET status = 'interrupted', error = ?, finished_at = ? "
                    "WHERE run_id = ? AND status = 'running'",
                    (error, time.time(), row["id"]),
                )
                db.execute(
                    "UPDATE runs SET status = 'interrupted', error = ?, finished_at = ? "
                    "WHERE id = ? AND status = 'running'",
                    (error, time.time(), row["id"]),
                )
        return orphans

    # --- time series -------------------------------------------------------------------------

    def add_losses(self, branch_id: int, step: int, losses: dict[str, float]) -> None:
        with transaction(self._db) as db:
            db.executemany(
                "INSERT INTO losses (branch_id, step, task, value) VALUES (?, ?, ?, ?)",
                [(branch_id, step, task, value) for task, value in losses.items()],
            )
            db.execute("UPDATE branches SET steps_done = ? WHERE id = ?", (step, branch_id))

    def add_eval(self, branch_id: int, step: int, metrics: dict) -> None:
        with transaction(self._db) as db:
            db.execute(
                "INSERT INTO evals (branch_id, step, metrics) VALUES (?, ?, ?)",
                (branch_id, step, json.dumps(metrics)),
            )

    def losses(self, branch_id: int) -> list[dict]:
        rows = self._db.execute(
            "SELECT step, task, value FROM losses WHERE branch_id = ? ORDER BY step", (branch_id,)
        ).fetchall()
        return [dict(r) for r in rows]

    def evals(self, branch_id: int) -> list[dict]:
        rows = self._db.execute(
            "SELECT step, metrics FROM evals WHERE branch_id = ? ORDER BY step", (branch_id,)
        ).fetchall()
        return [{"step": r["step"], "metrics": json.loads(r["metrics"])} for r in rows]

    # --- checkpoints -------------------------------------------------------------------------

    def save_checkpoint(
        self,
        run_id: str,
        model: torch.nn.Module,
        tag: str,
        step: int,
        metadata: dict,
        seed: int | None = None,
        parent_id: str | None = None,
        branch_id: int | None = None,
    ) -> Checkpoint:
        ckpt_id = f"ck-{secrets.token_hex(6)}"
        folder = self.root / "checkpoints" / run_id
        folder.mkdir(parents=True, exist_ok=True)
        path = (folder / f"{ckpt_id}.safetensors").resolve()
        meta = {
            **metadata,
            "id": ckpt_id,
            "run_id": run_id,
            "tag": tag,
            "step": step,
            "seed": seed,
            "parent": parent_id,
        }
        tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
        _atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata={"acc": json.dumps(meta)}))
        _atomic_write(
            path.with_suffix(".json"), lambda tmp: Path(tmp).write_text(json.dumps(meta, indent=2))
        )
        with transaction(self._db) as db:
            db.execute(
                "INSERT INTO checkpoints (id, run_id, branch_id, parent_id, tag, seed, step, "
                "path, metadata, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    ckpt_id,
                    run_id,
                    branch_id,
                    parent_id,
                    tag,
                    seed,
                    step,
                    str(path),
                    json.dumps(meta),
                    time.time(),
                ),
            )
        return Checkpoint(ckpt_id, path, meta)

    def get_checkpoint(self, ckpt_id: str) -> Checkpoint:
        row = (
            self._db.execute(
                "SELECT path, metadata FROM checkpoints WHERE id = ?", (ckpt_id,)
            ).fetchone()
            if valid_id(ckpt_id)
            else None
        )
        if row is None:
            raise StoreError(f"no checkpoint {ckpt_id!r} in the store at {self.root}")
        return Checkpoint(ckpt_id, Path(row["path"]), json.loads(row["metadata"]))

    def load_state_dict(self, ckpt_id: str, device: str | torch.device = "cpu") -> dict:
        return load_file(str(self.get_checkpoint(ckpt_id).path), device=str(device))

    def checkpoints(self, run_id: str) -> list[dict]:
        rows = self._db.execute(
            "SELECT id, branch_id, parent_id, tag, seed, step, path "
            "FROM checkpoints WHERE run_id = ? ORDER BY created_at",
            (run_id,),
        ).fetchall()
        return [dict(r) for r in rows]


def _atomic_write(path: Path, write) -> None:
    """Write through ``write(tmp_path)`` then rename over ``path``: all or nothing."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _add_owner_column(db: sqlite3.Connection) -> None:
    """Stores created before runs had an owner get the column (NULL: never judged orphaned)."""
    columns = {row["name"] for row in db.execute("PRAGMA table_info(runs)")}
    if "owner" not in columns:
        try:
            db.execute("ALTER TABLE runs ADD COLUMN owner TEXT")
        except sqlite3.OperationalError as exc:  # another process added it first
            if "duplicate column" not in str(exc):
                raise


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

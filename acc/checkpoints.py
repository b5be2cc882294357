"""CheckpointStore: model checkpoints and branch resume points, as safetensors files.

Two kinds of file live under ``<store>/checkpoints/<run_id>/``:

* **checkpoints** (``<ckpt_id>.safetensors`` + ``<ckpt_id>.json``): a model's ``state_dict``
  with its metadata (model ``config()``, gating, tasks, step, seed, parent). The root of each
  seed and the final model of each branch; they form the checkpoint tree.
* **resume points** (``resume/branch-<id>-step-<n>.safetensors``): everything a branch needs to
  go on exactly where it stopped (model, optimizer, step, RNG states, batch order). One per
  branch, the newest; never part of the tree, deleted when the branch completes.

Files are written to a temporary name and renamed into place (all or nothing); paths are
recorded relative to the store, so a copied or moved store still finds its files. Nothing is
ever unpickled: tensors are safetensors, everything else is JSON in the file's header.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import sqlite3
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load, load_file, save

from acc.db import transaction
from acc.ids import valid_id

METADATA_KEY = "acc"
TEMPORARY_SUFFIX = ".tmp"  # atomic_write's temporary names: .NAME.XXXXXXXX.tmp
LEFTOVER_AGE_S = 600.0  # a temporary or row-less file this old was left by a killed write


class CheckpointError(ValueError):
    """No such checkpoint, or a file that cannot be read as one."""


class CheckpointDamaged(CheckpointError):
    """The checkpoint exists in the store but its file is missing, truncated or not its model."""


@dataclass(frozen=True)
class Checkpoint:
    id: str
    path: Path  # absolute
    metadata: dict


def tensors_to_bytes(tensors: dict[str, torch.Tensor], metadata: dict | None = None) -> bytes:
    """Tensors (moved to the CPU) and a JSON-able dict as one safetensors blob."""
    cpu = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
    return save(cpu, metadata={METADATA_KEY: json.dumps(metadata or {})})


def bytes_to_tensors(data: bytes) -> tuple[dict[str, torch.Tensor], dict]:
    """The inverse of ``tensors_to_bytes``: (tensors on the CPU, metadata dict). The tensors
    are read-only views into ``data``'s buffers: clone those that will be written to."""
    metadata = metadata_of(data)
    try:
        return load(data), metadata
    except (ValueError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"not a safetensors checkpoint: {exc}") from None


def metadata_of(data: bytes) -> dict:
    """The metadata dict of a ``tensors_to_bytes`` blob, read from its header alone."""
    try:
        size = int.from_bytes(data[:8], "little")
        header = json.loads(data[8 : 8 + size])
        return json.loads(header.get("__metadata__", {}).get(METADATA_KEY, "{}"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"not a safetensors checkpoint: {exc}") from None


class CheckpointStore:
    """The checkpoint files of one store and their rows in its SQLite file."""

    def __init__(self, root: Path, db: sqlite3.Connection) -> None:
        self.root, self._db = Path(root), db

    # --- the checkpoint tree -----------------------------------------------------------------

    def save(
        self,
        run_id: str,
        tensors: dict[str, torch.Tensor],
        tag: str,
        step: int,
        metadata: dict,
        seed: int | None = None,
        parent_id: str | None = None,
        branch_id: int | None = None,
    ) -> Checkpoint:
        """Write a model's ``state_dict`` (same key names) with its metadata beside it."""
        ckpt_id = f"ck-{secrets.token_hex(6)}"
        relative = Path("checkpoints") / run_id / f"{ckpt_id}.safetensors"
        path = self.root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        meta = {
            **metadata,
            "id": ckpt_id,
            "run_id": run_id,
            "tag": tag,
            "step": step,
            "seed": seed,
            "parent": parent_id,
        }
        # serialised here and written by atomic_write alone: safetensors' save_file would go
        # through a second temporary file of its own (.tmpXXXXXX) a kill could leave behind
        data = tensors_to_bytes(tensors, meta)
        atomic_write(path, lambda tmp: Path(tmp).write_bytes(data))
        atomic_write(
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
                    str(relative),
                    json.dumps(meta),
                    time.time(),
                ),
            )
        return Checkpoint(ckpt_id, path.resolve(), meta)

    def get(self, ckpt_id: str) -> Checkpoint:
        row = (
            self._db.execute(
                "SELECT path, metadata FROM checkpoints WHERE id = ?", (ckpt_id,)
            ).fetchone()
            if valid_id(ckpt_id)
            else None
        )
        if row is None:
            raise CheckpointError(f"no checkpoint {ckpt_id!r} in the store at {self.root}")
        return Checkpoint(ckpt_id, self._absolute(row["path"]), json.loads(row["metadata"]))

    def load_state_dict(self, ckpt_id: str, device: str | torch.device = "cpu") -> dict:
        path = self.get(ckpt_id).path
        try:
            return load_file(str(path), device=str(device))
        except FileNotFoundError:
            raise CheckpointDamaged(f"checkpoint {ckpt_id}: its file {path} is missing") from None
        except (SafetensorError, OSError, ValueError) as exc:
            raise CheckpointDamaged(
                f"checkpoint {ckpt_id}: its file {path} cannot be read ({exc}); it is damaged "
                "(truncated or overwritten)"
            ) from None

    def read_bytes(self, ckpt_id: str) -> bytes:
        """The checkpoint file as it is: what a worker on another machine is sent."""
        return self.get(ckpt_id).path.read_bytes()

    def of_run(self, run_id: str) -> list[dict]:
        """The run's checkpoint tree (resume points are not in it), oldest first."""
        rows = self._db.execute(
            "SELECT id, branch_id, parent_id, tag, seed, step, path "
            "FROM checkpoints WHERE run_id = ? ORDER BY created_at, rowid",
            (run_id,),
        ).fetchall()
        return [{**dict(r), "path": str(self._absolute(r["path"]))} for r in rows]

    # --- resume points -----------------------------------------------------------------------

    def save_resume_point(self, run_id: str, branch_id: int, step: int, data: bytes) -> None:
        """Keep ``data`` (a packed training state) as the branch's newest resume point; the
        previous one is deleted only after the new one is safely in place."""
        relative = (
            Path("checkpoints") / run_id / "resume" / f"branch-{branch_id}-step-{step}.safetensors"
        )
        path = self.root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, lambda tmp: Path(tmp).write_bytes(data))
        old = self._resume_row(branch_id)
        with transaction(self._db) as db:
            db.execute(
                "INSERT OR REPLACE INTO resume_points (branch_id, step, path, created_at) "
                "VALUES (?, ?, ?, ?)",
                (branch_id, step, str(relative), time.time()),
            )
        if old is not None and old["path"] != str(relative):
            self._absolute(old["path"]).unlink(missing_ok=True)

    def resume_point(self, branch_id: int) -> tuple[int, bytes] | None:
        """(step, packed training state) of the branch's newest resume point, if it has one
        whose file is still there."""
        row = self._resume_row(branch_id)
        if row is None:
            return None
        path = self._absolute(row["path"])
        return (int(row["step"]), path.read_bytes()) if path.is_file() else None

    def drop_resume_point(self, branch_id: int) -> None:
        row = self._resume_row(branch_id)
        if row is None:
            return
        with transaction(self._db) as db:
            db.execute("DELETE FROM resume_points WHERE branch_id = ?", (branch_id,))
        self._absolute(row["path"]).unlink(missing_ok=True)

    def _resume_row(self, branch_id: int) -> sqlite3.Row | None:
        return self._db.execute(
            "SELECT step, path FROM resume_points WHERE branch_id = ?", (branch_id,)
        ).fetchone()

    # --- deleting a run ----------------------------------------------------------------------

    def files_of_run(self, run_id: str) -> list[Path]:
        """The files the run's rows name (checkpoints, their metadata beside them, its
        branches' resume points), read before the rows are deleted. Only files under this
        store's ``checkpoints/``: a row of a store copied from elsewhere may hold an absolute
        path into the original store, whose files are not this store's to delete."""
        inside = (self.root / "checkpoints").resolve()
        paths = []
        for (path,) in self._db.execute("SELECT path FROM checkpoints WHERE run_id = ?", (run_id,)):
            paths += [self._absolute(path), self._absolute(path).with_suffix(".json")]
        for (path,) in self._db.execute(
            "SELECT r.path FROM resume_points r JOIN branches b ON b.id = r.branch_id "
            "WHERE b.run_id = ?",
            (run_id,),
        ):
            paths.append(self._absolute(path))
        return [path.resolve() for path in paths if inside in path.resolve().parents]

    def remove_run_files(self, run_id: str, paths: list[Path]) -> int:
        """Delete a deleted run's files (``files_of_run``; those already gone are fine) and
        the folders this leaves empty; return how many files were deleted."""
        inside = (self.root / "checkpoints").resolve()
        run_folder = inside / run_id
        folders, removed = {run_folder / "resume", run_folder}, 0
        for path in paths:
            try:
                path.unlink()
            except FileNotFoundError:
                continue
            removed += 1
            folders.add(path.parent)
        for folder in sorted(folders, key=lambda f: len(f.parts), reverse=True):
            if folder != inside and inside in folder.parents:
                with contextlib.suppress(OSError):  # not empty (a file no row names), or gone
                    folder.rmdir()
        return removed

    # --- leftovers of interrupted writes -----------------------------------------------------

    def clean_leftovers(self, older_than_s: float = LEFTOVER_AGE_S) -> list[Path]:
        """Delete what a write killed midway left behind: temporary files of ``atomic_write``,
        and checkpoint or resume-point files that never got their row. Only files older than
        ``older_than_s`` (a write takes milliseconds, so these are abandoned; another process
        writing into the same store now is left alone). Returns the deleted paths."""
        folder = self.root / "checkpoints"
        if not folder.is_dir():
            return []
        known = {self._absolute(r[0]) for r in self._db.execute("SELECT path FROM checkpoints")}
        known |= {self._absolute(r[0]) for r in self._db.execute("SELECT path FROM resume_points")}
        cutoff = time.time() - older_than_s
        doomed = [
            path
            for path in folder.rglob("*")
            if path.is_file()
            and path.stat().st_mtime < cutoff
            and (_is_temporary(path) or _is_orphan(path, known))
        ]
        for path in doomed:
            path.unlink(missing_ok=True)
        return doomed

    def _absolute(self, path: str) -> Path:
        """Rows from before paths were relative hold absolute paths; both resolve here."""
        p = Path(path)
        return p if p.is_absolute() else (self.root / p).resolve()


# safetensors' save_file (0.8) writes through a Rust ``tempfile`` (``.tmp`` + 6 characters)
# in the same folder: what stores written before checkpoints went through atomic_write alone
# may hold, and what any library writing the same way leaves
FOREIGN_TEMPORARY = re.compile(r"\.tmp[A-Za-z0-9_]{6,8}")


def _is_temporary(path: Path) -> bool:
    """A temporary file of an interrupted write: ``atomic_write``'s ``.NAME.XXXX.tmp`` or a
    library's ``.tmpXXXXXX``."""
    name = path.name
    ours = name.startswith(".") and name.endswith(TEMPORARY_SUFFIX)
    return ours or FOREIGN_TEMPORARY.fullmatch(name) is not None


def _is_orphan(path: Path, known: set[Path]) -> bool:
    """A checkpoint (or its metadata sidecar) or resume point with no row in the store."""
    if path.suffix == ".json":
        path = path.with_suffix(".safetensors")
    return path.suffix == ".safetensors" and path.resolve() not in known


def atomic_write(path: Path, write: Callable[[str], object]) -> None:
    """Write through ``write(tmp_path)`` then rename over ``path``: all or nothing."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TEMPORARY_SUFFIX)
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise

"""SQLite as ACC uses it: WAL mode (readers never block the training writer), one transaction
per write, so a crash leaves every table as it was before or after a write, never between.

The schema is versioned with ``PRAGMA user_version``: ``MIGRATIONS`` (in ``acc.schema``) is an
ordered list of SQL scripts and a store at version N runs scripts N+1.. in one transaction
each, so an old store opens and upgrades in place and a new one is built by the same path.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote

Migration = str | Callable[[sqlite3.Connection], None]


class SchemaTooNew(RuntimeError):
    """The store was written by a newer ACC than this one."""


def connect(path: Path, migrations: Sequence[Migration]) -> sqlite3.Connection:
    """A connection in autocommit mode (transactions are explicit), WAL, schema up to date."""
    db = sqlite3.connect(path, timeout=30, check_same_thread=False, isolation_level=None)
    db.row_factory = sqlite3.Row
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    migrate(db, migrations)
    return db


def connect_read_only(path: Path) -> sqlite3.Connection:
    """A connection that never writes, for a store on read-only media or of another user
    (``immutable``: SQLite reads the file as it is, without the WAL's shared memory)."""
    db = sqlite3.connect(
        f"file:{quote(str(path.resolve()))}?immutable=1", uri=True, check_same_thread=False
    )
    db.row_factory = sqlite3.Row
    return db


def migrate(db: sqlite3.Connection, migrations: Sequence[Migration]) -> None:
    """Apply the migrations this database has not seen, each in its own transaction.

    ``BEGIN IMMEDIATE`` takes the write lock before the version is re-read, so two processes
    opening one old store at the same time cannot both apply a step."""
    if _version(db) == len(migrations):
        return
    while True:
        with transaction(db):
            version = _version(db)
            if version > len(migrations):
                raise SchemaTooNew(
                    f"the store's schema is version {version}, newer than this ACC knows "
                    f"({len(migrations)}); upgrade ACC to open it"
                )
            if version == len(migrations):
                return
            step = migrations[version]
            if callable(step):
                step(db)
            else:
                for statement in _statements(step):
                    db.execute(statement)
            db.execute(f"PRAGMA user_version = {version + 1}")


def _version(db: sqlite3.Connection) -> int:
    return int(db.execute("PRAGMA user_version").fetchone()[0])


def _statements(script: str) -> list[str]:
    """A script split into statements (``executescript`` would commit our transaction)."""
    return [s.strip() for s in script.split(";") if s.strip()]


@contextmanager
def transaction(db: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """BEGIN IMMEDIATE ... COMMIT, rolled back on any exception (Ctrl-C included)."""
    db.execute("BEGIN IMMEDIATE")
    try:
        yield db
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")

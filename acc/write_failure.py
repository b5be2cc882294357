"""Store writes that fail because of where the store lives, not because of the run.

A full disk (ENOSPC), a spent quota (EDQUOT), a file grown past its limit (EFBIG), a store
remounted read-only (EROFS) or failing hardware (EIO), and SQLite's own words for the same
(``database or disk is full``, ``attempt to write a readonly database``, ``disk I/O error``):
every later write would fail the same way, so the run stops at the first one, says so once and
stays resumable, rather than failing its remaining branches one after another.
"""

from __future__ import annotations

import errno
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager

WRITE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EIO})
SQLITE_WRITE_CODES = ("SQLITE_FULL", "SQLITE_READONLY", "SQLITE_IOERR")
SQLITE_WRITE_WORDS = ("database or disk is full", "readonly database", "disk i/o error")


class StoreWriteFailed(Exception):
    """The driver could not record what a branch sent (``doing``): the run must stop now.
    Not an OSError, so that code catching a worker's broken pipe does not swallow it."""

    def __init__(self, doing: str, cause: BaseException) -> None:
        super().__init__(f"{doing}: {describe(cause)}")
        self.doing, self.cause = doing, cause


def is_write_failure(exc: BaseException) -> bool:
    """Whether ``exc`` is the store's storage refusing a write (see the module's list)."""
    if isinstance(exc, StoreWriteFailed):
        return True
    if isinstance(exc, OSError):
        return exc.errno in WRITE_ERRNOS
    if isinstance(exc, sqlite3.OperationalError):
        code = getattr(exc, "sqlite_errorname", None) or ""
        return code.startswith(SQLITE_WRITE_CODES) or any(
            words in str(exc).lower() for words in SQLITE_WRITE_WORDS
        )
    return False


def describe(exc: BaseException) -> str:
    """The failure in a few words: ``[Errno 28] No space left on device: '/store/…'``."""
    if isinstance(exc, StoreWriteFailed):
        return str(exc)
    return str(exc) or type(exc).__name__


@contextmanager
def recording(doing: str) -> Iterator[None]:
    """Turn a write failure inside the block into ``StoreWriteFailed(doing)``; other
    exceptions pass unchanged."""
    try:
        yield
    except StoreWriteFailed:
        raise
    except Exception as exc:
        if is_write_failure(exc):
            raise StoreWriteFailed(doing, exc) from exc
        raise

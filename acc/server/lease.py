"""One dashboard server per store: a second `acc serve` on the same store refuses to start.

Two servers on one store would each take the other's queued jobs and mark its running ones
interrupted. The server holds an exclusive ``flock`` on ``<store>/server.lock`` while it runs;
the kernel releases it when the process ends, however it ends (kill -9 included), so a
restarted server always gets it and knows that every job the store still calls running
belongs to a dead server. ``acc run`` on the same store takes no lease: CLI runs are not jobs.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

LOCK_FILE = "server.lock"


class StoreBusy(RuntimeError):
    """Another server holds the store."""


class StoreLease:
    def __init__(self, root: str | Path) -> None:
        self.path = Path(root) / LOCK_FILE
        self._fd: int | None = None

    def acquire(self, who: str = "") -> None:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 200).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise StoreBusy(
                f"another acc serve ({holder}) is serving the store at {self.path.parent}; "
                "stop it, or start this one with another --store"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"pid {os.getpid()}{', ' + who if who else ''}".encode())
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def check_free(self) -> None:
        """Raise StoreBusy now if another server holds the store (for a clean CLI message)."""
        self.acquire()
        self.release()

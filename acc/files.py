"""Files written for the researcher (exports, results JSON): atomic, with ordinary permissions.

``tempfile.mkstemp`` creates its file 0600 whatever the umask, and a rename keeps that mode,
so an export made that way could not be read by the rest of a group or served by a web
server. Here the temporary file is created with mode 0666 and the kernel applies the
process's umask, as for any file the user writes (0644 under umask 022).
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to a temporary file beside ``path``, then rename it over ``path``: a
    reader sees the old file or the new one, never half of one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise

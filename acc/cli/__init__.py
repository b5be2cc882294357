"""The ``acc`` command: a thin layer that parses, calls the runner or the store, and renders.

``common`` holds the app, the options several commands share and small helpers; each other
module registers its commands on import: ``runs`` (list, run, runs, show), ``sweeps`` (sweep,
sweeps), ``power``, ``serve``, ``data`` (data factors) and ``export``.
"""

from __future__ import annotations

from acc.cli import data, export, power, runs, serve, sweeps  # noqa: F401 - registers the commands
from acc.cli.common import app

__all__ = ["app"]

"""Ids of runs, jobs and checkpoints: plain names that can never reach outside the store."""

from __future__ import annotations

import re

_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


def valid_id(value: str) -> bool:
    """No separators, no '..': an id is safe to use in a path and in SQL parameters."""
    return isinstance(value, str) and bool(_ID.match(value)) and ".." not in value

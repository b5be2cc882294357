"""Tables laid out to fit the output's width, never cut.

Rich squeezes a table that is wider than the console by shrinking its columns, which cuts
headers and numbers to ``effecti…`` and ``0.00044…``. Here a table is first measured at its
natural width; one that does not fit is rebuilt in a narrower shape: its cells stacked (a
value above its interval), then its value columns split over several tables that repeat the
row labels. Every name and number is printed whole, whatever the width.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence

from rich.console import Console
from rich.table import Table

_MEASURE = Console(width=100_000, file=io.StringIO())  # measures, never prints

# build(columns, stacked) -> the table with only these value columns, cells stacked or not
Build = Callable[[Sequence, bool], Table]


def natural_width(table: Table) -> int:
    """The width the table takes when nothing constrains it."""
    return _MEASURE.measure(table).maximum


def fits(table: Table, width: int | None) -> bool:
    return width is None or natural_width(table) <= width


def fit_columns(build: Build, columns: Sequence, width: int | None) -> list[Table]:
    """The first layout that fits ``width``: all columns in one line per cell; all columns
    with stacked cells; the columns in as few groups (tables) as fit, each titled with its
    part. ``width`` None: the first layout."""
    for stacked in (False, True):
        table = build(columns, stacked)
        if fits(table, width):
            return [table]
    for size in range(len(columns) - 1, 0, -1):
        groups = [columns[i : i + size] for i in range(0, len(columns), size)]
        tables = [build(group, True) for group in groups]
        if all(fits(t, width) for t in tables) or size == 1:
            for i, table in enumerate(tables, 1):
                table.title = f"{table.title or ''} (part {i} of {len(tables)})".strip()
            return tables
    return [build(columns, True)]  # no value columns at all

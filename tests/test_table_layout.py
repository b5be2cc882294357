"""Issue 20, defect 7: a run's and a sweep's tables, rendered at 80 and 160 columns (output
redirected), fit the width and print every metric name, value, direction and n whole: rich
used to squeeze them to `effecti…` and `0.00044…`, and the CLI ignored COLUMNS.

The results are real (`acc run` / `acc sweep` on blob digits, 20 steps, seeds 1 and 2), kept
in tests/data/layout_results.json without the fields the tables do not read.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from rich.console import Console
from typer.testing import CliRunner

from acc.cli import app
from acc.cli.common import console as cli_console
from acc.cli.common import output_width
from acc.report import comparison_table, fmt, metrics_table
from acc.sweep_report import sweep_tables

RESULTS = json.loads((Path(__file__).parent / "data" / "layout_results.json").read_text())


def render(parts: list, columns: int) -> str:
    out = Console(width=columns, file=io.StringIO(), color_system=None)
    for part in parts:
        out.print(part)
    text = out.file.getvalue()
    widths = [len(line) for line in text.splitlines()]
    assert max(widths) <= columns, f"a line of {max(widths)} characters at {columns} columns"
    assert "…" not in text  # nothing cut
    return text


@pytest.mark.parametrize("columns", [80, 160])
def test_a_runs_tables_keep_every_name_value_direction_and_n(columns):
    results = RESULTS["run"]
    text = render([*metrics_table(results, columns), comparison_table(results, columns)], columns)
    flat = " ".join(text.split())
    assert text.count("(n=2)") == len(results["conditions"]) == 3  # each condition's seeds
    header = " ".join(line for line in text.splitlines() if line.startswith("┃"))
    for name, entry in results["conditions"].items():
        assert f" {name} " in header
        for key, mean in entry["mean"].items():
            if isinstance(mean, float):
                assert f"│ {key} " in text and fmt(mean) in flat
                assert f"± {entry['std'][key]:.2g}" in flat
    assert len(results["comparisons"]) == 10
    for row in results["comparisons"]:
        assert f"{row['metric']}" in flat and row["hypothesis"] in flat  # its direction
        assert fmt(row["mean_diff"]) in flat and row["verdict"] in flat
        low, high = row["ci95"]
        assert f"[{low:.3g}, {high:.3g}]" in flat
    if columns == 80:  # a block per hypothesis, every number labelled
        assert flat.count(" · n 2 · p adj. ") == 10
    else:  # the table, n a column of its own
        assert "┃ n ┃ p adj. ┃" in text and "│ 2 │" in text


@pytest.mark.parametrize("columns", [80, 160])
def test_a_sweeps_grids_keep_every_value_and_column(columns):
    results = RESULTS["cells_sweep"]
    text = render(sweep_tables(results, columns), columns)
    flat = " ".join(text.split())
    comparisons = [c for cell in results["cells"] for c in cell["comparisons"]]
    assert len(comparisons) == 8 * 5  # 2 temperatures x 4 gate strengths x 5 hypotheses
    for c in comparisons:
        assert f" {c['metric']} (" in flat or f"{c['metric']} ·" in flat
        assert f"{c['mean_diff']:+.3g}" in flat
        low, high = c["ci95"]
        assert f"[{low:+.2g}, {high:+.2g}]" in flat
    assert all(f" {g} " in text for g in ("0.25", "0.5", "0.75", "1.0"))  # headers whole
    parts = "(part 1 of 2)" in flat
    assert parts == (columns == 80)  # four columns of cells are split only at 80


@pytest.mark.parametrize("columns", [80, 160])
def test_a_settings_sweep_lists_its_metrics_as_rows(columns):
    results = RESULTS["settings_sweep"]
    text = render(sweep_tables(results, columns), columns)
    flat = " ".join(text.split())
    assert len(results["settings"]) == 4
    for setting in results["settings"]:
        assert f"setting {setting['id']}" in flat
        for entry in setting["conditions"].values():
            for key, mean in entry["mean"].items():
                if isinstance(mean, float) and "[" not in key:
                    assert f"│ {key} " in text and fmt(mean) in flat


def test_the_cli_lays_out_for_COLUMNS_and_160_columns_when_redirected(tmp_path, monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    assert output_width() == 80
    assert runner.invoke(app, ["sweeps", "--store", str(tmp_path)]).exit_code == 2  # no store
    assert cli_console.width == 80  # set for the command that ran
    monkeypatch.delenv("COLUMNS")
    assert output_width() == 160  # pytest's stdout is no terminal


runner = CliRunner()

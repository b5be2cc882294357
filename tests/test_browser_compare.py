"""The dashboard as a research tool (issue 11's new capabilities), in headless Chromium: runs
compared side by side, chart smoothing and scales, run names, notes, filters, delete, export."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from acc.runner import create_run, execute_run
from acc.store import Store

pytestmark = pytest.mark.slow


@pytest.fixture
def two_runs(tmp_path) -> tuple[Store, list[str]]:
    """Two finished level-0 runs (two seeds each) in the page's store, one of them named."""
    store = Store(tmp_path / "store")
    ids = []
    for temperature, name in ((1.0, "baseline"), (0.5, None)):
        params = {"steps": 40, "seeds": [1, 2], "eval_every": 20, "temperature": temperature}
        run_id = create_run(store, "gradient_gating_l0", params, "cpu", name=name)
        execute_run(store, run_id)
        ids.append(run_id)
    return store, ids


def ema(values: list[float], weight: float) -> list[float]:
    """TensorBoard's debiased exponential moving average, written out independently."""
    out, last, norm = [], 0.0, 0.0
    for v in values:
        last = last * weight + (1 - weight) * v
        norm = norm * weight + (1 - weight)
        out.append(last / norm)
    return out


def test_compare_two_runs_smooth_scale_and_link(page, two_runs):
    store, ids = two_runs
    page.reload()
    page.wait_for_selector("body[data-ready]")
    page.wait_for_selector("#runs input.pick")
    assert "baseline" in page.locator("#runs").inner_text()  # the list shows the name
    for run_id in ids:
        page.check(f'#runs input.pick[data-run="{run_id}"]')
    page.click("#compare-btn")
    page.wait_for_selector("#compare-table tbody tr")
    assert page.url.endswith(f"#compare={ids[0]},{ids[1]}")

    # one column per run x condition, every level-0 metric a row, both runs' curves drawn
    header = page.locator("#compare-table thead").inner_text()
    assert header.count("standard") == 2 and header.count("gated") == 2 and "baseline" in header
    assert page.locator('#compare-table tr[data-metric="weight_cosine_sim"] td').count() == 4
    names = page.evaluate("document.querySelector('#compare-loss .plot').data.map(t => t.name)")
    assert any(n and n.startswith("baseline · gated") for n in names), names
    assert any(n and n.startswith(f"{ids[1]} · standard") for n in names), names
    metric_names = page.evaluate(
        """document.querySelector('#compare-metrics [data-metric="effective_rank"] .plot')
           .data.map(t => t.name).filter(Boolean)"""
    )
    assert len(metric_names) == 4, metric_names  # a mean per run and condition
    # issue 20: the run table says which parameters differ between the runs
    differs = page.locator("#compare-runs td.differs").all_inner_texts()
    assert differs == ["temperature=1", "temperature=0.5"]

    # the deep link opens the same comparison
    page.reload()
    page.wait_for_selector("body[data-ready]")
    page.wait_for_function("document.querySelectorAll('#compare-table thead th').length === 5")

    # individual seeds instead of the band: a line per seed
    page.check("#show-seeds")
    page.wait_for_function(
        """document.querySelector('#compare-metrics [data-metric="effective_rank"] .plot')
           .data.filter(t => t.name).length === 8"""
    )
    page.uncheck("#show-seeds")

    # linked step axes: zooming one chart zooms the others
    page.evaluate(
        """Plotly.relayout(
            document.querySelector('#compare-metrics [data-metric="effective_rank"] .plot'),
            {'xaxis.range': [5, 30]})"""
    )
    page.wait_for_function(
        """JSON.stringify(document.querySelector('#compare-loss .plot').layout.xaxis.range)
           === '[5,30]'"""
    )

    # log / linear per chart
    assert page.evaluate("document.querySelector('#compare-loss .plot').layout.yaxis.type") == "log"
    page.click('#compare-loss [data-metric="loss"] .scale')
    page.wait_for_function(
        "document.querySelector('#compare-loss .plot').layout.yaxis.type === 'linear'"
    )

    # smoothing on one run's page: the drawn curve is the EMA of the stored losses
    page.goto(page.url.split("#")[0] + f"#run={ids[0]}")
    page.reload()
    page.wait_for_selector("body[data-ready]")
    page.wait_for_selector("#loss-chart .plot .main-svg")
    page.evaluate(
        "const s = document.getElementById('smoothing'); s.value = '0.9';"
        "s.dispatchEvent(new Event('input'))"
    )
    page.wait_for_function("document.querySelector('#loss-chart .plot').data.length === 8")
    branch = next(b for b in store.branches(ids[0]) if b["condition"] == "gated" and b["seed"] == 2)
    stored = [r["value"] for r in store.losses(branch["id"])]
    drawn = page.evaluate(
        """document.querySelector('#loss-chart .plot').data
           .find(t => t.name === 'gated · seed 2').y"""
    )
    assert len(drawn) == len(stored) >= 20  # a point per step on a short run
    assert drawn == pytest.approx(ema(stored, 0.9), rel=1e-9)
    assert drawn != pytest.approx(stored, rel=1e-3)

    # issue 20: relative and wall-clock time on the x-axis, from the times the store recorded
    rows = store.losses(branch["id"], with_time=True)
    gated_2 = (
        "document.querySelector('#loss-chart .plot').data.find(t => t.name === 'gated · seed 2')"
    )
    page.select_option("#x-axis", "relative")
    page.wait_for_function(f"{gated_2}.x[0] !== 1")
    relative = [r["time"] - branch["started_at"] for r in rows]
    assert page.evaluate(f"{gated_2}.x") == pytest.approx(relative, abs=1e-6)
    assert 0 <= relative[0] <= relative[-1] < 60
    assert page.inner_text("#run-view .x-name >> nth=0") == "seconds since the branch started"
    page.select_option("#x-axis", "wall")
    page.wait_for_function(
        "document.querySelector('#loss-chart .plot').layout.xaxis.type === 'date'"
    )
    assert page.evaluate(f"{gated_2}.x") == pytest.approx([r["time"] * 1000 for r in rows])
    # the compare view's charts follow (the choice is kept), the metrics' mean at the seeds'
    # mean time of each evaluation
    page.goto(page.url.split("#")[0] + f"#compare={ids[0]},{ids[1]}")
    page.reload()
    page.wait_for_selector("body[data-ready]")
    page.wait_for_selector("#compare-metrics .plot .main-svg")
    assert page.input_value("#x-axis") == "wall"
    assert page.inner_text("#compare-view .x-name >> nth=0") == "wall-clock time"
    mean = page.evaluate(
        """document.querySelector('#compare-metrics [data-metric="effective_rank"] .plot')
           .data.find(t => t.name && t.name.startsWith('baseline · gated')).x"""
    )
    gated = [b for b in store.branches(ids[0]) if b["condition"] == "gated"]
    times = [[e["time"] for e in store.evals(b["id"], with_time=True)] for b in gated]
    assert mean == pytest.approx([1000 * (a + b) / 2 for a, b in zip(*times)])
    assert page.evaluate("document.querySelector('#compare-loss .plot').layout.xaxis.type") == (
        "date"
    )
    page.select_option("#x-axis", "step")
    page.wait_for_function(
        "document.querySelector('#compare-loss .plot').layout.xaxis.type === 'linear'"
    )


def test_name_note_filter_export_and_delete_a_run(page, two_runs):
    store, ids = two_runs
    page.goto(page.url.split("#")[0] + f"#run={ids[1]}")
    page.reload()
    page.wait_for_selector("body[data-ready]")
    page.wait_for_function(f"document.querySelector('#run-title').textContent === {ids[1]!r}")

    # name and note: edited on the page, stored, shown in the list
    page.fill("#run-name", "colder gate")
    page.fill("#run-note", "temperature 0.5: does a sharper mask help?")
    page.click("#run-config")  # leave the field: saved
    page.wait_for_function("document.querySelector('#label-status').textContent === 'saved'")
    run = store.get_run(ids[1])
    assert run["name"] == "colder gate" and run["note"].startswith("temperature 0.5")
    # issue 20, defect 13: the header names a named run (it showed the id alone), and a note
    # of two lines shows both (the box showed one)
    assert page.inner_text("#run-title") == "colder gate" and page.inner_text("#run-id") == ids[1]
    page.fill("#run-note", "first line\nsecond line")
    assert page.evaluate(
        "() => { const n = document.querySelector('#run-note');"
        " return n.rows === 2 && n.scrollHeight <= n.clientHeight + 1; }"
    )
    page.click("#run-config")
    page.wait_for_function("document.querySelector('#label-status').textContent === 'saved'")
    assert store.get_run(ids[1])["note"] == "first line\nsecond line"
    page.wait_for_function("document.querySelector('#runs').textContent.includes('colder gate')")

    # filter the list by text
    page.fill("#run-filter", "colder")
    page.wait_for_function("document.querySelectorAll('#runs li').length === 1")
    assert "colder gate" in page.locator("#runs").inner_text()
    page.fill("#run-filter", "")
    page.wait_for_function("document.querySelectorAll('#runs li').length === 2")

    # export: the JSON download holds the run's numbers
    with page.expect_download() as download:
        page.click('#export-links a[data-format="json"]')
    document = json.loads(Path(download.value.path()).read_text())
    assert document["run"]["run_id"] == ids[1] and document["run"]["name"] == "colder gate"
    assert len(document["branches"]) == 4
    with page.expect_download() as download:
        page.click('#export-links a[data-format="tensorboard"]')
    assert download.value.suggested_filename == f"{ids[1]}-tensorboard.zip"

    # delete, after the confirmation: gone from the list, the store and the disk
    files = [p for p in (store.root / "checkpoints").rglob("*") if ids[1] in str(p)]
    assert files
    page.once("dialog", lambda dialog: dialog.accept())
    page.click("#delete-btn")
    page.wait_for_function("document.querySelector('#empty').textContent.startsWith('Deleted run')")
    page.wait_for_function("document.querySelectorAll('#runs li').length === 1")
    assert [r["id"] for r in store.list_runs()] == [ids[0]]
    assert not any(p.exists() for p in files)

"""Decisions over many hypotheses (DESIGN.md): adjusted p-values, equivalence, power, families,
verdicts, the bad-input messages and ``acc power``, against known answers.

Stores here are written directly (runs, branches and their final metrics), so nothing trains.
"""

from __future__ import annotations

import gc
import json
import math

import pytest
from fastapi.testclient import TestClient
from statsmodels.stats.power import TTestPower
from statsmodels.stats.weightstats import ttost_paired
from typer.testing import CliRunner

from acc.cli import app
from acc.decisions import (
    DEFAULT_DELTAS,
    DecisionError,
    adjust,
    check_correction,
    check_deltas,
    parse_deltas,
    with_deltas,
)
from acc.eval_metric import EvalMetric
from acc.results import build_results, build_sweep_results
from acc.server import create_app
from acc.stats import Hypothesis, compare, mde80, paired_comparison, seeds_needed
from acc.status import Status
from acc.store import Store

P = [0.01, 0.04, 0.03, 0.005]
# Hand-verified: Holm sorts (0.005, 0.01, 0.03, 0.04) and multiplies by (4, 3, 2, 1), then
# keeps the running maximum: 0.02, 0.03, 0.06, max(0.06, 0.04); Benjamini-Hochberg multiplies
# by 4 / rank (0.02, 0.02, 0.04, 0.04) and keeps the running minimum from the top.
HOLM = [0.03, 0.06, 0.06, 0.02]
BH = [0.02, 0.04, 0.04, 0.02]
BONFERRONI = [0.04, 0.16, 0.12, 0.02]


def _rows(pvalues: list[float], direction: str = "lower") -> list[dict]:
    return [
        {"p_value": p, "mean_diff": -1.0, "direction": direction, "equivalent": False}
        | {"n": 3, "ci90": [-2.0, -0.5], "seeds_needed": 4}
        for p in pvalues
    ]


@pytest.mark.parametrize(
    "method, expected", [("holm", HOLM), ("fdr_bh", BH), ("bonferroni", BONFERRONI), ("none", P)]
)
def test_adjusted_p_values_are_the_known_answers(method, expected):
    rows = adjust(_rows(P), "f", method)
    assert [r["p_adjusted"] for r in rows] == pytest.approx(expected)
    assert all(r["family"] == "f" and r["family_size"] == 4 for r in rows)
    assert all(r["adjustment"] == method for r in rows)
    verdicts = [r["verdict"] for r in rows]
    assert verdicts == ["supported" if p < 0.05 else "inconclusive" for p in expected]


def test_holm_leaves_the_garbage_collector_as_it_was():
    # statsmodels' Holm runs gc.collect(); acc.decisions freezes what exists around it
    adjust(_rows([0.011, 0.021, 0.031]), "f", "holm")
    assert gc.get_freeze_count() == 0 and gc.isenabled()


def test_rows_without_a_p_value_are_no_tests_of_the_family():
    rows = _rows([0.01, 0.02]) + [
        {"p_value": None, "mean_diff": -1.0, "direction": "lower", "equivalent": False}
        | {"n": 1, "ci90": None, "seeds_needed": None}
    ]
    adjust(rows, "f", "holm")
    assert [r["p_adjusted"] for r in rows] == pytest.approx([0.02, 0.02, None])
    assert {r["family_size"] for r in rows} == {2}
    assert rows[2]["verdict"] == "inconclusive" and rows[2]["verdict_note"] == "needs ≥ 2 seeds"


def _runs(diffs_by_metric: dict[str, list[float]]) -> dict:
    """Per-seed metrics whose gated - standard differences are the given ones."""
    seeds = range(len(next(iter(diffs_by_metric.values()))))
    standard = {s: {m: 1.0 for m in diffs_by_metric} for s in seeds}
    gated = {s: {m: 1.0 + d[s] for m, d in diffs_by_metric.items()} for s in seeds}
    return {"standard": standard, "gated": gated}


def test_holm_turns_a_lone_supported_into_inconclusive():
    # one clear-looking difference (p = 0.013 alone) among five hypotheses that show nothing
    diffs = {"weight_cosine_sim": [-0.008, -0.012, -0.010]}
    diffs |= {m: [0.3, -0.2, -0.1] for m in ("psnr", "l1", "effective_rank", "hoyer_sparsity")}
    hypotheses = with_deltas([Hypothesis(m, "lower") for m in diffs])
    rows = [compare(h, _runs(diffs)) for h in hypotheses]
    lone = rows[0]
    assert lone["p_value"] == pytest.approx(0.0131, abs=1e-4)
    assert lone["verdict"] == "supported" == lone["verdict_unadjusted"]  # a family of one
    adjust(rows, "run r", "holm")
    assert lone["p_adjusted"] == pytest.approx(5 * lone["p_value"])
    assert lone["verdict"] == "inconclusive" and lone["verdict_unadjusted"] == "supported"
    assert lone["verdict_note"].startswith("excludes |d| > 0.01")  # 90% interval's far end


def test_equivalence_holds_and_fails_as_statsmodels_tost_says():
    a, b = [1.001, 0.998, 1.0005], [1.0, 1.0, 1.0]
    diffs = [x - y for x, y in zip(a, b)]
    for delta, expected in ((0.01, True), (0.002, False)):
        row = paired_comparison(diffs, "lower", delta)
        p_tost = ttost_paired(_array(a), _array(b), -delta, delta)[0]
        assert row["equivalent"] is expected is bool(p_tost < 0.05)
        low, high = row["ci90"]  # the same statement: the 90% interval inside (-delta, delta)
        assert (-delta < low and high < delta) is expected
        assert row["verdict"] == ("equivalent" if expected else "inconclusive")
    assert paired_comparison(diffs, "lower", 0.002)["verdict_note"] == (
        "excludes |d| > 0.0029; needs 8 seeds"
    )


def _array(values):
    import numpy as np

    return np.asarray(values)


def test_power_matches_statsmodels_and_the_textbook():
    assert seeds_needed(sd=1.0, delta=1.0) == 10  # d = 1, 80% power, paired t: n = 10
    expected = math.ceil(TTestPower().solve_power(effect_size=0.25, alpha=0.05, power=0.8))
    assert seeds_needed(sd=0.04, delta=0.01) == expected == 128
    assert seeds_needed(sd=0.01, delta=1.0) == 2  # huge effect: the fewest seeds with a test
    for effect in (0.05, 0.2, 0.5, 0.8, 1.3, 2.0, 3.0):  # the integer search = solve_power's root
        root = TTestPower().solve_power(effect_size=effect, alpha=0.05, power=0.8)
        assert seeds_needed(1.0, effect) == max(2, math.ceil(root))
    # where scipy's noncentral t answers NaN (large effects, few seeds): still the fewest seeds
    assert [seeds_needed(1.0, effect) for effect in (4.67, 5.31)] == [3, 3]
    effect = TTestPower().solve_power(nobs=3, alpha=0.05, power=0.8)
    assert mde80(2.0, 3) == pytest.approx(2.0 * effect)
    assert TTestPower().power(mde80(2.0, 3) / 2.0, 3, 0.05) == pytest.approx(0.8)


def test_zero_spread_and_single_seeds_give_numbers_not_nan():
    same = paired_comparison([0.0, 0.0, 0.0], "lower", 0.01)  # a gate of strength 0
    assert same["p_value"] == 1.0 and same["equivalent"] and same["verdict"] == "equivalent"
    # a count that moved by the same whole unit in every seed: no t statistic, so the exact
    # sign-flip test (2 / 2^n): two seeds agreeing decide nothing, six do
    shifted = paired_comparison([-1.0, -1.0], "lower", 0.01)
    assert shifted["p_value"] == pytest.approx(0.5) and shifted["verdict"] == "inconclusive"
    assert shifted["mde80"] == 0.0 and shifted["seeds_needed"] == 6
    five = paired_comparison([1.0] * 5, "higher", 0.01)
    assert five["p_value"] == pytest.approx(0.0625) and five["verdict"] == "inconclusive"
    six = paired_comparison([1.0] * 6, "higher", 0.01)
    assert six["p_value"] == pytest.approx(0.03125) and six["verdict"] == "supported"
    one = paired_comparison([-3.0], "lower", 0.01)
    assert one["p_value"] is None and one["verdict_note"] == "needs ≥ 2 seeds"
    nothing = paired_comparison([], "lower", 0.01)
    assert nothing["mean_diff"] is None and nothing["verdict_note"] == "no paired seeds"
    json.dumps([same, shifted, one, nothing], allow_nan=False)


def test_every_metric_has_a_default_delta_and_overrides_go_most_specific_first():
    assert set(DEFAULT_DELTAS) == set(EvalMetric) and min(DEFAULT_DELTAS.values()) > 0
    h = [
        Hypothesis("weight_cosine_sim[conv1]", "lower"),
        Hypothesis("weight_cosine_sim[conv2]", "lower"),
        Hypothesis("psnr", "higher", delta=2.0),
        Hypothesis("effective_rank", "higher"),
    ]
    resolved = with_deltas(
        h, {"weight_cosine_sim[conv1]": 0.005, "weight_cosine_sim": 0.02}, {"effective_rank": 3}
    )
    assert [x.delta for x in resolved] == [0.005, 0.02, 2.0, 3]
    assert [x.delta for x in with_deltas(h)] == [0.01, 0.01, 2.0, 1.0]


@pytest.mark.parametrize(
    "deltas, message",
    [
        ({"weight_cosine_sim": 0}, "must be a finite number > 0"),
        ({"weight_cosine_sim": -0.1}, "must be a finite number > 0"),
        ({"weight_cosine_sim": float("nan")}, "must be a finite number > 0"),
        ({"weight_cosine_sim": float("inf")}, "must be a finite number > 0"),
        ({"weight_cosine_sim": "x"}, "must be a number"),
        ({"colour": 1.0}, "unknown metric 'colour': the hypotheses test psnr, weight_cosine_sim"),
    ],
)
def test_bad_deltas_say_what_is_valid(deltas, message):
    with pytest.raises(DecisionError, match=message.replace("[", r"\[")):
        check_deltas(
            deltas, [Hypothesis("weight_cosine_sim", "lower"), Hypothesis("psnr", "lower")]
        )


def test_bad_corrections_and_delta_syntax_say_what_is_valid():
    assert check_correction(None, "holm") == "holm" and check_correction("fdr_bh", "x") == "fdr_bh"
    with pytest.raises(DecisionError, match="valid: holm, bonferroni, fdr_bh, none"):
        check_correction("bh", "holm")
    assert parse_deltas(["psnr=0.25", "kl[digit]=2"]) == {"psnr": 0.25, "kl[digit]": 2.0}
    for bad, why in (("psnr", "METRIC=VALUE"), ("psnr=abc", "not a number"), ("psnr=nan", "> 0")):
        with pytest.raises(DecisionError, match=why):
            parse_deltas([bad])


# --- results from a store: runs, sweeps, the CLI and the API -------------------------------


def _finished_run(store: Store, hypotheses, metrics, config=None, sweep_id=None, setting=None):
    """A completed run with ``metrics[condition][seed]`` as its branches' final metrics."""
    run_id = store.create_run(
        "gradient_gating_l0",
        {"seeds": sorted({s for m in metrics.values() for s in m}), **(config or {})},
        [h.to_dict() for h in hypotheses],
        {name: "" for name in metrics},
        sweep_id=sweep_id,
        setting=setting,
    )
    for condition, by_seed in metrics.items():
        for seed, values in by_seed.items():
            branch = store.plan_branch(run_id, condition, seed)
            store.start_branch(branch)
            store.record_metrics(branch, values)
            store.finish_branch(branch, Status.COMPLETED, steps_done=1)
    store.finish_run(run_id, Status.COMPLETED)
    return run_id


L0_DIFFS = {
    "weight_cosine_sim": [-0.008, -0.012, -0.010],
    "activation_sparsity": [0.3, -0.2, -0.1],
    "effective_rank": [0.3, -0.2, -0.1],
    "effective_rank_normalized": [0.02, -0.01, -0.01],
    "hoyer_sparsity": [0.3, -0.2, -0.1],
}


@pytest.fixture
def run_store(tmp_path):
    store = Store(tmp_path / "store")
    hypotheses = [Hypothesis(m, "lower") for m in L0_DIFFS]  # stored as before deltas existed
    run_id = _finished_run(store, hypotheses, _runs(L0_DIFFS))
    return store, run_id


def test_a_run_is_one_holm_family_and_rereads_with_other_choices(run_store):
    store, run_id = run_store
    rows = build_results(store, run_id)["comparisons"]
    assert {(r["family"], r["family_size"], r["adjustment"]) for r in rows} == {
        (f"run {run_id}", 5, "holm")
    }
    assert rows[0]["verdict_unadjusted"] == "supported" and rows[0]["verdict"] == "inconclusive"
    assert rows[0]["delta"] == 0.01 and rows[3]["delta"] == 1.0  # the metrics' defaults
    assert rows[3]["verdict"] == "equivalent"  # effective rank moved by < 0.02 of a dimension
    unadjusted = build_results(store, run_id, correction="none")["comparisons"]
    assert unadjusted[0]["verdict"] == "supported"
    wide = build_results(store, run_id, deltas={"weight_cosine_sim": 0.05})["comparisons"]
    assert wide[0]["delta"] == 0.05 and wide[0]["verdict"] == "equivalent"
    json.dumps(build_results(store, run_id), allow_nan=False)


def test_a_sweeps_heatmap_is_one_benjamini_hochberg_family_per_metric_and_pair(tmp_path):
    store = Store(tmp_path / "store")
    cells = [{"temperature": 0.5}, {"temperature": 2.0}]
    settings = [{"id": "lr=0.1", "params": {"lr": 0.1}}, {"id": "lr=1", "params": {"lr": 1}}]
    spec = {"axes": {"grid": {}, "zip": {}}, "base_params": {"seeds": [1, 2, 3]}}
    sweep_id = store.create_sweep(
        "gradient_gating_l0", {**spec, "settings": settings, "cells": cells, "branches": 0}
    )
    metrics = ("weight_cosine_sim", "psnr")
    for k, setting in enumerate(settings):
        arms = {"standard": {s: {m: 1.0 for m in metrics} for s in (1, 2, 3)}}
        hypotheses = []
        for j, cell in enumerate(cells):
            for control in ("standard", "shuffled"):
                arms[f"{control}[temperature={cell['temperature']}]"] = arms["standard"]
            name = f"gated[temperature={cell['temperature']}]"
            shift = 0.01 * (k + j + 1)
            arms[name] = {s: {m: 1.0 - shift + 0.001 * s for m in metrics} for s in (1, 2, 3)}
            hypotheses += [Hypothesis(m, "lower", treatment=name) for m in metrics]
            shuffled = f"shuffled[temperature={cell['temperature']}]"
            hypotheses += [
                Hypothesis(m, "lower", treatment=name, control=shuffled) for m in metrics
            ]
        arms.pop("standard[temperature=0.5]"), arms.pop("standard[temperature=2.0]")
        _finished_run(store, hypotheses, arms, sweep_id=sweep_id, setting=setting["id"])
    results = build_sweep_results(store, sweep_id)
    rows = [c for cell in results["cells"] for c in cell["comparisons"]]
    families = {r["family"] for r in rows}
    assert families == {
        f"sweep {sweep_id}: {m}, gated vs {b}" for m in metrics for b in ("standard", "shuffled")
    }
    assert {r["family_size"] for r in rows} == {4} and {r["adjustment"] for r in rows} == {"fdr_bh"}
    from statsmodels.stats.multitest import multipletests

    for family in families:
        members = [r for r in rows if r["family"] == family]
        expected = multipletests([r["p_value"] for r in members], method="fdr_bh")[1]
        assert [r["p_adjusted"] for r in members] == pytest.approx(list(expected))
    holm = build_sweep_results(store, sweep_id, correction="holm")
    assert {c["adjustment"] for cell in holm["cells"] for c in cell["comparisons"]} == {"holm"}
    json.dumps(results, allow_nan=False)


runner = CliRunner()


def test_acc_power_prints_the_detectable_effect_and_the_seeds_needed(run_store):
    store, run_id = run_store
    root = str(store.root)
    table = runner.invoke(app, ["power", run_id, "--store", root])
    assert table.exit_code == 0, table.output
    assert "mde80 now" in table.output and "seeds for δ" in table.output
    assert "weight_cosine_sim" in table.output
    shown = runner.invoke(app, ["power", run_id, "--store", root, "--json"])
    rows = json.loads(shown.output)["hypotheses"]
    row = rows[0]
    assert row["n"] == 3 and row["sd_diff"] == pytest.approx(0.002)
    assert row["mde80"] == pytest.approx(
        0.002 * TTestPower().solve_power(nobs=3, alpha=0.05, power=0.8)
    )
    assert row["seeds_needed"] == seeds_needed(0.002, 0.01) and row["verdict"] == "inconclusive"
    other = runner.invoke(app, ["power", run_id, "--store", root, "--json", "--delta", "psnr=1"])
    assert other.exit_code == 2 and "unknown metric 'psnr'" in other.output
    unknown = runner.invoke(app, ["power", "nope", "--store", root])
    assert unknown.exit_code == 2 and "no run 'nope' in the store" in unknown.output


def test_acc_show_rereads_with_another_delta_and_correction(run_store):
    store, run_id = run_store
    args = ["show", run_id, "--store", str(store.root), "--json"]
    shown = json.loads(runner.invoke(app, [*args, "--correction", "none"]).output)
    assert shown["comparisons"][0]["verdict"] == "supported"
    table = runner.invoke(app, ["show", run_id, "--store", str(store.root)])
    assert "p adjusted with holm over 5 tests" in table.output
    assert "excludes |d| > 0.013" in table.output and "equivalent" in table.output
    bad = runner.invoke(app, [*args, "--correction", "bh"])
    assert bad.exit_code == 2 and "valid: holm, bonferroni, fdr_bh, none" in bad.output


@pytest.mark.parametrize(
    "option, message",
    [
        (["--delta", "weight_cosine_sim=0"], "must be a finite number > 0"),
        (["--delta", "weight_cosine_sim=inf"], "must be a finite number > 0"),
        (["--delta", "colour=1"], "unknown metric 'colour'"),
        (["--correction", "bh"], "unknown correction 'bh'"),
    ],
)
def test_acc_run_refuses_bad_decisions_before_anything_trains(tmp_path, option, message):
    result = runner.invoke(
        app, ["run", "gradient_gating_l0", "--steps", "1", "--store", str(tmp_path), *option]
    )
    assert result.exit_code == 2 and message in " ".join(result.output.split())
    if (tmp_path / "acc.sqlite").exists():
        assert Store(tmp_path).list_runs() == []


def test_a_run_stores_its_deltas_and_correction(tmp_path):
    from acc.runner import create_run

    store = Store(tmp_path)
    run_id = create_run(
        store,
        "gradient_gating_l0",
        {"steps": 1},
        "cpu",
        deltas={"weight_cosine_sim": 0.005},
        correction="bonferroni",
    )
    run = store.get_run(run_id)
    assert run["config"]["correction"] == "bonferroni"
    assert run["config"]["deltas"] == {"weight_cosine_sim": 0.005}
    assert {h["metric"]: h["delta"] for h in run["hypotheses"]} == {
        "weight_cosine_sim": 0.005,
        "activation_sparsity": 0.01,
        "effective_rank": 1.0,
        "effective_rank_normalized": 1.0,
        "hoyer_sparsity": 0.01,
    }


@pytest.mark.parametrize(
    "extra, fragment",
    [
        ({"deltas": {"weight_cosine_sim": -1}}, "must be a finite number > 0"),
        ({"deltas": {"colour": 1}}, "unknown metric 'colour'"),
        ({"correction": "bh"}, "unknown correction 'bh'"),
    ],
)
def test_the_api_answers_bad_decisions_with_422(tmp_path, extra, fragment):
    with TestClient(create_app(tmp_path / "store", max_concurrent=0)) as client:
        body = {"recipe": "gradient_gating_l0", "params": {"steps": 1}, **extra}
        response = client.post("/api/jobs", json=body)
        assert response.status_code == 422 and fragment in response.text
        ok = client.post("/api/jobs", json={**body, "deltas": {"psnr": 1}, "correction": None})
        assert ok.status_code == 422  # psnr is no hypothesis of level 0
        good = {"deltas": {"weight_cosine_sim": 0.005}, "correction": "fdr_bh"}
        assert client.post("/api/jobs", json={**body, **good}).status_code == 202

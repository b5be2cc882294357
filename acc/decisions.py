"""Decisions over many hypotheses (DESIGN.md): which rows are adjusted together, with which
correction, and the smallest effect of interest (``delta``) each row is judged against.

A run tests many hypotheses at once and a sweep tests each metric in every cell, so at 5% per
test some "decisive" verdicts appear by chance alone. Rows are therefore decided in families:
a run's rows together (Holm: family-wise error), a sweep's rows of one metric and one (a, b)
pair across its cells and settings together (Benjamini-Hochberg: false discovery rate), with
statsmodels' ``multipletests``.

``delta`` has a default per metric (``DEFAULT_DELTAS``, in the metric's own units: the size
of a difference that would matter to the science, not a statistical quantity). A recipe may
declare its own per metric in a ``deltas`` class attribute (``{"psnr": 1.0}``; a key is a full
result key like ``"weight_cosine_sim[conv1]"`` or a base metric name), a hypothesis its own
``delta``, and a user one per run (``acc run --delta``), most specific first.
"""

from __future__ import annotations

import gc
import math
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from functools import lru_cache

from acc.eval_metric import EvalMetric
from acc.stats import ALPHA, Hypothesis, decide

CORRECTIONS = ("holm", "bonferroni", "fdr_bh", "none")
RUN_CORRECTION = "holm"  # a run's rows: one family, family-wise error
SWEEP_CORRECTION = "fdr_bh"  # a sweep's heatmap: one family, false discovery rate

M = EvalMetric
DISENTANGLEMENT_DELTA = 0.02  # scores on [0, 1]: two points of a hundred
DEFAULT_DELTAS: dict[EvalMetric, float] = {
    M.L1: 0.001,  # mean |error| per pixel on [0, 1]
    M.PSNR: 0.5,  # dB
    M.WEIGHT_COSINE_SIM: 0.01,
    M.EFFECTIVE_RANK: 1.0,  # one more dimension in use
    M.EFFECTIVE_RANK_NORMALIZED: 1.0,
    M.ACTIVATION_SPARSITY: 0.01,  # a fraction of channels
    M.SPARSITY_VARIANCE: 0.001,
    M.HOYER_SPARSITY: 0.01,
    M.DEAD_UNITS: 1.0,  # one unit
    M.WEIGHT_NORM_CONCENTRATION: 0.02,
    M.GATE_ENTROPY: 0.05,
    M.GATE_MAX: 0.1,
    M.KL: 1.0,  # nats
    M.KL_PER_DIM: 0.1,
    M.ACTIVE_UNITS: 1.0,
    **dict.fromkeys(
        (
            M.MIG,
            M.DCI_DISENTANGLEMENT,
            M.DCI_COMPLETENESS,
            M.DCI_INFORMATIVENESS,
            M.SAP,
            M.FACTOR_INFORMATIVENESS,
            M.FACTOR_LEAKAGE,
            M.TRAVERSAL_SPECIFICITY,
            M.PROBE_ACCURACY,
            M.PROBE_R2,
        ),
        DISENTANGLEMENT_DELTA,
    ),
}


class DecisionError(ValueError):
    """A delta or correction that cannot be used; the message says what is valid."""


def base_metric(key: str) -> str:
    """``"weight_cosine_sim[conv1]"`` -> ``"weight_cosine_sim"``."""
    return key.partition("[")[0]


def default_delta(key: str) -> float | None:
    try:
        return DEFAULT_DELTAS.get(EvalMetric(base_metric(key)))
    except ValueError:
        return None


def check_correction(name: str | None, default: str) -> str:
    if name is None:
        return default
    if name not in CORRECTIONS:
        raise DecisionError(
            f"unknown correction {name!r}; valid: {', '.join(CORRECTIONS)} "
            f"(holm: family-wise error, fdr_bh: Benjamini-Hochberg false discovery rate)"
        )
    return name


def parse_deltas(pairs: Iterable[str]) -> dict[str, float]:
    """``["weight_cosine_sim=0.005"]`` -> ``{"weight_cosine_sim": 0.005}``, values checked
    (keys are checked against a recipe's hypotheses by ``check_deltas``)."""
    out = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep or not key.strip():
            raise DecisionError(
                f"--delta takes METRIC=VALUE, e.g. weight_cosine_sim=0.005; got {pair!r}"
            )
        try:
            value = float(text)
        except ValueError:
            raise DecisionError(f"--delta {pair!r}: {text!r} is not a number") from None
        out[key.strip()] = check_delta(key.strip(), value)
    return out


def check_delta(key: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise DecisionError(f"delta for {key!r} must be a number, got {value!r}")
    if not math.isfinite(value) or value <= 0:
        raise DecisionError(
            f"delta for {key!r} must be a finite number > 0 (the smallest effect of "
            f"interest, in the metric's units), got {value!r}"
        )
    return float(value)


def check_deltas(deltas: dict[str, float] | None, hypotheses: list[Hypothesis]) -> dict:
    """Each delta finite and > 0, each key a metric some hypothesis tests (its full key or
    base name): a delta that would change nothing is a typo, said before anything trains."""
    valid = {h.metric for h in hypotheses} | {base_metric(h.metric) for h in hypotheses}
    out = {}
    for key, value in (deltas or {}).items():
        out[key] = check_delta(key, value)
        if key not in valid:
            raise DecisionError(
                f"delta for unknown metric {key!r}: the hypotheses test {', '.join(sorted(valid))}"
            )
    return out


def with_deltas(
    hypotheses: list[Hypothesis], overrides: dict | None = None, recipe_deltas: dict | None = None
) -> list[Hypothesis]:
    """Each hypothesis with its delta resolved: the user's (full key, then base name), its
    own, the recipe's (full key, then base name), the metric's default."""
    overrides, recipe_deltas = overrides or {}, recipe_deltas or {}
    out = []
    for h in hypotheses:
        base = base_metric(h.metric)
        delta = next(
            (
                d
                for d in (
                    overrides.get(h.metric),
                    overrides.get(base),
                    h.delta,
                    recipe_deltas.get(h.metric),
                    recipe_deltas.get(base),
                    default_delta(h.metric),
                )
                if d is not None
            ),
            None,
        )
        out.append(replace(h, delta=delta))
    return out


def adjust(rows: list[dict], family: str, correction: str) -> list[dict]:
    """Adjust the p-values of one family's rows together (rows without a p-value, n < 2, are
    not tests and do not count) and re-decide each row's verdict on its adjusted p-value."""
    tested = [row for row in rows if row["p_value"] is not None]
    adjusted = adjusted_p_values(tuple(row["p_value"] for row in tested), correction)
    adjusted_of = {id(row): p for row, p in zip(tested, adjusted)}
    for row in rows:
        row.update(family=family, family_size=len(tested), adjustment=correction)
        row["p_adjusted"] = adjusted_of.get(id(row))
        decide(row, row["direction"])
    return rows


@lru_cache(maxsize=1024)  # a run's page re-reads the same rows while it trains
def adjusted_p_values(pvalues: tuple[float, ...], correction: str) -> tuple[float, ...]:
    if not pvalues or correction == "none":
        return pvalues
    from statsmodels.stats.multitest import multipletests

    with _collection_of_new_objects_only():
        adjusted = multipletests(pvalues, alpha=ALPHA, method=correction)[1]
    return tuple(float(p) for p in adjusted)


@contextmanager
def _collection_of_new_objects_only() -> Iterator[None]:
    """statsmodels' Holm calls ``gc.collect()``, which scans every object of the process: a
    third of a second beside torch. Objects that exist already are set aside for the call
    (``gc.freeze``), so the collection scans only what the call made; they are put back after
    (unless something else froze objects before, whose choice is left alone)."""
    frozen_before = gc.get_freeze_count()
    gc.freeze()
    try:
        yield
    finally:
        if not frozen_before:
            gc.unfreeze()

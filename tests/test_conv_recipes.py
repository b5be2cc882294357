"""Levels 1 and 2 end to end through the real CLI, on tiny IDX files so each run takes seconds."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from safetensors.torch import load_file
from typer.testing import CliRunner

from acc.cli import app

runner = CliRunner()
LAYER_METRICS = (
    "weight_cosine_sim",
    "effective_rank",
    "activation_sparsity",
    "sparsity_variance",
    "dead_units",
)
DEPTH_ROW = "depth: weight_cosine_sim conv1 - conv2"


def run_recipe(
    recipe: str, tmp_path, data_dir, *extra: str, seeds: str = "42,123", eval_every: str = "2"
) -> tuple[dict, str]:
    out = tmp_path / f"{recipe}.json"
    result = runner.invoke(
        app,
        [
            "run",
            recipe,
            "--steps",
            "3",
            "--seeds",
            seeds,
            "--eval-every",
            eval_every,
            "-p",
            "batch_size=16",
            "--data-dir",
            str(data_dir),
            "--store",
            str(tmp_path / "store"),
            "--json",
            str(out),
            *extra,
        ],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    return json.loads(out.read_text()), result.output


def comparison(results: dict, metric: str) -> dict:
    [row] = [c for c in results["comparisons"] if c["metric"] == metric]
    return row


def per_seed(results: dict, condition: str) -> dict[int, dict]:
    return {r["seed"]: r["metrics"] for r in results["conditions"][condition]["runs"]}


def check_common(results: dict, recipe: str) -> None:
    assert results["recipe"] == recipe and results["status"] == "completed"
    for condition in ("standard", "gated"):
        entry = results["conditions"][condition]
        assert [r["steps"] for r in entry["runs"]] == [3, 3]
        for key in (
            "l1",
            "psnr",
            *(f"{m}[{layer}]" for m in LAYER_METRICS for layer in ("conv1", "conv2")),
        ):
            assert isinstance(entry["mean"][key], float), key
            assert math.isfinite(entry["mean"][key]), key
        assert "weight_cosine_sim" not in entry["mean"]  # several layers: only labelled keys
    for key in (
        f"{m}[{layer}]"
        for m in ("weight_cosine_sim", "effective_rank", "activation_sparsity")
        for layer in ("conv1", "conv2")
    ):
        assert comparison(results, key)["n"] == 2
    # the depth row is the paired difference of differences, computed by hand here
    standard, gated = per_seed(results, "standard"), per_seed(results, "gated")
    diffs = [
        (gated[s]["weight_cosine_sim[conv1]"] - gated[s]["weight_cosine_sim[conv2]"])
        - (standard[s]["weight_cosine_sim[conv1]"] - standard[s]["weight_cosine_sim[conv2]"])
        for s in (42, 123)
    ]
    row = comparison(results, DEPTH_ROW)
    assert row["hypothesis"] == "gating lowers conv1's cosine similarity more than conv2's"
    assert row["mean_diff"] == pytest.approx(sum(diffs) / 2, rel=1e-9, abs=1e-15)
    assert row["ci95"][0] <= row["mean_diff"] <= row["ci95"][1]
    assert row["verdict"] in ("supported", "contradicted", "equivalent", "inconclusive")
    assert row["delta"] == 0.01 and row["family_size"] == len(results["comparisons"])


def final_weights(results: dict, condition: str, seed: int = 42) -> dict:
    [run] = [r for r in results["conditions"][condition]["runs"] if r["seed"] == seed]
    return load_file(run["checkpoint"])


def test_level1_runs_through_the_cli(tmp_path, tiny_mnist):
    results, output = run_recipe("gradient_gating_l1", tmp_path, tiny_mnist)
    check_common(results, "gradient_gating_l1")
    assert results["config"]["gate_conv1"] == 1.0 and results["config"]["gate_conv2"] == 0.5
    assert "weight_cosine_sim[conv1]" in output  # the bracketed label survives rich markup
    standard, gated = final_weights(results, "standard"), final_weights(results, "gated")
    assert set(standard) == set(gated) and "encoder.conv1.weight" in standard
    # the gate reached the conv weights: three gated steps differ from three plain ones
    assert not np.allclose(standard["encoder.conv1.weight"], gated["encoder.conv1.weight"])


def test_level1_zero_gate_strength_trains_identically(tmp_path, tiny_mnist):
    results, _ = run_recipe(
        "gradient_gating_l1",
        tmp_path,
        tiny_mnist,
        "-p",
        "gate_conv1=0",
        "-p",
        "gate_conv2=0",
        seeds="42",
        eval_every="0",
    )
    standard, gated = final_weights(results, "standard"), final_weights(results, "gated")
    for name, tensor in standard.items():
        assert np.array_equal(tensor.numpy(), gated[name].numpy()), name


def test_level2_runs_through_the_cli(tmp_path, tiny_mnist):
    results, output = run_recipe("gradient_gating_l2", tmp_path, tiny_mnist)
    check_common(results, "gradient_gating_l2")
    assert results["config"]["beta"] == 0.05 and results["config"]["latent_dim"] == 16
    for condition in ("standard", "gated"):
        for metrics in per_seed(results, condition).values():
            kl_dims = metrics["kl_per_dim"]
            assert len(kl_dims) == 16 and all(v >= 0 for v in kl_dims)
            assert sum(kl_dims) == pytest.approx(metrics["kl"], rel=1e-9)
            assert 0 <= metrics["active_units"] <= 16
        mean = results["conditions"][condition]["mean"]
        assert len(mean["kl_per_dim"]) == 16 and isinstance(mean["active_units"], float)
    assert comparison(results, "active_units")["hypothesis"] == "gated > standard"
    assert "kl_per_dim" in output  # the list-valued metric gets its own small table
    standard, gated = final_weights(results, "standard"), final_weights(results, "gated")
    assert not np.allclose(standard["encoder.conv1.weight"], gated["encoder.conv1.weight"])

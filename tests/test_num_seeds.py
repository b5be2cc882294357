"""`--num-seeds N`: the first N seeds of one fixed list, in the CLI, sweeps and the API."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from acc.cli import app
from acc.recipes import recipe_registry
from acc.recipes.base import SEED_LIST
from acc.runner import ParamsError, validate_params
from acc.server import create_app
from acc.store import Store

L0 = recipe_registry().get("gradient_gating_l0")


def test_the_list_starts_with_the_plans_seeds_and_holds_a_thousand():
    assert SEED_LIST[:5] == (42, 123, 456, 1000, 1001)
    assert len(SEED_LIST) == len(set(SEED_LIST)) == 1000
    assert validate_params(L0, {"num_seeds": 10}).seeds == list(SEED_LIST[:10])


@pytest.mark.parametrize(
    "params,message",
    [
        ({"num_seeds": 0}, "num_seeds must be a whole number from 1 to 1000, got 0"),
        ({"num_seeds": 1001}, "from 1 to 1000, got 1001"),
        ({"num_seeds": "many"}, "got 'many'"),
        ({"num_seeds": 3, "seeds": [1, 2]}, "give seeds (a list) or num_seeds (a count), not both"),
    ],
)
def test_bad_counts_are_refused_before_anything_trains(params, message):
    with pytest.raises(ParamsError) as err:
        validate_params(L0, params)
    assert message in str(err.value)


def test_cli_run_and_sweep_take_num_seeds(tmp_path, tiny_mnist):
    runner = CliRunner()
    common = [
        "--store",
        str(tmp_path / "s"),
        "--data-dir",
        str(tiny_mnist),
        "--steps",
        "2",
        "-p",
        "batch_size=16",
    ]
    result = runner.invoke(
        app, ["run", "gradient_gating_l0", "--num-seeds", "4", "--eval-every", "0", *common]
    )
    assert result.exit_code == 0, result.output
    both = runner.invoke(
        app, ["run", "gradient_gating_l0", "--num-seeds", "2", "--seeds", "1,2", *common]
    )
    assert both.exit_code == 2 and "not both" in both.output
    sweep = runner.invoke(
        app,
        ["sweep", "gradient_gating_l0", "--grid", "gate_strength=0.5", "--num-seeds", "2",
         "--eval-every", "0", *common],
    )  # fmt: skip
    assert sweep.exit_code == 0, sweep.output
    store = Store(tmp_path / "s")
    seeds = sorted(store.get_run(r["id"])["config"]["seeds"] for r in store.list_runs())
    store.close()
    assert seeds == [[42, 123], [42, 123, 456, 1000]]


def test_the_api_takes_num_seeds_and_says_what_is_wrong(tmp_path):
    with TestClient(create_app(tmp_path / "store", max_concurrent=0)) as client:
        job = client.post(
            "/api/jobs", json={"recipe": "gradient_gating_l0", "params": {"num_seeds": 5}}
        )
        assert job.status_code == 202, job.text
        run = client.get(f"/api/runs/{job.json()['run_id']}").json()
        assert run["config"]["seeds"] == [42, 123, 456, 1000, 1001]
        bad = client.post(
            "/api/jobs", json={"recipe": "gradient_gating_l0", "params": {"num_seeds": 0}}
        )
        assert bad.status_code == 422 and "from 1 to 1000" in bad.text

"""A run's status never lies: ``completed`` only when every branch completed, ``failed`` when
none did, ``partial`` when some did; the error names the failed branches, the CLI exits
non-zero, and a sweep takes its worst run's status. Parameters that could only fail later
(non-finite numbers, absurd step and seed counts, seeds SQLite cannot hold) are refused first."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from acc.cli import app
from acc.runner import check_resumable, create_sweep, execute_sweep
from acc.store import Store

runner = CliRunner()
L0 = ["run", "gradient_gating_l0", "--steps", "20", "--eval-every", "0", "--threads", "1"]
# a temperature this small overflows the gate's softmax: every gated branch fails at step 2
BREAKS_GATING = ["-p", "temperature=1e-45"]


def _cli(store: Store, *args: str):
    return runner.invoke(app, [*args, "--store", str(store.root)], catch_exceptions=False)


def _only_run(store: Store) -> dict:
    [run] = store.list_runs()
    return store.get_run(run["id"])


def test_a_run_whose_branches_all_failed_is_failed_and_exits_1(store):
    out = _cli(store, *L0, "--seeds", "1,2", "-p", "batch_size=100000")
    assert out.exit_code == 1, out.output
    run = _only_run(store)
    assert run["status"] == "failed"
    assert run["error"].startswith("4 of 4 branches did not complete: standard seed 1: ")
    assert run["error"].endswith("; and 1 more")
    assert "failed" in _cli(store, "runs").output


def test_a_run_with_some_failed_branches_is_partial_names_them_and_can_resume(store):
    out = _cli(store, *L0, "--seeds", "1,2", *BREAKS_GATING)
    assert out.exit_code == 1, out.output
    run = _only_run(store)
    assert run["status"] == "partial"
    assert run["error"].startswith("2 of 4 branches did not complete: gated seed 1: NonFinite")
    assert "gated seed 2: NonFiniteLoss" in run["error"]
    assert [b["status"] for b in store.branches(run["id"])] == [
        "completed", "failed", "completed", "failed"
    ]  # fmt: skip
    assert check_resumable(store, run["id"])["status"] == "partial"  # the failed ones again


def test_a_run_that_completes_exits_0_with_no_error(store):
    out = _cli(store, *L0, "--seeds", "1")
    assert out.exit_code == 0, out.output
    run = _only_run(store)
    assert run["status"] == "completed" and run["error"] is None


def test_a_sweep_takes_its_worst_runs_status(store):
    sweep_id = create_sweep(
        store, "gradient_gating_l0", {"steps": 10, "seeds": [1], "eval_every": 0},
        grid={"batch_size": [32, 100000]}, zipped={}, device="cpu",
    )  # fmt: skip  (batch_size is no gating parameter: one run per setting)
    results = execute_sweep(store, sweep_id)
    assert sorted(r["status"] for r in store.sweep_runs(sweep_id)) == ["completed", "failed"]
    assert results["status"] == "failed"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-p", "temperature=inf"], "temperature: Input should be a finite number"),
        (["--lr", "nan"], "lr: Input should be a finite number"),
        (["--steps", "10000000000"], "steps: Input should be less than or equal to 1000000000"),
        (["--seeds", str(2**64)], "seeds.0: Input should be less than or equal to"),
        (["--seeds", ",".join(map(str, range(1001)))], "seeds: List should have at most 1000"),
    ],
)
def test_numbers_that_could_only_fail_later_are_refused_first(store, args, message):
    out = _cli(store, "run", "gradient_gating_l0", "--seeds", "1", *args)
    assert out.exit_code == 2 and message in " ".join(out.output.split()), out.output
    assert store.list_runs() == []

"""Exact resume: a run killed with SIGKILL and resumed ends bit-identical to one never stopped;
completed branches are kept, unfinished ones go on from their resume point, and resuming
says no (clearly) to what it cannot do."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from types import SimpleNamespace

import pytest
import torch
from typer.testing import CliRunner

from acc.branch import _check_threads
from acc.cli import app
from acc.executors.process import ProcessExecutor
from acc.runner import (
    NothingToResume,
    ResumeError,
    check_resumable,
    create_run,
    execute_run,
)
from acc.status import Status
from acc.store import Store

runner = CliRunner()
PARAMS = {"steps": 600, "seeds": [3, 4], "eval_every": 150, "batch_size": 32}


def _cli(*args: str):
    return runner.invoke(app, list(args), catch_exceptions=False)


def _weights(store: Store, results: dict) -> dict:
    return {
        (c, r["seed"]): store.checkpoints.load_state_dict(r["checkpoint_id"])
        for c, entry in results["conditions"].items()
        for r in entry["runs"]
    }


def _kill_after_a_resume_point(store_dir) -> str:
    """Start `acc run` in its own process; SIGKILL it once the second branch has saved a
    resume point (the first has completed by then); return the run id."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "acc", "run", "gradient_gating_l0", "--steps", "600",
         "--seeds", "3,4", "--eval-every", "150", "-p", "batch_size=32", "--threads", "1",
         "--checkpoint-every", "100", "--store", str(store_dir)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )  # fmt: skip
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline:
            time.sleep(0.05)
            database = store_dir / "acc.sqlite"  # made empty first, written a moment later
            if not database.is_file() or database.stat().st_size == 0:
                continue
            store = Store(store_dir)
            runs = store.list_runs()
            points = store._db.execute("SELECT branch_id, step FROM resume_points").fetchall()
            if runs and any(b_id == 2 and step >= 200 for b_id, step in points):
                proc.kill()
                proc.wait(timeout=30)
                return runs[0]["id"]
        raise AssertionError("no resume point of the second branch within 120 s")
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()


def test_a_run_killed_with_sigkill_resumes_to_identical_results(tmp_path, store):
    reference = execute_run(store, create_run(store, "gradient_gating_l0", PARAMS, "cpu"))

    killed_store = tmp_path / "killed"
    run_id = _kill_after_a_resume_point(killed_store)
    before = Store(killed_store).branches(run_id)
    assert before[0]["status"] == "completed" and before[1]["status"] == "running"
    assert before[2]["status"] == "queued"  # never started

    result = _cli("run", "--resume", run_id, "--threads", "1", "--store", str(killed_store))
    assert result.exit_code == 0, result.output
    assert "3 of 4 branches to finish" in result.output
    resumed_store = Store(killed_store)
    after = resumed_store.branches(run_id)
    assert [b["status"] for b in after] == ["completed"] * 4
    assert after[0]["checkpoint_id"] == before[0]["checkpoint_id"]  # kept, not retrained

    resumed = json.loads(_cli("show", run_id, "--json", "--store", str(killed_store)).output)
    for condition, entry in reference["conditions"].items():
        got = {r["seed"]: r["metrics"] for r in resumed["conditions"][condition]["runs"]}
        assert got == {r["seed"]: r["metrics"] for r in entry["runs"]}
    expected, actual = _weights(store, reference), _weights(resumed_store, resumed)
    for key, tensors in expected.items():
        assert all(torch.equal(tensors[k], actual[key][k]) for k in tensors), key

    # the resumed branch's series holds every step once, and its resume point is gone
    losses = [row["step"] for row in resumed_store.losses(after[1]["id"])]
    assert losses == sorted(set(losses)) and losses[-1] == 600
    assert [e["step"] for e in resumed_store.evals(after[1]["id"])] == [0, 150, 300, 450, 600]
    assert not list((killed_store / "checkpoints" / run_id / "resume").iterdir())
    assert len([c for c in resumed_store.checkpoints.of_run(run_id) if c["tag"] == "init"]) == 2


def test_a_gated_branch_resumed_first_in_a_fresh_process_ends_bit_identical(store):
    """Exact resume whatever ran before: the gated branch resumes as the first and only branch
    of a fresh worker process (no other branch, no evaluation ran there), from a resume point
    between two evaluations (the window of losses and gate statistics that the evaluation at
    step 300 reads is split at step 200), and ends with every metric, evaluation, loss point
    and weight of the uninterrupted run made here, which trained it after the standard branch."""
    params = {"steps": 400, "seeds": [5], "eval_every": 150, "batch_size": 32}
    reference_id = create_run(store, "gradient_gating_l0", params, "cpu", checkpoint_every=100)
    reference = execute_run(store, reference_id)

    def stop_at_the_gated_resume_point(event):
        where = (event["type"], event.get("condition"), event.get("step"))
        if where == ("resume_point", "gated", 200):
            raise KeyboardInterrupt  # as a kill would: the standard branch has completed

    run_id = create_run(store, "gradient_gating_l0", params, "cpu", checkpoint_every=100)
    stopped = execute_run(store, run_id, on_event=stop_at_the_gated_resume_point)
    assert stopped["status"] == "interrupted"
    events = []
    resumed = execute_run(store, run_id, ProcessExecutor(workers=1, threads=1), events.append)
    [started] = [e for e in events if e["type"] == "branch" and e["state"] == "running"]
    assert started["condition"] == "gated" and started["from_step"] == 200
    assert started["pid"] != os.getpid()  # a fresh worker, this its first branch
    assert not [e for e in events if "torch threads" in e.get("message", "")]  # same threads

    for condition, entry in reference["conditions"].items():
        [expected], [got] = entry["runs"], resumed["conditions"][condition]["runs"]
        assert got["status"] == "completed" and got["metrics"] == expected["metrics"], condition
    gated = [
        next(b for b in store.branches(i) if b["condition"] == "gated")
        for i in (reference_id, run_id)
    ]
    evals = [[(e["step"], e["metrics"]) for e in store.evals(b["id"])] for b in gated]
    assert [step for step, _ in evals[1]] == [0, 150, 300] and evals[1] == evals[0]
    losses = [[tuple(row.values()) for row in store.losses(b["id"])] for b in gated]
    assert losses[1] == losses[0]
    expected, actual = _weights(store, reference), _weights(store, resumed)
    assert all(torch.equal(expected[k][n], actual[k][n]) for k in expected for n in expected[k])


def test_resuming_on_another_thread_count_says_it_may_round_differently():
    said = []
    spec = SimpleNamespace(label="gated seed 5")
    _check_threads(spec, torch.get_num_threads(), said.append)
    assert not said
    _check_threads(spec, torch.get_num_threads() + 1, said.append)
    [event] = said
    assert event["type"] == "log" and "may differ" in event["message"]
    assert f"--threads {torch.get_num_threads() + 1}" in event["message"]


def test_resuming_a_completed_run_does_nothing(tmp_path, store):
    results = execute_run(store, create_run(store, "gradient_gating_l0", {**PARAMS, "steps": 5}))
    run_id = results["run_id"]
    with pytest.raises(NothingToResume, match="all 4 branches completed"):
        check_resumable(store, run_id)
    before = store.get_run(run_id)
    out = _cli("run", "--resume", run_id, "--store", str(store.root))
    assert out.exit_code == 0 and "nothing to resume" in out.output
    assert store.get_run(run_id) == before  # not reopened, not touched


def _interrupted_run(store: Store) -> str:
    run_id = create_run(store, "gradient_gating_l0", {**PARAMS, "steps": 5, "seeds": [1]})

    def stop_at_the_second_branch(event):
        if event["type"] == "branch" and event.get("condition") == "gated":
            raise KeyboardInterrupt

    assert execute_run(store, run_id, on_event=stop_at_the_second_branch)["status"] == "interrupted"
    return run_id


@pytest.mark.parametrize(
    "extra,message",
    [
        (["--steps", "7"], "steps: the run has 5, you asked for 7"),
        (["-p", "temperature=2"], "temperature: the run has 1.0, you asked for 2.0"),
        (["--seeds", "1,2"], "seeds: the run has [1], you asked for [1, 2]"),
        (["-p", "temperature=0"], "temperature: temperature must be a number > 0 or entropy:H"),
    ],
)
def test_resuming_with_other_parameters_is_refused_naming_them(store, extra, message):
    run_id = _interrupted_run(store)
    out = _cli("run", "--resume", run_id, "--store", str(store.root), *extra)
    assert out.exit_code == 2 and message in " ".join(out.output.split())
    assert store.get_run(run_id)["status"] == "interrupted"  # untouched


def test_resume_refusals_say_why(store):
    run_id = _interrupted_run(store)
    unknown = _cli("run", "--resume", "no-such-run", "--store", str(store.root))
    assert unknown.exit_code == 2 and "no run 'no-such-run'" in unknown.output
    assert run_id in " ".join(unknown.output.split())  # lists recent runs
    other = _cli("run", "gradient_gating_l1", "--resume", run_id, "--store", str(store.root))
    assert other.exit_code == 2 and "is a gradient_gating_l0 run" in other.output

    store.start_run(run_id)  # as if a live process were training it
    with pytest.raises(ResumeError, match="is running"):
        check_resumable(store, run_id)
    store.finish_run(run_id, Status.INTERRUPTED, "stopped")

    # a run from another version of the recipe whose parameters no longer validate
    store._db.execute(
        "UPDATE runs SET config = json_set(config, '$.colour', 'red') WHERE id = ?", (run_id,)
    )
    old = _cli("run", "--resume", run_id, "--store", str(store.root))
    assert old.exit_code == 2 and "colour: Extra inputs are not permitted" in old.output


def test_an_interrupted_run_resumes_in_process_with_the_process_executor(store):
    run_id = _interrupted_run(store)
    out = _cli("run", "--resume", run_id, "--workers", "2", "--store", str(store.root))
    assert out.exit_code == 0, out.output
    assert "--workers 2 is more than the 1 branches; using 1" in out.output
    assert [b["status"] for b in store.branches(run_id)] == ["completed", "completed"]

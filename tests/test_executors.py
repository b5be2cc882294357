"""Executors: inline, process and Ray train the same branches to the same results; a lost
worker fails (process) or retries (Ray) its branch only; Ctrl-C and cancel stop cleanly."""

from __future__ import annotations

import multiprocessing
import os
import signal
import sys
import time

import pytest
import torch
from typer.testing import CliRunner

from acc.cli import app
from acc.executors import ExecutorError, make_executor
from acc.executors.process import ProcessExecutor
from acc.runner import create_run, execute_run
from acc.store import Store

runner = CliRunner()


def _params(**extra) -> dict:
    return {"steps": 40, "seeds": [1, 2], "eval_every": 20, "batch_size": 16, **extra}


def _run(store: Store, data_dir, executor=None, on_event=None, should_stop=None, **params):
    run_id = create_run(store, "gradient_gating_l0", _params(**params), "cpu", data_dir)
    return execute_run(store, run_id, executor, on_event=on_event, should_stop=should_stop)


def _weights(store: Store, results: dict) -> dict:
    return {
        (c, r["seed"]): store.checkpoints.load_state_dict(r["checkpoint_id"])
        for c, entry in results["conditions"].items()
        for r in entry["runs"]
    }


def _same(store_a, results_a, store_b, results_b) -> bool:
    a, b = _weights(store_a, results_a), _weights(store_b, results_b)
    return a.keys() == b.keys() and all(
        torch.equal(a[key][name], b[key][name]) for key in a for name in a[key]
    )


def _branch_pid(events: list[dict], condition: str, seed: int) -> int:
    return next(
        e["pid"]
        for e in reversed(events)
        if e["type"] == "branch" and e["state"] == "running"
        and (e["condition"], e["seed"]) == (condition, seed)
    )  # fmt: skip


@pytest.fixture(scope="module")
def inline_reference(tmp_path_factory, tiny_mnist):
    store = Store(tmp_path_factory.mktemp("inline") / "store")
    return store, _run(store, tiny_mnist)


def test_process_workers_give_the_inline_results(tmp_path, tiny_mnist, inline_reference):
    store = Store(tmp_path / "store")
    events = []
    results = _run(store, tiny_mnist, ProcessExecutor(workers=2, threads=1), events.append)
    assert results["status"] == "completed"
    assert _same(store, results, *inline_reference)
    pids = {e["pid"] for e in events if e["type"] == "branch" and e["state"] == "running"}
    assert len(pids) == 2 and os.getpid() not in pids  # two workers, neither is the driver
    steps = [e for e in events if e["type"] == "step"]
    assert {(e["condition"], e["seed"]) for e in steps} == {
        (c, s) for c in ("standard", "gated") for s in (1, 2)
    }  # live progress from every worker
    assert not multiprocessing.active_children()


def test_a_killed_worker_fails_only_its_branch(tmp_path, tiny_mnist):
    store, events = Store(tmp_path / "store"), []

    def kill_the_first_branch(event):
        events.append(event)
        if event["type"] == "step" and (event["condition"], event["seed"]) == ("standard", 1):
            pid = _branch_pid(events, "standard", 1)
            if pid:
                os.kill(pid, signal.SIGKILL)

    results = _run(
        store, tiny_mnist, ProcessExecutor(workers=2, threads=1), kill_the_first_branch,
        steps=1000,
    )  # fmt: skip
    runs = {(c, r["seed"]): r for c, e in results["conditions"].items() for r in e["runs"]}
    assert runs[("standard", 1)]["status"] == "failed"
    assert runs[("standard", 1)]["error"] == "the worker process died (signal 9)"
    assert all(r["status"] == "completed" for k, r in runs.items() if k != ("standard", 1))
    assert (
        results["status"] == "partial"
        and "standard seed 1: the worker process died" in (results["error"])
    )
    assert any("signal 9" in e.get("message", "") for e in events if e["type"] == "log")


def test_ctrl_c_stops_every_worker_and_keeps_what_finished(tmp_path, tiny_mnist):
    store = Store(tmp_path / "store")
    seen = []

    def interrupt_during_the_second_round(event):
        seen.append(event)
        completed = [e for e in seen if e["type"] == "branch" and e["state"] == "completed"]
        if event["type"] == "step" and len(completed) >= 2:
            raise KeyboardInterrupt

    params = {"steps": 200, "seeds": [1, 2, 3]}
    results = _run(
        store, tiny_mnist, ProcessExecutor(workers=2, threads=1),
        interrupt_during_the_second_round, **params,
    )  # fmt: skip
    assert results["status"] == "interrupted"
    statuses = [r["status"] for e in results["conditions"].values() for r in e["runs"]]
    assert statuses.count("completed") >= 2 and "interrupted" in statuses
    stopped = [r for e in results["conditions"].values() for r in e["runs"] if r["steps"]]
    assert all(r["steps"] <= 200 for r in stopped)
    assert not multiprocessing.active_children()


def test_cancel_stops_the_workers(tmp_path, tiny_mnist):
    store, steps = Store(tmp_path / "store"), []
    results = _run(
        store, tiny_mnist, ProcessExecutor(workers=2, threads=1), steps.append,
        should_stop=lambda: any(e["type"] == "step" for e in steps), steps=100_000,
    )  # fmt: skip
    assert results["status"] == "cancelled"
    runs = [r for e in results["conditions"].values() for r in e["runs"]]
    assert all(r["status"] == "cancelled" for r in runs)
    assert max(r["steps"] for r in runs) < 100_000


# --- bad input -------------------------------------------------------------------------------


def _cli(*args):
    return runner.invoke(app, list(args), catch_exceptions=False)


@pytest.mark.parametrize(
    "args,message",
    [
        (["--executor", "slurm"], "unknown executor 'slurm'; valid: inline, process, ray"),
        (["--executor", "inline", "--workers", "2"], "inline executor trains one branch at a time"),
        (["--ray-address", "h:1"], "--ray-address and --gpus-per-branch need --executor ray"),
        (
            ["--workers", "0"],
            "Invalid value for '--workers': Input should be greater than or equal to 1",
        ),
    ],
)
def test_bad_executor_options_are_clear_errors_and_open_no_run(tmp_path, args, message):
    out = _cli("run", "gradient_gating_l0", "--steps", "1", "--store", str(tmp_path / "s"), *args)
    assert out.exit_code == 2 and message in " ".join(out.output.split())
    assert Store(tmp_path / "s").list_runs() == []


def test_workers_beyond_the_branches_are_clamped_and_said_once(tmp_path, tiny_mnist):
    common = ["--steps", "2", "--seeds", "1", "--data-dir", str(tiny_mnist), "-p", "batch_size=8"]
    many = _cli("run", "gradient_gating_l0", *common, "--workers", "9", "--store", str(tmp_path))
    assert many.exit_code == 0
    assert many.output.count("--workers 9 is more than the 2 branches; using 2") == 1
    assert "process executor, 2 at a time" in many.output


def test_ray_missing_says_how_to_install_it(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now fails
    with pytest.raises(ExecutorError, match=r"pip install -e '\.\[ray\]'"):
        make_executor("ray")
    out = _cli("run", "gradient_gating_l0", "--executor", "ray", "--store", str(tmp_path / "s"))
    assert out.exit_code == 2 and "Ray, which is not installed" in out.output
    assert Store(tmp_path / "s").list_runs() == []


def test_an_unreachable_cluster_is_a_clear_error_within_30_seconds(tmp_path):
    started = time.monotonic()
    out = runner.invoke(
        app,
        ["run", "gradient_gating_l0", "--executor", "ray", "--ray-address", "127.0.0.1:9",
         "--store", str(tmp_path / "s")],
    )  # fmt: skip
    assert time.monotonic() - started < 30
    assert out.exit_code == 2 and "no Ray cluster answers at 127.0.0.1:9" in out.output
    assert Store(tmp_path / "s").list_runs() == []
    with pytest.raises(ExecutorError, match="HOST:PORT"):
        make_executor("ray", ray_address="no-port-here")

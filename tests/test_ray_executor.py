"""The Ray executor on one local Ray instance shared by this module (2 CPUs, no dashboard):
the same results as inline, live events, a lost worker retried once from its newest resume
point (still bit-identical), twice lost is failed, and an unreachable cluster is a clear
error before anything is opened."""

from __future__ import annotations

import os
import signal
import time

import httpx
import pytest
import torch
from typer.testing import CliRunner

from acc.executors import make_executor
from acc.runner import create_run, execute_run
from acc.store import Store

ray = pytest.importorskip("ray")
pytestmark = pytest.mark.slow
runner = CliRunner()
PARAMS = {"steps": 60, "seeds": [1, 2], "eval_every": 20, "batch_size": 16}


@pytest.fixture(scope="module")
def executor():
    ray.init(num_cpus=2, include_dashboard=False, configure_logging=False, log_to_driver=False)
    try:
        yield make_executor("ray")  # joins the instance above, leaves it running
    finally:
        ray.shutdown()


def _run(store: Store, data_dir, executor, on_event=None, checkpoint_every=0):
    run_id = create_run(
        store, "gradient_gating_l0", PARAMS, "cpu", data_dir, checkpoint_every=checkpoint_every
    )
    return execute_run(store, run_id, executor, on_event=on_event)


def _weights(store: Store, results: dict) -> dict:
    return {
        (c, r["seed"]): store.checkpoints.load_state_dict(r["checkpoint_id"])
        for c, entry in results["conditions"].items()
        for r in entry["runs"]
        if r["checkpoint_id"]
    }


@pytest.fixture(scope="module")
def reference(tmp_path_factory, tiny_mnist):
    store = Store(tmp_path_factory.mktemp("inline") / "store")
    return store, _run(store, tiny_mnist, None)


def test_ray_gives_the_inline_results_with_live_events(tmp_path, tiny_mnist, executor, reference):
    store, events = Store(tmp_path / "s"), []
    results = _run(store, tiny_mnist, executor, events.append)
    assert results["status"] == "completed" and executor.workers == 2
    expected, actual = _weights(*reference), _weights(store, results)
    assert expected.keys() == actual.keys()
    assert all(torch.equal(expected[k][n], actual[k][n]) for k in expected for n in expected[k])
    kinds = {e["type"] for e in events}
    assert {"branch", "train", "step", "eval", "results"} <= kinds
    assert {e["pid"] for e in events if e.get("state") == "running"} - {os.getpid()}


def _killer(times: int):
    """An event listener that SIGKILLs the Ray worker training (standard, seed 1) right after
    it streams a resume point, ``times`` times over."""
    pids, kills = {}, []

    def listen(event):
        key = (event.get("condition"), event.get("seed"))
        if event["type"] == "branch" and event["state"] == "running":
            pids[key] = event["pid"]
        if event["type"] == "resume_point" and key == ("standard", 1) and len(kills) < times:
            kills.append(event["step"])
            os.kill(pids[key], signal.SIGKILL)

    return listen, kills


def test_a_lost_worker_is_retried_once_from_its_resume_point(
    tmp_path, tiny_mnist, executor, reference
):
    store, events = Store(tmp_path / "s"), []
    listen, kills = _killer(times=1)
    results = _run(store, tiny_mnist, executor, lambda e: (events.append(e), listen(e)), 20)
    assert results["status"] == "completed" and kills == [20]
    restarts = [
        e["from_step"]
        for e in events
        if e["type"] == "branch" and e["state"] == "running" and e["condition"] == "standard"
        and e["seed"] == 1
    ]  # fmt: skip
    assert restarts == [0, 20]  # the retry went on from the resume point, not from 0
    expected, actual = _weights(*reference), _weights(store, results)
    assert all(torch.equal(expected[k][n], actual[k][n]) for k in expected for n in expected[k])
    assert any("retrying once" in e.get("message", "") for e in events)


def test_a_worker_lost_twice_fails_its_branch_only(tmp_path, tiny_mnist, executor):
    store = Store(tmp_path / "s")
    listen, kills = _killer(times=2)
    results = _run(store, tiny_mnist, executor, listen, 20)
    runs = {(c, r["seed"]): r for c, e in results["conditions"].items() for r in e["runs"]}
    assert len(kills) == 2
    assert runs[("standard", 1)]["status"] == "failed"
    assert "lost twice (WorkerCrashedError)" in runs[("standard", 1)]["error"]
    assert all(r["status"] == "completed" for k, r in runs.items() if k != ("standard", 1))


def test_the_server_runs_jobs_on_ray(tmp_path, executor):
    from acc.server import create_app
    from acc.server.serving import ServerThread

    app = create_app(tmp_path / "store", executor="ray", worker_threads=1)
    with ServerThread(app) as url, httpx.Client(base_url=url, timeout=30) as client:
        job = client.post(
            "/api/jobs",
            json={"recipe": "gradient_gating_l0", "params": {"steps": 20, "seeds": [1]}},
        ).json()
        deadline = time.monotonic() + 120
        while client.get(f"/api/jobs/{job['id']}").json()["status"] in ("queued", "running"):
            assert time.monotonic() < deadline, "the Ray job did not finish"
            time.sleep(0.2)
        results = client.get(f"/api/runs/{job['run_id']}").json()
    assert results["status"] == "completed"
    assert all(
        r["status"] == "completed" for c in results["conditions"].values() for r in c["runs"]
    )
    assert ray.is_initialized()  # the server joined this module's instance and left it running


def test_a_sweep_runs_on_ray(tmp_path, tiny_mnist, executor):
    from acc.runner import create_sweep, execute_sweep

    store = Store(tmp_path / "s")
    sweep_id = create_sweep(
        store, "gradient_gating_l0", {"steps": 6, "seeds": [1, 2], "batch_size": 8},
        {"gate_strength": [0.0, 1.0]}, {}, device="cpu", data_dir=tiny_mnist,
    )  # fmt: skip
    results = execute_sweep(store, sweep_id, executor)
    assert results["status"] == "completed" and len(results["cells"]) == 2
    zero = next(c for c in results["cells"] if c["params"]["gate_strength"] == 0.0)
    standard = results["settings"][0]["standard"]["runs"]
    for plain, gated in zip(standard, zero["runs"]):  # gate strength 0 is no gating, bit for bit
        without_gate_stats = {
            k: v for k, v in gated["metrics"].items() if not k.startswith("gate_")
        }
        assert without_gate_stats == plain["metrics"]

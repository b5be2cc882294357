"""Real jobs in real worker processes, through a real server: the event stream and its
resumption, cancelling, a crashing worker, the queue, and restart recovery."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from acc.executors import ExecutorError
from acc.server import create_app
from acc.server.jobstore import JobStore
from acc.server.serving import ServerThread
from acc.store import Store

pytestmark = pytest.mark.slow
QUICK = {"steps": 20, "seeds": [1], "eval_every": 10}
LONG = {"steps": 1_000_000, "seeds": [1], "eval_every": 0}


@pytest.fixture
def server(tmp_path, small_mnist_dir):
    """A server whose jobs train on 2,000 real digits and evaluate on 500: the jobs' behaviour,
    not MNIST's size, is under test."""
    app = create_app(tmp_path / "store", worker_threads=1, data_dir=str(small_mnist_dir))
    app.state.manager.cancel_grace = 10.0
    with ServerThread(app) as url, httpx.Client(base_url=url, timeout=30) as client:
        yield client


def read_events(
    client: httpx.Client,
    job_id: str,
    headers: dict | None = None,
    until=lambda event: False,
    timeout: float = 180,
) -> list[tuple[int, dict]]:
    """(id, event) pairs of the job's stream, until it ends or ``until(event)`` holds."""
    out, seq = [], None
    with client.stream(
        "GET", f"/api/jobs/{job_id}/events", headers=headers or {}, timeout=timeout
    ) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        for line in response.iter_lines():
            if line.startswith("id: "):
                seq = int(line[4:])
            elif line.startswith("data: "):
                event = json.loads(line[6:])
                out.append((seq, event))
                if until(event):
                    break
    return out


def start(client: httpx.Client, params: dict) -> dict:
    response = client.post("/api/jobs", json={"recipe": "gradient_gating_l0", "params": params})
    assert response.status_code == 202, response.text
    return response.json()


def wait_status(client: httpx.Client, job_id: str, statuses: tuple, timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = client.get(f"/api/jobs/{job_id}").json()
        if job["status"] in statuses:
            return job
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} never reached {statuses}: {job}")


def test_event_stream_to_final_results_and_resume(server):
    job = start(server, QUICK)
    assert job["status"] == "queued" and job["run_id"]
    events = read_events(server, job["id"])
    ids = [seq for seq, _ in events]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    types = [e["type"] for _, e in events]
    for kind in ("job", "branch", "train", "step", "eval", "phase", "results", "final"):
        assert kind in types, f"no {kind!r} event in {types}"
    evals = [e for _, e in events if e["type"] == "eval"]
    assert {(e["condition"], e["step"]) for e in evals} == {
        (c, s) for c in ("standard", "gated") for s in (0, 10, 20)
    }
    final = next(e for _, e in events if e["type"] == "final")
    assert final["status"] == "completed"
    assert set(final["results"]["conditions"]) == {"standard", "gated"}
    assert events[-1][1] == {"type": "job", "status": "completed", "error": None}

    # a client that reconnects with Last-Event-ID gets exactly what came after it
    middle = ids[len(ids) // 2]
    resumed = read_events(server, job["id"], headers={"Last-Event-ID": str(middle)})
    assert resumed == [(s, e) for s, e in events if s > middle]
    assert read_events(server, job["id"]) == events  # the log is persistent
    after_end = server.get(f"/api/jobs/{job['id']}/events", headers={"Last-Event-ID": str(ids[-1])})
    assert after_end.status_code == 204  # finished: tells EventSource to stop reconnecting
    assert (
        server.get(
            f"/api/jobs/{job['id']}/events", headers={"Last-Event-ID": "x; DROP"}
        ).status_code
        == 422
    )

    run = server.get(f"/api/runs/{job['run_id']}").json()
    assert run["status"] == "completed" and run["job_id"] == job["id"]
    assert server.get(f"/api/jobs/{job['id']}").json()["status"] == "completed"
    assert server.post(f"/api/jobs/{job['id']}/cancel").status_code == 409


def test_cancel_a_running_job(server):
    job = start(server, LONG)
    read_events(server, job["id"], until=lambda e: e["type"] == "step")
    started = time.monotonic()
    response = server.post(f"/api/jobs/{job['id']}/cancel")
    assert response.status_code == 202 and response.json()["cancel_requested"]
    events = read_events(server, job["id"])
    assert events[-1][1]["type"] == "job" and events[-1][1]["status"] == "cancelled"
    assert time.monotonic() - started < 15
    results = server.get(f"/api/runs/{job['run_id']}").json()
    assert results["status"] == "cancelled"
    assert [r["status"] for r in results["conditions"]["standard"]["runs"]] == ["cancelled"]
    assert 0 < results["conditions"]["standard"]["runs"][0]["steps"] < LONG["steps"]
    assert server.post(f"/api/jobs/{job['id']}/cancel").status_code == 409


def test_a_killed_worker_fails_its_branch_the_run_goes_on_and_so_does_the_queue(server):
    doomed = start(server, {"steps": 3000, "seeds": [1], "eval_every": 0})
    queued = start(server, {"steps": 5, "seeds": [2], "eval_every": 0})
    started = read_events(
        server, doomed["id"], until=lambda e: e["type"] == "branch" and e["state"] == "running"
    )[-1][1]
    assert started["condition"] == "standard" and started["pid"] != os.getpid()
    assert server.get(f"/api/jobs/{queued['id']}").json()["status"] == "queued"  # one at a time
    waiting = server.get(f"/api/runs/{queued['run_id']}").json()
    assert waiting["status"] == "queued" and waiting["conditions"]["standard"]["runs"] == []
    os.kill(started["pid"], signal.SIGKILL)

    done = wait_status(server, doomed["id"], ("completed", "partial", "failed", "cancelled"))
    run = server.get(f"/api/runs/{doomed['run_id']}").json()
    [standard], [gated] = (run["conditions"][c]["runs"] for c in ("standard", "gated"))
    assert standard["status"] == "failed" and "signal 9" in standard["error"]
    assert gated["status"] == "completed" and gated["steps"] == 3000  # a new worker took it
    assert done["status"] == run["status"] == "partial"

    done = wait_status(server, queued["id"], ("completed", "failed"))
    assert done["status"] == "completed"
    assert server.get(f"/api/runs/{queued['run_id']}").json()["status"] == "completed"


def test_a_job_trains_its_branches_in_parallel_workers(tmp_path, small_mnist_dir):
    app = create_app(tmp_path / "store", workers=2, worker_threads=1, data_dir=str(small_mnist_dir))
    with ServerThread(app) as url, httpx.Client(base_url=url, timeout=30) as client:
        job = start(client, {"steps": 200, "seeds": [1], "eval_every": 0})
        events = [e for _, e in read_events(client, job["id"])]
    running = [e for e in events if e["type"] == "branch" and e["state"] == "running"]
    assert len({e["pid"] for e in running}) == 2  # standard and gated side by side
    assert events[-1] == {"type": "job", "status": "completed", "error": None}
    with pytest.raises(ExecutorError, match="process or ray executor"):
        create_app(tmp_path / "store", executor="inline")


def test_a_sweep_job_trains_every_cell_and_ends_with_the_sweep_results(server):
    body = {
        "recipe": "gradient_gating_l0",
        "params": {"steps": 20, "seeds": [1, 2], "eval_every": 0},
        "grid": {"gate_strength": [0.5, 1.0]},
    }
    response = server.post("/api/sweeps", json=body)
    assert response.status_code == 202, response.text
    job = response.json()
    events = [e for _, e in read_events(server, job["id"])]
    final = next(e for e in events if e["type"] == "final")
    assert final["status"] == "completed" and final["results"]["sweep_id"] == job["sweep_id"]
    steps = {(e["run_id"], e["condition"], e["seed"]) for e in events if e["type"] == "step"}
    assert len(steps) == 2 * 3  # seeds x (standard + 2 cells), live from every branch
    sweep = server.get(f"/api/sweeps/{job['sweep_id']}").json()
    assert sweep["status"] == "completed" and len(sweep["cells"]) == 2
    assert all(len(cell["runs"]) == 2 for cell in sweep["cells"])


def test_restart_keeps_queued_jobs_and_marks_running_ones_interrupted(tmp_path):
    root = tmp_path / "store"
    app = create_app(root, max_concurrent=0)  # accepts jobs, starts none
    with ServerThread(app) as url, httpx.Client(base_url=url) as client:
        job = start(client, QUICK)
    jobs, store = JobStore(root), Store(root)
    assert jobs.get(job["id"])["status"] == "queued"  # for the next server on this store
    assert store.get_run(job["run_id"])["status"] == "queued"

    jobs.set_running(jobs.create(job["run_id"], "gradient_gating_l0", QUICK), pid=1)
    orphan = jobs.with_status("running")[0]
    with ServerThread(create_app(root, max_concurrent=0)) as url:
        assert httpx.get(f"{url}/api/jobs/{orphan['id']}").json()["status"] == "interrupted"


def test_stopping_the_server_interrupts_a_job_and_resume_finishes_it(tmp_path, small_mnist_dir):
    root, params = tmp_path / "store", {"steps": 2000, "seeds": [1], "eval_every": 0}
    data = str(small_mnist_dir)
    app = create_app(root, worker_threads=1, data_dir=data)
    with ServerThread(app) as url, httpx.Client(base_url=url, timeout=30) as client:
        job = start(client, params)
        read_events(client, job["id"], until=lambda e: e["type"] == "step")
    run = Store(root).get_run(job["run_id"])
    assert run["status"] == "interrupted" and run["error"] == "the server stopped"
    branches = Store(root).branches(job["run_id"])
    assert [b["status"] for b in branches] == ["interrupted", "interrupted"]
    assert branches[0]["steps_done"] > 0

    with (
        ServerThread(create_app(root, worker_threads=1, data_dir=data)) as url,
        httpx.Client(base_url=url, timeout=30) as client,
    ):
        resumed = client.post(f"/api/runs/{job['run_id']}/resume")
        assert resumed.status_code == 202, resumed.text
        done = wait_status(client, resumed.json()["id"], ("completed", "failed", "cancelled"))
        assert done["status"] == "completed"
        results = client.get(f"/api/runs/{job['run_id']}").json()
        assert results["status"] == "completed" and results["job_id"] == resumed.json()["id"]
        runs = [r for c in results["conditions"].values() for r in c["runs"]]
        assert [(r["status"], r["steps"]) for r in runs] == [("completed", 2000)] * 2


def test_a_killed_cli_run_shows_interrupted_on_a_live_server(tmp_path, long_cli_run):
    root = tmp_path / "store"
    app = create_app(root, max_concurrent=0)
    app.state.manager.orphan_check_seconds = 0.5
    with ServerThread(app) as url, httpx.Client(base_url=url) as client:
        proc, store = long_cli_run(root)
        run_id = store.list_runs()[0]["id"]
        assert client.get(f"/api/runs/{run_id}").json()["status"] == "running"
        proc.kill()
        proc.communicate(timeout=60)
        deadline = time.monotonic() + 30
        while client.get(f"/api/runs/{run_id}").json()["status"] == "running":
            assert time.monotonic() < deadline, "the killed run still shows as running"
            time.sleep(0.2)
        run = client.get(f"/api/runs/{run_id}").json()
        assert run["status"] == "interrupted" and f"pid {proc.pid}" in run["error"]


def test_acc_serve_prints_its_address_and_serves(tmp_path):
    acc = Path(sys.executable).parent / "acc"
    env = {**os.environ, "COLUMNS": "200"}
    server = subprocess.Popen(
        [str(acc), "serve", "--port", "0", "--store", str(tmp_path / "s")],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        line = server.stdout.readline()
        url = re.search(r"http://127\.0\.0\.1:\d+", line)
        assert url, line
        recipes = httpx.get(f"{url[0]}/api/recipes", timeout=30).json()["recipes"]
        assert "gradient_gating_l0" in [r["name"] for r in recipes]
    finally:
        server.terminate()
        server.wait(timeout=30)
    busy = subprocess.run(
        [
            str(acc),
            "serve",
            "--host",
            "no.such.host.invalid",
            "--port",
            "0",
            "--store",
            str(tmp_path / "s"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert busy.returncode != 0 and "cannot listen" in busy.stdout

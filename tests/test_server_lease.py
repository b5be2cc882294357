"""One server per store, and what a killed server leaves: its workers die with it, its running
job is interrupted (resumable) and its queued jobs run on the next server."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from acc.server.lease import StoreBusy, StoreLease

LONG = {"recipe": "gradient_gating_l0", "params": {"steps": 1_000_000, "seeds": [1]}}
SHORT = {"recipe": "gradient_gating_l0", "params": {"steps": 5, "seeds": [2], "eval_every": 0}}


def serve(store: Path) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "acc", "serve", "--port", "0", "--store", str(store)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if "ACC dashboard at" in line:
            return proc, line.split("ACC dashboard at ")[1].split()[0]
    raise AssertionError("acc serve did not start:\n" + "".join(lines))


def children(pid: int) -> list[int]:
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append(int(stat.parent.name))
    return out


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def wait_for(predicate, seconds: float = 60, what: str = "") -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def test_the_lease_is_exclusive_and_released(tmp_path):
    first, second = StoreLease(tmp_path), StoreLease(tmp_path)
    first.acquire("http://127.0.0.1:1/")
    with pytest.raises(StoreBusy, match=r"another acc serve \(pid \d+, http://127.0.0.1:1/\)"):
        second.acquire()
    first.release()
    second.acquire()
    second.release()


def test_a_second_server_on_the_same_store_refuses_to_start(tmp_path):
    store = str(tmp_path / "store")
    proc, _ = serve(tmp_path / "store")
    try:
        second = subprocess.run(
            [sys.executable, "-m", "acc", "serve", "--port", "0", "--store", store],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert second.returncode == 2
        assert "another acc serve (pid" in " ".join(second.stdout.split())
    finally:
        proc.terminate()
        proc.wait(timeout=60)


def test_a_killed_server_takes_its_workers_along_and_the_next_one_runs_its_queue(tmp_path):
    store = tmp_path / "store"
    proc, url = serve(store)
    with httpx.Client(base_url=url, timeout=30) as client:
        running = client.post("/api/jobs", json=LONG).json()
        queued = client.post("/api/jobs", json=SHORT).json()
        wait_for(lambda: client.get(f"/api/jobs/{running['id']}").json()["status"] == "running",
                 what="the first job to start")  # fmt: skip
        wait_for(
            lambda: any(
                "spawn_main" in Path(f"/proc/{c}/cmdline").read_text()
                for c in children(proc.pid)
                if alive(c)
            ),
            what="a branch worker",
        )
        workers = [c for c in children(proc.pid)
                   if "spawn_main" in Path(f"/proc/{c}/cmdline").read_text()]  # fmt: skip
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    wait_for(lambda: not any(alive(w) for w in workers), 30, "the workers to die with it")

    proc, url = serve(store)  # the lease was released with the dead process
    try:
        with httpx.Client(base_url=url, timeout=30) as client:
            job = client.get(f"/api/jobs/{running['id']}").json()
            assert job["status"] == "interrupted"
            assert client.get(f"/api/runs/{running['run_id']}").json()["status"] == "interrupted"
            wait_for(lambda: client.get(f"/api/jobs/{queued['id']}").json()["status"]
                     == "completed", 120, "the queued job to run")  # fmt: skip
    finally:
        proc.terminate()
        proc.wait(timeout=60)

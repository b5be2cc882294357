"""A run's status never lies: ``completed`` only when every branch completed, ``failed`` when
none did, ``partial`` when some did; the error names the failed branches, the CLI exits
non-zero, and a sweep takes its worst run's status. Parameters that could only fail later
(non-finite numbers, absurd step and seed counts, seeds SQLite cannot hold) are refused first."""

from __future__ import annotations

import errno
import multiprocessing
import os
import signal
import sqlite3
import time
from collections import deque
from types import SimpleNamespace

import pytest
from typer.testing import CliRunner

import acc.branch
from acc import checkpoints
from acc.branch import BranchSpec
from acc.cli import app
from acc.executors.process import _Pool, _Worker
from acc.recorder import RunRecorder
from acc.runner import check_resumable, create_run, create_sweep, execute_run, execute_sweep
from acc.store import Store, StoreError
from acc.write_failure import StoreWriteFailed

runner = CliRunner()
L0 = ["run", "gradient_gating_l0", "--steps", "20", "--eval-every", "0", "--threads", "1"]
# a temperature this small overflows the gate's softmax: every gated branch fails at step 2
BREAKS_GATING = ["-p", "temperature=1e-45"]


def _cli(store: Store, *args: str):
    return runner.invoke(app, [*args, "--store", str(store.root)], catch_exceptions=False)


def _only_run(store: Store) -> dict:
    [run] = store.list_runs()
    return store.get_run(run["id"])


def test_a_run_whose_branches_all_failed_is_failed_and_exits_1(store, monkeypatch):
    def broken(*args):
        raise RuntimeError("training broke")

    monkeypatch.setattr("acc.branch._train", broken)  # the inline executor: this process
    out = _cli(store, *L0, "--seeds", "1,2")
    assert out.exit_code == 1, out.output
    run = _only_run(store)
    assert run["status"] == "failed"
    assert run["error"].startswith(
        "4 of 4 branches did not complete: standard seed 1: RuntimeError: training broke"
    )
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


def test_a_sweep_takes_its_worst_runs_status(store, monkeypatch):
    train = acc.branch._train

    def broken_at_batch_48(trainer, *args):
        if trainer.config.batch_size == 48:
            raise RuntimeError("training broke")
        return train(trainer, *args)

    monkeypatch.setattr("acc.branch._train", broken_at_batch_48)  # inline: this process
    sweep_id = create_sweep(
        store,
        "gradient_gating_l0",
        {"steps": 10, "seeds": [1], "eval_every": 0},
        grid={"batch_size": [32, 48]},
        zipped={},
        device="cpu",
    )  # fmt: skip  (batch_size is no gating parameter: one run per setting)
    results = execute_sweep(store, sweep_id)
    assert sorted(r["status"] for r in store.sweep_runs(sweep_id)) == ["completed", "failed"]
    assert results["status"] == "failed"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["-p", "temperature=inf"],
            "temperature: temperature must be a number > 0 or entropy:H with 0 < H < 1 "
            "(e.g. entropy:0.5), got 'inf'",
        ),
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


@pytest.mark.parametrize(
    ("recipe", "args", "message"),
    [
        ("gradient_gating_l0", ["-p", "hidden_dim=100000000"],
         "hidden_dim: Input should be less than or equal to 4096"),
        ("gradient_gating_l0", ["-p", "batch_size=100000"],
         "batch_size: Input should be less than or equal to 60000"),
        ("gradient_gating_l1", ["-p", "hidden_dim=5000"], "hidden_dim: Input should be less than"),
        ("gradient_gating_l1", ["--steps", "10000000000"],
         "steps: Input should be less than or equal to 1000000000"),
        ("gradient_gating_l2", ["-p", "latent_dim=5000"], "latent_dim: Input should be less than"),
        ("gradient_gating_l3", ["-p", "batch_size=60001"], "batch_size: Input should be less than"),
    ],
)  # fmt: skip
def test_sizes_beyond_any_real_run_are_refused_with_the_field_named(store, recipe, args, message):
    """Issue 20, defect 13: 10^8 hidden units tried to allocate 313 GB; the other levels'
    steps had no upper bound either (their own field replaced the base one)."""
    out = _cli(store, "run", recipe, "--seeds", "1", *args)
    assert out.exit_code == 2 and message in " ".join(out.output.split()), out.output
    assert store.list_runs() == []


class FullDisk:
    """The store's connection on a disk that just filled up: reads work, every write fails
    with the error SQLite gives then (SQLITE_FULL)."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def execute(self, sql: str, *args):
        if sql.lstrip().split()[0].upper() in ("INSERT", "UPDATE", "DELETE", "BEGIN"):
            raise sqlite3.OperationalError("database or disk is full")
        return self.db.execute(sql, *args)

    def __getattr__(self, name):
        return getattr(self.db, name)


def test_a_full_disk_mid_run_is_a_clear_error_naming_the_cause(store):
    run_id = create_run(store, "gradient_gating_l0", {"steps": 200, "seeds": [1], "eval_every": 0},
                        "cpu")  # fmt: skip

    def fill_the_disk(event):
        if event["type"] == "step" and not isinstance(store._db, FullDisk):
            store._db = FullDisk(store._db)

    with pytest.raises(StoreError) as failure:
        execute_run(store, run_id, on_event=fill_the_disk)
    message = str(failure.value)
    assert f"cannot record how run {run_id} ended" in message
    assert "database or disk is full" in message and "acc run --resume" in message


def test_the_cli_reports_a_store_that_cannot_take_the_write_without_a_traceback(store, monkeypatch):
    def full(*args, **kwargs):
        raise StoreError("the store at X cannot record how run R ended (failed): disk full")

    monkeypatch.setattr("acc.cli.runs.execute_run", full)
    out = _cli(store, *L0, "--seeds", "1")
    assert out.exit_code == 1 and "cannot record how run R ended" in out.output
    assert "Traceback" not in out.output


class FullAfter:
    """``atomic_write`` on a disk that fills up after ``writes`` more files: then every file
    write fails with ENOSPC, as it does on a full disk (SQLite still has free pages)."""

    def __init__(self, writes: int) -> None:
        self.left, self.refused = writes, []
        self.write = checkpoints.atomic_write

    def __call__(self, path, write):
        if self.left <= 0:
            self.refused.append(path.name)
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        self.left -= 1
        self.write(path, write)


FULL_DISK_PARAMS = {"steps": 40, "seeds": [1], "eval_every": 0, "batch_size": 16}


def _full_disk_run(store, data_dir, monkeypatch):
    """A two-branch run whose disk fills after the roots and two resume points are written."""
    run_id = create_run(store, "gradient_gating_l0", FULL_DISK_PARAMS, "cpu", data_dir,
                        checkpoint_every=10)  # fmt: skip
    disk = FullAfter(writes=2 + 2)  # two root checkpoints (file + metadata), two resume points
    monkeypatch.setattr(checkpoints, "atomic_write", disk)
    with pytest.raises(StoreError) as stopped:
        execute_run(store, run_id)
    monkeypatch.setattr(checkpoints, "atomic_write", disk.write)  # space freed
    return run_id, disk, str(stopped.value)


def test_a_full_disk_stops_the_run_at_the_first_refused_write(store, tiny_mnist, monkeypatch):
    run_id, disk, message = _full_disk_run(store, tiny_mnist, monkeypatch)
    assert disk.refused == ["branch-1-step-30.safetensors"]  # one try, not one per branch
    assert message == (
        f"the store at {store.root} could not take a write (saving a resume point of standard "
        f"seed 1: [Errno 28] No space left on device: "
        f"'{store.root / 'checkpoints' / run_id / 'resume' / 'branch-1-step-30.safetensors'}'), "
        f"so run {run_id} stopped; its finished branches and resume points are kept. Free space "
        f"(or fix the store), then resume it with `acc run --resume {run_id}`"
    )
    run = store.get_run(run_id)
    assert run["status"] == "interrupted"
    assert run["error"].startswith("stopped: the store could not take a write (saving a resume")
    branches = store.branches(run_id)
    assert [(b["status"], b["steps_done"]) for b in branches] == [
        ("interrupted", 30),
        ("interrupted", 0),
    ]  # fmt: skip  (the gated branch never started)
    assert branches[1]["started_at"] is None
    resumed = execute_run(store, run_id)
    assert resumed["status"] == "completed"
    reference = Store(store.root.parent / "reference")
    straight = execute_run(reference, create_run(reference, "gradient_gating_l0",
                           FULL_DISK_PARAMS, "cpu", tiny_mnist, checkpoint_every=10))  # fmt: skip
    assert _final_metrics(resumed) == _final_metrics(straight)  # resumed exactly


def _final_metrics(results: dict) -> dict:
    return {
        (condition, r["seed"]): r["metrics"]
        for condition, entry in results["conditions"].items()
        for r in entry["runs"]
    }


def test_a_full_disk_under_worker_processes_is_not_taken_for_a_dead_worker(store, monkeypatch):
    """The driver's write fails while a worker's message is relayed: the failure stops the
    run, where it used to pass for the worker's broken pipe and be dropped (a final checkpoint
    lost so would leave the worker idle and the run waiting for ever)."""
    monkeypatch.setattr(checkpoints, "atomic_write", FullAfter(writes=0))
    ours, theirs = multiprocessing.Pipe()
    spec = BranchSpec("r1", 7, "gradient_gating_l0", {}, "standard", 1, "ck-1", b"")
    worker = _Worker(process=SimpleNamespace(is_alive=lambda: True), conn=ours, spec=spec)
    pool = _Pool(1, 1, deque(), RunRecorder(store))
    theirs.send(("event", {"type": "resume_point", "step": 10, "state": b"x"}))
    with pytest.raises(
        StoreWriteFailed, match=r"saving a resume point of standard seed 1: \[Errno 28\]"
    ):
        pool._drain(worker)


def test_the_cli_says_once_that_the_disk_is_full_with_no_traceback(store, tiny_mnist, monkeypatch):
    disk = FullAfter(writes=2 + 2)
    monkeypatch.setattr(checkpoints, "atomic_write", disk)
    out = _cli(store, "run", "gradient_gating_l0", "--steps", "40", "--seeds", "1",
               "--eval-every", "0", "--checkpoint-every", "10", "-p", "batch_size=16",
               "--data-dir", str(tiny_mnist), "--device", "cpu")  # fmt: skip
    run_id = _only_run(store)["id"]
    text = " ".join(out.output.split())
    assert out.exit_code == 1, out.output
    assert text.count("could not take a write") == 1 and "Traceback" not in text
    assert f"then resume it with `acc run --resume {run_id}`" in text
    assert "[Errno 28] No space left on device" in text
    assert disk.refused == ["branch-1-step-30.safetensors"]


def test_a_second_ctrl_c_while_the_run_closes_does_not_leave_it_running(store, monkeypatch):
    run_id = create_run(store, "gradient_gating_l0", {"steps": 50, "seeds": [1], "eval_every": 0},
                        "cpu")  # fmt: skip
    finish = store.finish_run

    def finish_after_a_second_ctrl_c(*args):
        os.kill(os.getpid(), signal.SIGINT)  # the user presses Ctrl-C again, impatient
        time.sleep(0.05)
        finish(*args)

    def first_ctrl_c(event):
        if event["type"] == "step":
            raise KeyboardInterrupt

    monkeypatch.setattr(store, "finish_run", finish_after_a_second_ctrl_c)
    results = execute_run(store, run_id, on_event=first_ctrl_c)
    assert results["status"] == "interrupted"
    assert store.get_run(run_id)["status"] == "interrupted"
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # restored after

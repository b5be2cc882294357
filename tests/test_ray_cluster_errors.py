"""A Ray cluster that cannot be joined, without a cluster: a stand-in GCS that answers gRPC as a
token-authenticated Ray 2.60 head does. The driver is told at once what to set (Ray itself
retries for half a minute, then says "Failed to connect"), and nothing is opened at --store."""

from __future__ import annotations

import errno
import time
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace

import pytest
from typer.testing import CliRunner

from acc.cli import app
from acc.executors import ExecutorError
from acc.executors.ray_auth import check_authentication, refused_for_token
from acc.store import Store

pytest.importorskip("ray")
grpc = pytest.importorskip("grpc")
runner = CliRunner()
TOKEN = "cluster-token"
REFUSAL = "InvalidAuthToken: Authentication token is missing or incorrect"  # Ray 2.60's words


@pytest.fixture(scope="module")
def head():
    """HOST:PORT of a GCS stand-in that accepts only ``Bearer cluster-token``."""

    def cluster_id(request, context):
        if dict(context.invocation_metadata()).get("authorization") != f"Bearer {TOKEN}":
            context.abort(grpc.StatusCode.UNAUTHENTICATED, REFUSAL)
        return b""

    server = grpc.server(ThreadPoolExecutor(max_workers=2))
    handler = grpc.method_handlers_generic_handler(
        "ray.rpc.NodeInfoGcsService",
        {"GetClusterId": grpc.unary_unary_rpc_method_handler(cluster_id)},
    )
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield f"127.0.0.1:{port}"
    server.stop(0)


@pytest.fixture
def driver_env(monkeypatch, tmp_path):
    """This driver's Ray settings, none set (a local ray.init in this process sets some)."""
    for name in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", str(tmp_path / "auth_token"))
    return monkeypatch


def _run(store, *args: str):
    return runner.invoke(
        app,
        ["run", "gradient_gating_l0", "--steps", "5", "--seeds", "1", "--executor", "ray",
         *args, "--store", str(store)],
    )  # fmt: skip


def _said(out) -> str:
    return " ".join(out.output.split())


def test_a_cluster_that_wants_a_token_is_named_at_once_and_no_store_is_made(
    head, driver_env, tmp_path
):
    began = time.monotonic()
    out = _run(tmp_path / "store", "--ray-address", head)
    assert out.exit_code == 2, out.output
    assert time.monotonic() - began < 5  # not Ray's 30 s of retries
    assert (
        f"error: the Ray cluster at {head} requires token authentication and this driver sends "
        "no token: set RAY_AUTH_MODE=token here; every node and the driver need "
        "RAY_AUTH_MODE=token and the same token: the head's ~/.ray/auth_token copied to the same "
        "place on each machine, or RAY_AUTH_TOKEN set to it"
    ) in _said(out)
    assert not (tmp_path / "store").exists()


def test_a_wrong_or_missing_token_is_named_with_where_it_came_from(head, driver_env, tmp_path):
    driver_env.setenv("RAY_AUTH_MODE", "token")
    with pytest.raises(ExecutorError, match=f"there is no token at {tmp_path / 'auth_token'}"):
        check_authentication(head)
    (tmp_path / "auth_token").write_text("not-the-cluster's\n")
    with pytest.raises(ExecutorError, match=r"refused this driver's token \(from .*auth_token\)"):
        check_authentication(head)
    driver_env.setenv("RAY_AUTH_TOKEN", "another")
    with pytest.raises(ExecutorError, match=r"refused this driver's token \(from RAY_AUTH_TOKEN\)"):
        check_authentication(head)
    driver_env.setenv("RAY_AUTH_TOKEN", TOKEN)
    check_authentication(head)  # the cluster's token: nothing to say


def test_a_cluster_without_authentication_is_left_to_ray(driver_env):
    server = grpc.server(ThreadPoolExecutor(max_workers=1))
    handler = grpc.method_handlers_generic_handler(
        "ray.rpc.NodeInfoGcsService",
        {"GetClusterId": grpc.unary_unary_rpc_method_handler(lambda request, context: b"")},
    )
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        check_authentication(f"127.0.0.1:{port}")
    finally:
        server.stop(0)


def test_ray_inits_authentication_failure_is_mapped_to_what_to_set():
    from acc.executors.ray_executor import _connect

    def refused(**options):
        try:
            raise RuntimeError(
                f"Failed to get cluster ID from GCS server: Unauthenticated: {REFUSAL}"
            )
        except RuntimeError as cause:
            raise ConnectionError("Failed to connect to Ray cluster at 10.0.0.5:6379") from cause

    assert refused_for_token(ConnectionError("x")) is False
    with pytest.raises(ExecutorError) as failure:
        _connect(SimpleNamespace(init=refused), "10.0.0.5:6379")
    assert str(failure.value).startswith(
        "cannot join the Ray cluster at 10.0.0.5:6379: Failed to connect to Ray cluster at "
        "10.0.0.5:6379 (its token was refused: every node and the driver need RAY_AUTH_MODE=token"
    )


@pytest.mark.parametrize("command", ["run", "sweep"])
def test_a_cluster_that_does_not_answer_leaves_no_store(tmp_path, command):
    args = [command, "gradient_gating_l0", "--steps", "5", "--seeds", "1", "--executor", "ray",
            "--ray-address", "127.0.0.1:1", "--store", str(tmp_path / "store")]  # fmt: skip
    if command == "sweep":
        args += ["--grid", "temperature=0.5,1"]
    out = runner.invoke(app, args)
    assert out.exit_code == 2, out.output
    assert "no Ray cluster answers at 127.0.0.1:1" in _said(out)
    assert not (tmp_path / "store").exists()


# --- a head lost mid-run, a worker lost and retried: Ray Core played in this process ---------


class WorkerCrashedError(Exception):
    """Named as Ray names a dead worker (the executor reads the cause's class name)."""


class RayTaskError(Exception):
    def __init__(self, cause: Exception) -> None:
        super().__init__(f"the task's worker died: {cause!r}")
        self.cause = cause


class FakeRay:
    """Ray Core as the executor uses it, each task trained here when its generator is read
    (the real task function, one branch at a time). ``lose_head_after``: the head stops once
    that many branches completed (ray.wait then fails as a driver's broken pipe does);
    ``crash``: (branch label, step) after whose resume point the worker dies, once."""

    def __init__(self, lose_head_after: int | None = None, crash: tuple | None = None) -> None:
        self.lose_head_after, self.crash = lose_head_after, crash
        self.completed, self.crashed_at = 0, None

    def remote(self, task):
        ray = self

        class Remote:
            def options(self, **resources):
                return self

            def remote(self, spec, threads):
                return FakeGenerator(ray, spec, task(spec, threads))

        return Remote()

    def wait(self, refs, num_returns, timeout):
        if self.lose_head_after is not None and self.completed >= self.lose_head_after:
            raise OSError(errno.EPIPE, "Broken pipe")
        return refs[:num_returns], refs[num_returns:]

    def get(self, item):
        return item

    def cancel(self, generator, force=False):
        pass


class FakeGenerator:
    def __init__(self, ray: FakeRay, spec, inner) -> None:
        self.ray, self.spec, self.inner, self.dying = ray, spec, inner, False

    def __next__(self):
        if self.dying:
            self.ray.crashed_at = time.time()
            raise RayTaskError(WorkerCrashedError())
        item = next(self.inner)
        if item[0] == "done":
            self.ray.completed += 1
        event = item[1] if item[0] == "event" else {}
        here = (self.spec.label, event.get("step"))
        if event.get("type") == "resume_point" and here == self.ray.crash:
            self.ray.crash, self.dying = None, True
        return item


def _ray_executor(monkeypatch, ray: FakeRay, gcs_address: str):
    from acc.executors import ray_executor

    monkeypatch.setattr(ray_executor, "_ray", lambda: ray)
    pool = object.__new__(ray_executor.RayExecutor)
    pool.cpus_per_branch, pool.gpus_per_branch, pool.workers = 1, 0.0, 2
    pool.gcs_address, pool.where = gcs_address, "the Ray cluster at 10.0.0.5:6379"
    pool._started_here = False
    monkeypatch.setattr("acc.cli.runs.build_executor", lambda *args: pool)
    return pool


def _cli_run(store_dir, data_dir):
    return runner.invoke(
        app,
        ["run", "gradient_gating_l0", "--steps", "40", "--seeds", "1", "--eval-every", "0",
         "--checkpoint-every", "20", "-p", "batch_size=16", "--device", "cpu",
         "--data-dir", str(data_dir), "--store", str(store_dir)],
    )  # fmt: skip


def test_a_head_lost_mid_run_leaves_a_partial_run_naming_the_cluster(
    monkeypatch, tmp_path, tiny_mnist
):
    _ray_executor(monkeypatch, FakeRay(lose_head_after=1), gcs_address="127.0.0.1:1")
    out = _cli_run(tmp_path / "store", tiny_mnist)
    assert out.exit_code == 1, out.output
    lost = (
        "the Ray cluster at 10.0.0.5:6379 was lost mid-run (BrokenPipeError: [Errno 32] Broken "
        "pipe): its head stopped or cannot be reached; resume the run once the cluster is back"
    )
    assert f"gated seed 1: failed: {lost}" in _said(out)  # said as it happens
    assert f"run partial: 1 of 2 branches did not complete: gated seed 1: {lost}" in _said(out)
    store = Store(tmp_path / "store")
    [run] = store.list_runs()
    assert store.get_run(run["id"])["status"] == "partial"
    assert [b["status"] for b in store.branches(run["id"])] == ["completed", "failed"]


def test_a_retry_after_a_lost_worker_is_said_and_keeps_the_first_start(
    monkeypatch, tmp_path, tiny_mnist, head
):
    ray = FakeRay(crash=("standard seed 1", 20))
    _ray_executor(monkeypatch, ray, gcs_address=head)  # the head answers: only a worker died
    out = _cli_run(tmp_path / "store", tiny_mnist)
    assert out.exit_code == 0, out.output
    assert (
        "standard seed 1: its Ray worker was lost (WorkerCrashedError); retrying once from step 20"
    ) in _said(out)
    store = Store(tmp_path / "store")
    [run] = store.list_runs()
    first = store.branches(run["id"])[0]
    assert first["status"] == "completed" and first["steps_done"] == 40
    assert first["started_at"] < ray.crashed_at < first["finished_at"]

"""A Ray cluster that cannot be joined, without a cluster: a stand-in GCS that answers gRPC as a
token-authenticated Ray 2.60 head does. The driver is told at once what to set (Ray itself
retries for half a minute, then says "Failed to connect"), and nothing is opened at --store."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace

import pytest
from typer.testing import CliRunner

from acc.cli import app
from acc.executors import ExecutorError
from acc.executors.ray_auth import check_authentication, refused_for_token

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

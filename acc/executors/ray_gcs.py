"""One gRPC call to a Ray cluster's GCS (its head's control service), in milliseconds.

What ``ray.init`` and ``ray.wait`` cannot say quickly: whether a cluster wants a token this
driver does not send (``acc.executors.ray_auth``), and whether a cluster that stopped
answering mid-run is gone (its head stopped) or only lost a worker.
"""

from __future__ import annotations

PROBE_METHOD = "/ray.rpc.NodeInfoGcsService/GetClusterId"  # any GCS call; this one is tiny
PROBE_TIMEOUT_SECONDS = 5.0
GONE = ("UNAVAILABLE", "DEADLINE_EXCEEDED")  # nothing answers there (any answer means alive)


def call(address: str, token: str | None = None, timeout: float = PROBE_TIMEOUT_SECONDS) -> str:
    """The gRPC status name of one GCS call to ``address`` (HOST:PORT): ``OK``,
    ``UNAUTHENTICATED`` (it wants another token), ``UNAVAILABLE`` (nothing answers), ..."""
    import grpc  # installed with Ray

    metadata = [("authorization", f"Bearer {token}")] if token else None
    with grpc.insecure_channel(address) as channel:
        try:
            channel.unary_unary(PROBE_METHOD)(b"", timeout=timeout, metadata=metadata)
        except grpc.RpcError as exc:
            return exc.code().name
    return "OK"


def answers(address: str, timeout: float = 2.0) -> bool:
    """Whether the cluster's head is there (even one that refuses us)."""
    return call(address, timeout=timeout) not in GONE

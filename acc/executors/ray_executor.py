"""The Ray executor: each branch a Ray Core task, on a local instance or an existing cluster.

A branch task is a Ray *generator*: it trains in a thread of the Ray worker and yields each
event as it comes, then the outcome, so live progress reaches the driver while the branch
trains (``ray.wait`` over all running generators). Results and checkpoint bytes travel back
through Ray's object store: no shared file system is assumed, and workers load MNIST from
their own install of ACC.

A task whose worker process dies (killed, out of memory, lost node) is retried once by this
executor, from the newest resume point the driver has received (said on the CLI); a second
loss fails the branch. A cluster whose head stops answering (a GCS call tells) fails the
branches in flight naming it, so a run with completed branches ends ``partial``, resumable.
Each task asks for ``num_cpus`` (torch threads follow it) and, on GPU machines, a fraction of
a GPU (``--gpus-per-branch 0.25`` lets four branches share one).
"""

from __future__ import annotations

import contextlib
import os
import queue
import socket
import threading
from dataclasses import dataclass, replace

from acc.branch import BranchFailure, BranchSpec, run_branch_safely
from acc.executors import ExecutorError, drive, ray_gcs
from acc.executors.ray_auth import HOW_TOKENS_WORK, check_authentication, refused_for_token
from acc.status import Status
from acc.write_failure import is_write_failure

RAY_VERSION = "2.60.0"
INSTALL_HINT = f"pip install -e '.[ray]' (installs ray=={RAY_VERSION})"
CONNECT_TIMEOUT_SECONDS = 10.0
LOST_WORKER = ("WorkerCrashedError", "NodeDiedError", "OutOfMemoryError", "ObjectLostError")


def _ray():
    try:
        import ray
    except ImportError:
        raise ExecutorError(
            f"the ray executor needs Ray, which is not installed: {INSTALL_HINT}"
        ) from None
    return ray


class RayExecutor:
    name = "ray"

    def __init__(
        self, address: str | None = None, threads: int | None = None, gpus_per_branch: float = 0.0
    ) -> None:
        ray = _ray()
        if not 0 <= gpus_per_branch <= 1:
            raise ExecutorError(f"--gpus-per-branch must be in [0, 1], got {gpus_per_branch}")
        if address:
            _check_reachable(address)
            check_authentication(address)  # milliseconds, where ray.init would wait 30 s
        self.cpus_per_branch = threads or 1
        self.gpus_per_branch = gpus_per_branch
        self._started_here = not ray.is_initialized()
        if self._started_here:
            _connect(ray, address)
        self.gcs_address = ray.get_runtime_context().gcs_address  # to tell a lost head
        self.where = f"the Ray cluster at {address}" if address else "the local Ray instance"
        cpus = int(ray.cluster_resources().get("CPU", 1))
        self.workers = max(1, cpus // self.cpus_per_branch)

    def run(self, specs: list[BranchSpec], sink, should_stop=None) -> None:
        drive(_Tasks(self, specs, sink), should_stop)

    def close(self) -> None:
        ray = _ray()
        if self._started_here and ray.is_initialized():
            ray.shutdown()


class _Tasks:
    """The Ray tasks of one ``run``: one generator per branch attempt."""

    def __init__(self, executor: RayExecutor, specs: list[BranchSpec], sink) -> None:
        self.ray, self.specs, self.sink = _ray(), specs, sink
        self.remote = self.ray.remote(_branch_task).options(
            num_cpus=executor.cpus_per_branch, num_gpus=executor.gpus_per_branch, max_retries=0
        )
        self.threads = executor.cpus_per_branch
        self.gcs_address, self.where = executor.gcs_address, executor.where
        self.running: dict = {}  # generator -> _Attempt
        self.reason: Status | None = None

    def start(self) -> None:
        for spec in self.specs:  # Ray schedules them as CPUs (and GPU shares) come free
            self.submit(spec)

    def busy(self) -> bool:
        return bool(self.running)

    def submit(self, spec: BranchSpec, attempt: int = 1, resume_step: int = 0) -> None:
        generator = self.remote.remote(spec, self.threads)
        self.running[generator] = _Attempt(spec, attempt, spec.resume, resume_step)

    def serve(self) -> None:
        """Relay what one ready branch has yielded (waits at most 0.25 s for one). A cluster
        that stops answering (its head stopped) fails every branch still in flight with its
        name, and the run ends as the branches say (``partial`` if some completed)."""
        try:
            self._serve()
        except Exception as exc:
            if is_write_failure(exc) or self._cluster_answers():
                raise  # the store's, or not the cluster's: the run stops as before
            self._lost(exc)

    def _serve(self) -> None:
        ready, _ = self.ray.wait(list(self.running), num_returns=1, timeout=0.25)
        for generator in ready:
            if generator not in self.running:  # the cluster was lost meanwhile
                continue
            attempt = self.running[generator]
            try:
                kind, payload = self.ray.get(next(generator))
            except StopIteration:
                del self.running[generator]
                continue
            except Exception as exc:  # noqa: BLE001 - a lost worker, a cancel, a Ray failure
                del self.running[generator]
                self._failed(attempt, exc)
                continue
            if kind == "event":
                if payload["type"] == "resume_point":
                    attempt.resume, attempt.resume_step = payload["state"], payload["step"]
                self.sink.event(attempt.spec, payload)
            else:
                del self.running[generator]
                self.sink.finished(attempt.spec, payload)

    def _failed(self, attempt: _Attempt, exc: Exception) -> None:
        spec, kind = attempt.spec, _cause(exc)
        if self.reason is not None:  # cancelled by us: it stopped where its last step says
            error = "interrupted by the user" if self.reason == Status.INTERRUPTED else "cancelled"
            self.sink.finished(spec, BranchFailure(self.reason, error))
        elif not self._cluster_answers():  # the head is gone: no retry can run
            self._lost(exc, attempt)
        elif kind in LOST_WORKER and attempt.number == 1:
            self.sink.notice(
                f"{spec.label}: its Ray worker was lost ({kind}); retrying once from step "
                f"{attempt.resume_step}"
            )
            self.submit(replace(spec, resume=attempt.resume), 2, attempt.resume_step)
        elif kind in LOST_WORKER:
            self.sink.finished(
                spec, BranchFailure(Status.FAILED, f"its Ray worker was lost twice ({kind})")
            )
        else:
            self.sink.finished(spec, BranchFailure(Status.FAILED, f"{kind}: {exc}"))

    def _cluster_answers(self) -> bool:
        return ray_gcs.answers(self.gcs_address)

    def _lost(self, exc: Exception, *failed: _Attempt) -> None:
        """The cluster is gone: ``failed`` and every branch in flight fail naming it; the run
        ends ``partial`` (or ``failed``) and resumes once the cluster is back."""
        error = (
            f"{self.where} was lost mid-run ({_cause(exc)}: {exc}): its head stopped "
            "or cannot be reached; resume the run once the cluster is back"
        )
        for attempt in [*failed, *self.running.values()]:
            self.sink.finished(attempt.spec, BranchFailure(Status.FAILED, error))
        self.running.clear()

    def stop_all(self, reason: Status) -> None:
        self.reason = reason
        for generator in self.running:
            self.ray.cancel(generator)

    def close(self) -> None:
        """After an error (or a second Ctrl-C): kill what still runs and record it."""
        for generator, attempt in list(self.running.items()):
            with contextlib.suppress(Exception):  # a cluster that is gone cannot cancel
                self.ray.cancel(generator, force=True)
            self.sink.finished(attempt.spec, BranchFailure(self.reason or Status.FAILED, "stopped"))
        self.running.clear()


@dataclass
class _Attempt:
    """One try at a branch: its spec, which try, and the newest resume point received."""

    spec: BranchSpec
    number: int
    resume: bytes | None
    resume_step: int


def _cause(exc: Exception) -> str:
    """The name of what went wrong: Ray wraps causes (RayTaskError(TaskCancelledError))."""
    cause = getattr(exc, "cause", None)
    return type(cause if isinstance(cause, BaseException) else exc).__name__


def _connect(ray, address: str | None) -> None:
    """Start a local instance sized to this machine, or join ``address`` (HOST:PORT), failing
    fast with a clear message when nothing answers there."""
    options = {"include_dashboard": False, "configure_logging": False, "log_to_driver": False}
    if address:
        try:
            ray.init(address=address, **options)
        except Exception as exc:  # noqa: BLE001 - Ray raises many kinds; all mean "cannot join"
            why = f" (its token was refused: {HOW_TOKENS_WORK})" if refused_for_token(exc) else ""
            raise ExecutorError(f"cannot join the Ray cluster at {address}: {exc}{why}") from None
        return
    ray.init(num_cpus=os.cpu_count() or 1, **options)


def _check_reachable(address: str) -> None:
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        raise ExecutorError(f"--ray-address takes HOST:PORT (e.g. 10.0.0.5:6379), got {address!r}")
    try:
        with socket.create_connection((host, int(port)), timeout=CONNECT_TIMEOUT_SECONDS):
            pass
    except OSError as exc:
        raise ExecutorError(
            f"no Ray cluster answers at {address} ({exc.strerror or exc}); start one with "
            "`ray start --head --port PORT` on the head node, or leave out --ray-address "
            "for a local instance"
        ) from None


def _branch_task(spec: BranchSpec, threads: int):
    """The Ray task: train the branch in a thread, yield its events as they come, then
    ``("done", outcome)``. A cancel (KeyboardInterrupt here) stops the training thread at
    its next loss read-back and still yields the outcome."""
    import torch

    torch.set_num_threads(threads)
    events: queue.Queue = queue.Queue()
    stop = threading.Event()

    def train() -> None:
        outcome = run_branch_safely(spec, lambda e: events.put(("event", e)), stop.is_set)
        events.put(("done", outcome))

    thread = threading.Thread(target=train, name=f"branch {spec.label}", daemon=True)
    thread.start()
    while True:
        try:
            item = events.get()
        except KeyboardInterrupt:  # ray.cancel: stop, and keep relaying until the outcome
            stop.set()
            continue
        yield item
        if item[0] == "done":
            break
    thread.join(timeout=5)

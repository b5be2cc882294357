"""RunRecorder: the driver's end of every branch, and the store's only writer during a run.

Executors call ``event`` for everything a branch streams while it trains and ``finished`` with
its outcome, always from the driver's thread. The recorder writes the store (losses, periodic
evaluations, resume points, final metrics and checkpoints, statuses) and forwards each event
to ``on_event`` (the CLI's progress bars, the server's job log) without the resume points'
bytes. Inline, process and Ray execution therefore look the same to the store and to people.

A write the store's storage refuses (a full disk: ``acc.write_failure``) is raised once as
``StoreWriteFailed``, which stops the run; after it the recorder takes nothing more, so the
executor can release its branches without each failing on the same full disk.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from acc.branch import BranchFailure, BranchOutcome, BranchResult, BranchSpec
from acc.checkpoints import bytes_to_tensors
from acc.status import Status
from acc.store import Store
from acc.write_failure import StoreWriteFailed, recording

EventSink = Callable[[dict], None]
DOING = {  # what the driver was doing with a branch's event, for a write that failed
    "branch": "starting",
    "step": "recording the losses of",
    "health": "recording the loss health of",
    "eval": "recording an evaluation of",
    "resume_point": "saving a resume point of",
}


class RunRecorder:
    """Records the branches of any number of runs (a sweep's settings are several runs):
    each spec names its run."""

    def __init__(self, store: Store, on_event: EventSink | None = None) -> None:
        self.store = store
        self._forward = on_event or (lambda event: None)
        self.failure: StoreWriteFailed | None = None  # the write that stopped the run
        self._started: set[int] = set()  # branches started by this recorder (retries keep it)

    def log(self, message: str) -> None:
        self._guarded("recording a message", self._forward, {"type": "log", "message": message})

    def notice(self, message: str) -> None:
        """A message the person watching should see now (the CLI prints it)."""
        event = {"type": "log", "message": message, "notice": True}
        self._guarded("recording a message", self._forward, event)

    def event(self, spec: BranchSpec, event: dict) -> None:
        doing = f"{DOING.get(event['type'], 'recording an event of')} {spec.label}"
        self._guarded(doing, self._event, spec, event)

    def finished(self, spec: BranchSpec, outcome: BranchOutcome) -> None:
        doing = f"recording how {spec.label} ended"
        if isinstance(outcome, BranchResult):
            doing = f"saving the final checkpoint of {spec.label}"
        self._guarded(doing, self._finished, spec, outcome)

    def _guarded(self, doing: str, write: Callable, *args) -> None:
        """Run one write; the first the storage refuses is kept and raised, and nothing is
        written after it (the run is stopping; its open branches are closed by the runner)."""
        if self.failure is not None:
            return
        try:
            with recording(doing):
                write(*args)
        except StoreWriteFailed as failure:
            self.failure = failure
            raise

    def _event(self, spec: BranchSpec, event: dict) -> None:
        event = {**event, "run_id": spec.run_id}  # a sweep's listeners tell its runs apart
        kind = event["type"]
        if kind in ("step", "eval"):  # when it was recorded: the charts' time axes
            event["time"] = time.time()
        if kind == "branch" and event["state"] == Status.RUNNING:
            restarted = spec.branch_id in self._started  # a retry keeps its first start
            self.store.start_branch(spec.branch_id, event.get("from_step", 0), restarted)
            self._started.add(spec.branch_id)
        elif kind == "step":
            self.store.add_losses(
                spec.branch_id,
                event["step"],
                event["losses"],
                event.get("health"),
                points=event.get("points"),
                at=event["time"],
            )
        elif kind == "health":
            self.store.set_health(spec.branch_id, event["health"])
        elif kind == "eval":
            self.store.add_eval(spec.branch_id, event["step"], event["metrics"], event["time"])
        elif kind == "resume_point":
            self.store.checkpoints.save_resume_point(
                spec.run_id, spec.branch_id, event["step"], event["state"]
            )
            event = {k: v for k, v in event.items() if k != "state"}
        self._forward(event)

    def _finished(self, spec: BranchSpec, outcome: BranchOutcome) -> None:
        if isinstance(outcome, BranchFailure):
            self._failed(spec, outcome)
            return
        tensors, _ = bytes_to_tensors(outcome.weights)
        ckpt = self.store.checkpoints.save(
            spec.run_id,
            tensors,
            "final",
            step=outcome.steps,
            metadata=outcome.metadata,
            seed=spec.seed,
            parent_id=spec.root_id,
            branch_id=spec.branch_id,
        )
        self.store.set_branch_checkpoint(spec.branch_id, ckpt.id)
        self.store.record_metrics(spec.branch_id, outcome.metrics)
        self.store.finish_branch(spec.branch_id, Status.COMPLETED, outcome.steps)
        self.store.checkpoints.drop_resume_point(spec.branch_id)
        tag = {"condition": spec.condition, "seed": spec.seed, "run_id": spec.run_id}
        self._forward({"type": "results", "metrics": outcome.metrics, **tag})
        self._forward(
            {"type": "branch", "state": "completed", "error": None, "steps": outcome.steps, **tag}
        )

    def _failed(self, spec: BranchSpec, failure: BranchFailure) -> None:
        self.store.finish_branch(spec.branch_id, failure.status, failure.steps, failure.error)
        if failure.traceback:
            self._forward({"type": "log", "message": failure.traceback})
        steps = failure.steps
        if steps is None:
            steps = next(
                b["steps_done"]
                for b in self.store.branches(spec.run_id)
                if b["id"] == spec.branch_id
            )
        self._forward(
            {
                "type": "branch",
                "state": str(failure.status),
                "condition": spec.condition,
                "seed": spec.seed,
                "run_id": spec.run_id,
                "error": failure.error,
                "steps": steps,
            }
        )

"""The inline executor: branches one after another in the driver's own process."""

from __future__ import annotations

import torch

from acc.branch import BranchFailure, BranchSpec, run_branch_safely
from acc.status import Status
from acc.trainer import StopRequested


class InlineExecutor:
    name = "inline"
    workers = 1

    def __init__(self, threads: int | None = None) -> None:
        self.threads = threads

    def run(self, specs: list[BranchSpec], sink, should_stop=None) -> None:
        if self.threads:
            torch.set_num_threads(self.threads)
        for spec in specs:
            outcome = run_branch_safely(
                spec, lambda event, s=spec: sink.event(s, event), should_stop
            )
            sink.finished(spec, outcome)
            if isinstance(outcome, BranchFailure) and outcome.status == Status.INTERRUPTED:
                raise KeyboardInterrupt
            if isinstance(outcome, BranchFailure) and outcome.status == Status.CANCELLED:
                raise StopRequested(outcome.error)

    def close(self) -> None:
        pass

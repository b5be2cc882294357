"""Live progress in the terminal: one bar per branch, fed by the run's events.

Branches may train one after another (inline) or side by side (process, Ray): each gets
its bar when it starts, from the step it starts at (a resumed branch does not start at 0).
A sweep (``total`` branches, many runs) keeps one overall bar and a bar only for the branches
in flight, so a hundred branches do not make a hundred lines.
"""

from __future__ import annotations

import time

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

QUIET_SECONDS = 5.0  # a final evaluation longer than this is narrated in a plain log


class ProgressDisplay:
    def __init__(self, console: Console, total: int | None = None) -> None:
        self.console = console
        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[status]}"),
            TimeRemainingColumn(),
            console=console,
        )
        self.bars: dict[tuple, int] = {}
        self.said: dict[tuple, float] = {}  # when each branch's evaluation last said something
        self.quiet_seconds = QUIET_SECONDS
        self.overall = (
            self.progress.add_task("branches done", total=total, status="") if total else None
        )

    def __enter__(self) -> ProgressDisplay:
        self.progress.start()
        return self

    def __exit__(self, *exc) -> None:
        self.progress.stop()

    def handle(self, event: dict) -> None:
        kind = event["type"]
        key = (event.get("run_id"), event.get("condition"), event.get("seed"))
        name = escape(f"{key[1]} seed {key[2]}")
        if kind == "train":
            self._bar(key, name, event["from_step"], event["to_step"])
        elif kind == "step" and key in self.bars:
            status = _status(event)
            self.progress.update(self.bars[key], completed=event["step"], status=status)
            self._plain_line(key, name, event["step"], status)
        elif kind == "phase" and key in self.bars:
            self._phase(key, name, event)
        elif kind == "branch" and event["state"] != "running":
            self._finished(key, name, event)
        elif kind == "log" and event.get("notice"):
            self.console.print(escape(event["message"]))
        elif kind == "log" and "Traceback" in event["message"]:
            self.console.print(f"[dim]{escape(event['message'])}[/dim]")

    def _bar(self, key: tuple, name: str, start: int, total: int) -> None:
        if key not in self.bars:
            self.bars[key] = self.progress.add_task(f"{name:>16}", total=max(total, 1), status="")
        self.progress.update(self.bars[key], total=max(total, 1), completed=start)

    def _phase(self, key: tuple, name: str, event: dict) -> None:
        """After the last step: which part of the final evaluation runs (a level-3 one takes
        minutes, and a bar at 30/30 that said nothing looked stuck). Without a terminal, a
        line once the branch has been quiet for ``quiet_seconds``: a quick evaluation prints
        nothing, a slow one names each part it moves on to."""
        status = phase_text(event)
        self.progress.update(self.bars[key], status=status)
        if self.console.is_terminal or event["index"] == 0:
            self.said[key] = time.monotonic()
        elif time.monotonic() - self.said.get(key, 0.0) >= self.quiet_seconds:
            self.console.print(f"{name}: {status}")
            self.said[key] = time.monotonic()

    def _finished(self, key: tuple, name: str, event: dict) -> None:
        state, error = event["state"], event.get("error")
        if error and state != "completed":
            self.console.print(f"{name}: {state}: {escape(error)}")
        if self.overall is not None:
            self.progress.advance(self.overall)
            if key in self.bars:  # a sweep keeps bars for the branches in flight only
                self.progress.remove_task(self.bars.pop(key))
        elif key in self.bars:
            bar = self.bars[key]
            done = self.progress.tasks[bar].total if state == "completed" else event.get("steps", 0)
            self.progress.update(bar, completed=done, status=state)

    def _plain_line(self, key: tuple, name: str, step: int, status: str) -> None:
        """Without a terminal (a log file, CI) live bars do not render: log every tenth."""
        if self.console.is_terminal:
            return
        total = next(t.total for t in self.progress.tasks if t.id == self.bars[key]) or 1
        if step == total or step % max(int(total) // 10, 1) < 50:
            self.console.print(f"{name}: step {step}/{int(total)} · {status}")


def _status(event: dict) -> str:
    """Losses, speed, and any training task whose loss does not look healthy (LossHealth)."""
    loss = " ".join(f"{k} {v:.4f}" for k, v in event["losses"].items())
    unwell = [f"{k} {h}" for k, h in (event.get("health") or {}).items() if h != "healthy"]
    warning = f" · [yellow]{', '.join(unwell)}[/yellow]" if unwell else ""
    return f"{loss} · {event['steps_per_second']:.0f} it/s{warning}"


def phase_text(event: dict) -> str:
    """'evaluating 3/7: disentanglement' (0/7: the pass over the test images they share)."""
    return f"{event['phase']} {event['index']}/{event['total']}: {escape(str(event['task']))}"

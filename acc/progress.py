"""Live progress in the terminal: one bar per branch, fed by the run's events.

Branches may train one after another (inline) or side by side (process, Ray): each gets
its bar when it starts, from the step it starts at (a resumed branch does not start at 0).
"""

from __future__ import annotations

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn


class ProgressDisplay:
    def __init__(self, console: Console) -> None:
        self.console = console
        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[status]}"),
            TimeRemainingColumn(),
            console=console,
        )
        self.bars: dict[tuple[str, int], int] = {}

    def __enter__(self) -> ProgressDisplay:
        self.progress.start()
        return self

    def __exit__(self, *exc) -> None:
        self.progress.stop()

    def handle(self, event: dict) -> None:
        kind = event["type"]
        key = (event.get("condition"), event.get("seed"))
        if kind == "train":
            self._bar(key, event["from_step"], event["to_step"])
        elif kind == "step" and key in self.bars:
            status = _status(event)
            self.progress.update(self.bars[key], completed=event["step"], status=status)
            self._plain_line(key, event["step"], status)
        elif kind == "branch" and event["state"] != "running" and key in self.bars:
            bar = self.bars[key]
            total = self.progress.tasks[bar].total
            done = total if event["state"] == "completed" else event.get("steps", 0)
            self.progress.update(bar, completed=done, status=event["state"])
            if event.get("error") and event["state"] != "completed":
                self.console.print(f"{key[0]} seed {key[1]}: {event['state']}: {event['error']}")
        elif kind == "branch" and event["state"] != "running":
            self.console.print(
                f"{key[0]} seed {key[1]}: {event['state']} {event.get('error') or ''}"
            )
        elif kind == "log" and "Traceback" in event["message"]:
            self.console.print(f"[dim]{event['message']}[/dim]")

    def _bar(self, key: tuple, start: int, total: int) -> None:
        if key not in self.bars:
            self.bars[key] = self.progress.add_task(
                f"{key[0]:>10} seed {key[1]:<5}", total=max(total, 1), status=""
            )
        self.progress.update(self.bars[key], total=max(total, 1), completed=start)

    def _plain_line(self, key: tuple, step: int, status: str) -> None:
        """Without a terminal (a log file, CI) live bars do not render: log every tenth."""
        if self.console.is_terminal:
            return
        total = self.progress.tasks[self.bars[key]].total or 1
        if step == total or step % max(int(total) // 10, 1) < 50:
            self.console.print(f"{key[0]} seed {key[1]}: step {step}/{int(total)} · {status}")


def _status(event: dict) -> str:
    """Losses, speed, and any training task whose loss does not look healthy (LossHealth)."""
    loss = " ".join(f"{k} {v:.4f}" for k, v in event["losses"].items())
    unwell = [f"{k} {h}" for k, h in (event.get("health") or {}).items() if h != "healthy"]
    warning = f" · [yellow]{', '.join(unwell)}[/yellow]" if unwell else ""
    return f"{loss} · {event['steps_per_second']:.0f} it/s{warning}"

"""A branch's final evaluation says where it is (issue 20, defect 5: a level-3 run sat at
30/30, 'training', for 25 minutes and the CLI printed nothing): ``phase`` events from the
branch, shown by the CLI's progress display."""

from __future__ import annotations

import io

from rich.console import Console

from acc.progress import ProgressDisplay
from acc.runner import create_run, execute_run


def test_the_final_evaluation_emits_a_phase_per_task_in_order(store, tiny_mnist):
    params = {"steps": 3, "seeds": [1], "eval_every": 0, "batch_size": 16}
    run_id = create_run(store, "gradient_gating_l0", params, "cpu", tiny_mnist)
    events = []
    execute_run(store, run_id, on_event=events.append)
    standard = [e for e in events if e.get("condition") == "standard"]
    kinds = [e["type"] for e in standard]
    phases = [e for e in standard if e["type"] == "phase"]
    # after the last step, before the branch's results
    assert max(i for i, k in enumerate(kinds) if k == "step") < kinds.index("phase")
    assert kinds.index("results") > max(i for i, k in enumerate(kinds) if k == "phase")
    assert [(p["phase"], p["index"], p["total"], p["task"]) for p in phases] == [
        ("evaluating", 0, 6, "outputs on the test split"),
        ("evaluating", 1, 6, "reconstruction"),
        ("evaluating", 2, 6, "weight_diversity"),
        ("evaluating", 3, 6, "effective_rank"),
        ("evaluating", 4, 6, "weight_norm"),
        ("evaluating", 5, 6, "sparsity"),
        ("evaluating", 6, 6, "dead_units"),
    ]


def branch_events():
    """One branch's events as the CLI gets them, with the time each arrives (seconds)."""
    tag = {"run_id": "r", "condition": "gated", "seed": 7}
    step = {"losses": {"reconstruction": 0.5}, "steps_per_second": 9.0, **tag}
    yield 0, {"type": "train", "from_step": 0, "to_step": 30, **tag}
    yield 1, {"type": "step", "step": 30, **step}
    for index, task, at in [(0, "outputs on the test split", 1), (1, "reconstruction", 2),
                            (2, "digit", 9), (3, "disentanglement", 10)]:  # fmt: skip
        yield at, {"type": "phase", "phase": "evaluating", "index": index, "total": 3,
                   "task": task, **tag}  # fmt: skip


def test_the_cli_says_which_part_of_a_slow_evaluation_runs(monkeypatch):
    out = io.StringIO()
    console = Console(file=out, force_terminal=False, width=120)
    now = [0.0]
    monkeypatch.setattr("acc.progress.time.monotonic", lambda: now[0])
    with ProgressDisplay(console) as display:
        for at, event in branch_events():
            now[0] = at
            display.handle(event)
        [bar] = display.progress.tasks
        assert bar.fields["status"] == "evaluating 3/3: disentanglement"
    lines = [line for line in out.getvalue().splitlines() if line.startswith("gated seed 7: ev")]
    # a quick start is not narrated; once quiet for 5 s each part it moves on to is named
    assert lines == ["gated seed 7: evaluating 2/3: digit"], out.getvalue()

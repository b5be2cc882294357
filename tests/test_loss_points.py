"""Loss points: a point per step (or per block of ``loss_every`` steps) read back once per
``log_every`` window, recorded as loss rows, and the same whether or not the run was resumed."""

from __future__ import annotations

import pytest
import torch

import acc.trainer
from acc.models import LinearAutoencoder
from acc.runner import create_run, execute_run
from acc.store import Store
from acc.tasks.reconstruction import ReconstructionTask
from acc.trainer import LossPoints, StepInfo, TrainConfig, Trainer, loss_every_for
from acc.training_state import pack, restore


def _trainer(data, reports: list[StepInfo], **config) -> Trainer:
    torch.manual_seed(0)
    model = LinearAutoencoder(784, 16)
    tasks = [ReconstructionTask("r", data)]
    return Trainer(model, tasks, TrainConfig(seed=1, **config), on_step=reports.append)


def _points(reports: list[StepInfo]) -> tuple[list[int], list[float]]:
    steps = [s for r in reports for s in r.points.steps]
    return steps, [v for r in reports for v in r.points.losses["r"]]


@pytest.fixture  # not module-scoped: it must run under the tests' torch thread count
def per_step(small_mnist) -> list[float]:
    """The loss of each of 120 steps, read back one step at a time (log_every=1)."""
    reports: list[StepInfo] = []
    _trainer(small_mnist, reports, log_every=1).train(120)
    assert [r.step for r in reports] == list(range(1, 121))
    return [r.losses["r"] for r in reports]


def test_a_point_per_step_with_one_read_back_per_window(small_mnist, per_step):
    reports: list[StepInfo] = []
    _trainer(small_mnist, reports).train(120)
    assert [r.step for r in reports] == [50, 100, 120]  # still one host sync per window
    steps, values = _points(reports)
    assert steps == list(range(1, 121))
    assert values == per_step
    assert reports[0].losses["r"] == pytest.approx(sum(per_step[:50]) / 50, rel=1e-12)


def test_points_are_block_means_at_multiples_of_loss_every_and_the_end(small_mnist, per_step):
    reports: list[StepInfo] = []
    _trainer(small_mnist, reports, loss_every=7).train(120)
    steps, values = _points(reports)
    assert steps == [*range(7, 120, 7), 120]
    starts = [0, *steps[:-1]]
    expected = [sum(per_step[a:b]) / (b - a) for a, b in zip(starts, steps)]
    assert values == pytest.approx(expected, rel=1e-12)


def test_points_do_not_depend_on_chunks_read_backs_or_a_resume(small_mnist):
    once: list[StepInfo] = []
    _trainer(small_mnist, once, loss_every=7, log_every=25).train(120)

    chunked: list[StepInfo] = []
    trainer = _trainer(small_mnist, chunked, loss_every=7, log_every=25)
    trainer.train(30, end_of_run=False)  # 28 is a point; 29 and 30 are carried on
    state = pack(trainer.model, trainer)
    trainer.train(90)

    resumed: list[StepInfo] = []
    fresh = _trainer(small_mnist, resumed, loss_every=7, log_every=25)
    assert restore(state, fresh.model, fresh) == 30
    fresh.train(45, end_of_run=False)
    fresh.train(45)

    assert _points(chunked) == _points(once)
    before_30 = [r for r in chunked if r.step <= 30]
    assert _points(before_30 + resumed) == _points(once)


def test_fewer_points_than_read_backs(small_mnist):
    reports: list[StepInfo] = []
    _trainer(small_mnist, reports, loss_every=70, log_every=25).train(120)
    assert [r.points.steps for r in reports] == [[], [], [70], [], [120]]
    assert reports[0].points == LossPoints([], {"r": []})


def test_the_rule_for_loss_every_and_its_validation():
    assert [loss_every_for(n) for n in (0, 1, 300, 5_000)] == [1, 1, 1, 1]
    assert [loss_every_for(n) for n in (5_001, 10_000, 12_000, 100_000)] == [2, 2, 3, 20]
    with pytest.raises(ValueError, match="loss_every .* must be >= 1, got 0"):
        TrainConfig(loss_every=0)


def _loss_rows(store, run_id: str) -> dict:
    return {
        (b["condition"], b["seed"]): [
            (r["step"], r["task"], r["value"]) for r in store.losses(b["id"])
        ]
        for b in store.branches(run_id)
    }


def test_a_run_stores_a_loss_row_per_step_and_branch(store):
    events = []
    params = {"steps": 60, "seeds": [1], "eval_every": 0, "batch_size": 32}
    run_id = create_run(store, "gradient_gating_l0", params, "cpu")
    assert execute_run(store, run_id, on_event=events.append)["status"] == "completed"
    rows = _loss_rows(store, run_id)
    assert len(rows) == 2
    for branch_rows in rows.values():
        assert [step for step, _, _ in branch_rows] == list(range(1, 61))
    step = next(e for e in events if e["type"] == "step")
    assert step["points"]["step"] == list(range(1, 51))
    assert list(step["points"]["losses"]) == list(step["losses"])
    assert all(len(v) == 50 for v in step["points"]["losses"].values())


def test_a_resumed_run_stores_the_loss_rows_of_an_uninterrupted_one(store, tmp_path, monkeypatch):
    """Resume points at 25, 50, ... and a point every 6 steps: the resumed branch goes on with
    the losses of the steps after its last point, and drops the rows recorded after it."""
    monkeypatch.setattr(acc.trainer, "MAX_LOSS_POINTS", 20)  # 110 steps: a point every 6
    params = {"steps": 110, "seeds": [1], "eval_every": 0, "batch_size": 32}
    reference = Store(tmp_path / "reference")
    straight = create_run(reference, "gradient_gating_l0", params, "cpu", checkpoint_every=0)
    execute_run(reference, straight)

    def stop_after_step_100(event):  # resume point: 75; points to 96 stored
        if event["type"] == "step" and event["step"] == 100:
            raise KeyboardInterrupt

    run_id = create_run(store, "gradient_gating_l0", params, "cpu", checkpoint_every=25)
    assert execute_run(store, run_id, on_event=stop_after_step_100)["status"] == "interrupted"
    assert max(r["step"] for r in store.losses(store.branches(run_id)[0]["id"])) == 96
    assert execute_run(store, run_id)["status"] == "completed"

    expected = _loss_rows(reference, straight)
    assert [s for s, _, _ in expected[("standard", 1)]] == [*range(6, 110, 6), 110]
    assert _loss_rows(store, run_id) == expected

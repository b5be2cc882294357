"""The Trainer: seeded batch order, chunked training, eval-only tasks, non-finite losses."""

from __future__ import annotations

import pytest
import torch

from acc.models import LinearAutoencoder
from acc.tasks.base import EvalOnlyTask
from acc.tasks.reconstruction import ReconstructionTask
from acc.tasks.weight_diversity import WeightDiversityTask
from acc.trainer import BatchOrder, NonFiniteLoss, StopRequested, TrainConfig, Trainer


def _model(seed: int = 0) -> LinearAutoencoder:
    torch.manual_seed(seed)
    return LinearAutoencoder(784, 16)


def _weights(model) -> dict:
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_batch_order_is_fixed_by_seed():
    a = BatchOrder(100, 32, seed=5, device=torch.device("cpu"))
    b = BatchOrder(100, 32, seed=5, device=torch.device("cpu"))
    c = BatchOrder(100, 32, seed=6, device=torch.device("cpu"))
    draws_a = [a.next() for _ in range(7)]
    assert all(torch.equal(x, b.next()) for x in draws_a)
    assert not torch.equal(draws_a[0], c.next())
    epoch = torch.cat(draws_a[:3])  # 3 full batches per epoch of 100, then a new permutation
    assert len(set(epoch.tolist())) == 96


def test_chunked_training_equals_one_call(small_mnist):
    once, chunked = _model(), _model()
    Trainer(once, [ReconstructionTask("r", small_mnist)], TrainConfig(seed=1)).train(40)
    trainer = Trainer(chunked, [ReconstructionTask("r", small_mnist)], TrainConfig(seed=1))
    trainer.train(15)
    trainer.train(25)
    assert trainer.step == 40
    assert all(
        torch.equal(a, b) for a, b in zip(_weights(once).values(), _weights(chunked).values())
    )


def test_training_reduces_loss_and_reports_window_means(small_mnist):
    reports = []
    trainer = Trainer(
        _model(),
        [ReconstructionTask("r", small_mnist)],
        TrainConfig(seed=0, log_every=25),
        on_step=reports.append,
    )
    trainer.train(120)
    assert [r.step for r in reports] == [25, 50, 75, 100, 120]
    assert reports[-1].losses["r"] < 0.6 * reports[0].losses["r"]


class _Exploding(EvalOnlyTask):
    """Not eval-only in spirit: a training task whose loss turns NaN at a known step."""

    eval_only = False

    def __init__(self, dataset, bad_call: int):
        super().__init__("exploder", dataset)
        self.calls, self.bad_call = 0, bad_call

    def compute_loss(self, model_output, batch):
        self.calls += 1
        value = float("nan") if self.calls == self.bad_call else 0.0
        return model_output["reconstruction"].sum() * 0 + value


def test_non_finite_loss_names_step_and_task(small_mnist):
    tasks = [ReconstructionTask("r", small_mnist), _Exploding(small_mnist, bad_call=37)]
    trainer = Trainer(_model(), tasks, TrainConfig(seed=0, log_every=10))
    with pytest.raises(NonFiniteLoss, match="in task 'exploder' at step 37") as err:
        trainer.train(100)
    assert err.value.step == 37


def test_eval_only_tasks_add_no_loss_and_run_periodically(small_mnist):
    evals = []
    diversity = WeightDiversityTask("div", small_mnist, "encoder.0")
    assert float(diversity.compute_loss({}, None)) == 0.0
    with_eval, without = _model(), _model()
    Trainer(
        with_eval,
        [ReconstructionTask("r", small_mnist), diversity],
        TrainConfig(seed=2, eval_every=10),
        on_eval=lambda s, m: evals.append((s, m)),
    ).train(30)
    Trainer(without, [ReconstructionTask("r", small_mnist)], TrainConfig(seed=2)).train(30)
    assert all(
        torch.equal(a, b) for a, b in zip(_weights(with_eval).values(), _weights(without).values())
    )
    assert [s for s, _ in evals] == [0, 10, 20, 30]
    assert set(evals[0][1]) == {"weight_cosine_sim"}


def test_stop_request_and_bad_config(small_mnist):
    trainer = Trainer(
        _model(),
        [ReconstructionTask("r", small_mnist)],
        TrainConfig(seed=0, log_every=5),
        should_stop=lambda: True,
    )
    with pytest.raises(StopRequested):
        trainer.train(50)
    assert trainer.step == 5
    with pytest.raises(ValueError, match="unknown optimizer 'rmsprop'"):
        TrainConfig(optimizer="rmsprop")
    with pytest.raises(ValueError, match="nothing to train"):
        Trainer(_model(), [WeightDiversityTask("d", small_mnist, "encoder.0")], TrainConfig())


def test_sgd_optimizer_is_used(small_mnist):
    trainer = Trainer(
        _model(), [ReconstructionTask("r", small_mnist)], TrainConfig(optimizer="sgd", lr=0.5)
    )
    assert isinstance(trainer.optimizer, torch.optim.SGD)
    assert trainer.optimizer.param_groups[0]["lr"] == 0.5

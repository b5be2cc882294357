"""Evaluation: tasks that read layer activations or the model's outputs share one pass over
the test images, and get exactly the numbers each would get from a pass of its own."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from acc.data import Dataset, Split
from acc.models import ConvAutoencoder, ConvVAE
from acc.recipes.gradient_gating_l1 import specialisation_tasks
from acc.tasks import LayerTask, TaskError
from acc.tasks.base import EVAL_BATCH
from acc.tasks.dead_units import DeadUnitsTask
from acc.tasks.kl_divergence import KLDivergenceTask
from acc.tasks.reconstruction import ReconstructionTask
from acc.trainer import evaluate_tasks


@pytest.fixture(scope="module")
def mnist_32(small_mnist) -> Dataset:
    """Real MNIST digits padded to 32x32, with more test images than one evaluation batch."""

    def pad(split: Split, n: int) -> Split:
        images = F.pad(split.images[:n].view(-1, 1, 28, 28), (2, 2, 2, 2))
        return Split(images, split.labels[:n])

    test = Split(torch.cat([small_mnist.test.images] * 3), torch.cat([small_mnist.test.labels] * 3))
    return Dataset("mnist", "32", pad(small_mnist.train, 256), pad(test, 1500))


def count_forward_passes(model) -> list[int]:
    calls = [0]
    model.register_forward_pre_hook(lambda *_: calls.__setitem__(0, calls[0] + 1))
    return calls


def test_activation_tasks_share_one_pass_and_match_their_own(mnist_32):
    torch.manual_seed(0)
    model = ConvAutoencoder()
    tasks = specialisation_tasks(mnist_32)  # 4 activation readers on two layers, 4 weight tasks
    batches = -(-len(mnist_32.test) // EVAL_BATCH)
    calls = count_forward_passes(model)

    alone = {}
    for task in tasks:
        alone.update(task.evaluate(model))
    assert calls[0] == 4 * batches  # one pass for each of the four activation readers

    calls[0] = 0
    shared = evaluate_tasks(model, tasks)
    assert calls[0] == batches
    assert shared == alone
    assert all(t._shared_activations is None for t in tasks if isinstance(t, LayerTask))


def test_output_readers_share_the_pass_too_and_match_their_own(mnist_32):
    """Level 2's final evaluation: the reconstruction, the KL and four activation readers."""
    torch.manual_seed(0)
    model = ConvVAE()
    readers = [
        ReconstructionTask("reconstruction", mnist_32, reduction="sum"),
        KLDivergenceTask("kl", mnist_32),
    ]
    tasks = [*readers, *specialisation_tasks(mnist_32)]
    batches = -(-len(mnist_32.test) // EVAL_BATCH)
    calls = count_forward_passes(model)

    alone = {}
    for task in tasks:
        alone.update(task.evaluate(model))
    assert calls[0] == 6 * batches

    calls[0] = 0
    shared = evaluate_tasks(model, tasks)
    assert calls[0] == batches
    assert shared == alone
    assert all(t._shared_outputs is None for t in readers)

    calls[0] = 0  # two output readers without activation readers: one pass too
    only_outputs = evaluate_tasks(model, readers)
    assert calls[0] == batches
    assert only_outputs == {k: v for k, v in alone.items() if k in only_outputs}


def test_a_task_with_an_unknown_layer_still_names_the_valid_ones(mnist_32):
    model = ConvAutoencoder()
    with pytest.raises(TaskError, match="unknown layer 'encoder.nope'.*encoder"):
        evaluate_tasks(model, [DeadUnitsTask("dead", mnist_32, "encoder.nope")])

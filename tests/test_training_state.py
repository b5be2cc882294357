"""Resume points: a trainer restored from its packed state trains on exactly as it would have."""

from __future__ import annotations

import pytest
import torch

from acc.data import Dataset, Split
from acc.models import ConvVAE, LinearAutoencoder
from acc.tasks.kl_divergence import KLDivergenceTask
from acc.tasks.reconstruction import ReconstructionTask
from acc.trainer import TrainConfig, Trainer
from acc.training_state import pack, restore, threads_of, unpack


def _vae_data() -> Dataset:
    g = torch.Generator().manual_seed(0)
    images = torch.rand(96, 1, 32, 32, generator=g)
    return Dataset("noise", "32", Split(images, torch.zeros(96)), Split(images[:8], torch.zeros(8)))


def _setup(kind: str, small_mnist, optimizer: str = "adam"):
    torch.manual_seed(3)
    lr = 1e-3 if optimizer == "adam" else 0.01
    if kind == "linear":
        model = LinearAutoencoder(784, 16)
        tasks = [ReconstructionTask("r", small_mnist)]
        batch = 64
    else:  # a VAE: global-RNG noise every step, and a KL warm-up that follows the step
        data = _vae_data()
        model = ConvVAE(1, 4, 32)
        tasks = [
            ReconstructionTask("r", data, reduction="sum"),
            KLDivergenceTask("kl", data, weight=0.5, warmup_steps=25),
        ]
        batch = 16
    config = TrainConfig(seed=1, batch_size=batch, lr=lr, optimizer=optimizer, log_every=10)
    return model, Trainer(model, tasks, config)


@pytest.mark.parametrize("kind", ["linear", "vae"])
@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_a_restored_trainer_continues_bit_for_bit(small_mnist, kind, optimizer):
    straight, trainer = _setup(kind, small_mnist, optimizer)
    trainer.train(20)
    state = pack(straight, trainer)
    trainer.train(20)  # 40 steps without a break (the epoch of 96 wraps at step 6 for the VAE)

    torch.manual_seed(999)  # the global RNG is elsewhere now; the resume point must fix it
    resumed, fresh = _setup(kind, small_mnist, optimizer)
    assert restore(state, resumed, fresh) == 20
    fresh.train(20)
    assert fresh.step == 40
    for key, value in straight.state_dict().items():
        assert torch.equal(value, resumed.state_dict()[key]), key
    if optimizer == "adam":
        assert torch.equal(
            trainer.optimizer.state_dict()["state"][0]["exp_avg"],
            fresh.optimizer.state_dict()["state"][0]["exp_avg"],
        )


def test_pack_keeps_structure_and_types(small_mnist):
    model, trainer = _setup("linear", small_mnist)
    trainer.train(3)
    state = unpack(pack(model, trainer))
    optimizer = state["trainer"]["optimizer"]
    assert set(optimizer["state"]) == {0, 1, 2, 3}  # int keys survive (the optimizer needs them)
    assert isinstance(optimizer["param_groups"][0]["betas"], tuple)
    assert state["trainer"]["step"] == 3 and state["trainer"]["order"]["pos"] == 3 * 64
    assert torch.equal(state["trainer"]["rng"]["cpu"], trainer.state_dict()["rng"]["cpu"])


def test_restored_tensors_own_their_memory_and_the_thread_count_is_recorded(small_mnist):
    """A restored optimizer state is laid out as the uninterrupted run's was (torch's own
    allocations, aligned the same way), never views into the blob's buffers, whose alignment
    depends on what the process allocated before."""
    model, trainer = _setup("linear", small_mnist)
    trainer.train(3)
    data = pack(model, trainer)
    assert threads_of(data) == torch.get_num_threads()
    state = unpack(data)
    moments = [t for s in state["trainer"]["optimizer"]["state"].values() for t in s.values()]
    views = [t for t in moments if not t.untyped_storage().resizable()]  # frombuffer's are not
    assert len(moments) == 12 and not views


def test_anything_else_is_not_a_resume_point():
    from acc.checkpoints import tensors_to_bytes

    with pytest.raises(ValueError, match="not a resume point"):
        unpack(tensors_to_bytes({"w": torch.zeros(2)}, {"model": {}}))

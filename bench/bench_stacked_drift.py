"""How far the stacked executor's numbers drift from the plain path's, against how far the
plain path drifts from itself when its initial weights move by 1e-7 (relative).

A joint step's batched kernels round differently from one branch's (the gradients agree to
about 1e-8 relative: tests/test_stacked.py), and training amplifies any rounding difference.
This prints, at a few steps of one level-0 branch (gated at strength 1, fixed temperature 1,
and its shuffled control), the largest relative difference of a parameter tensor (Frobenius
norm) between (a) the branch in a stack and alone, (b) the branch alone from weights moved by
1e-7 and alone. Growth alike means the drift is training's sensitivity, not a stacked defect.

    nice -n 15 .venv/bin/python bench/bench_stacked_drift.py --steps 2000
"""

from __future__ import annotations

import argparse

import torch

from acc.data import load_mnist
from acc.gradient_gating import attach_competitive_gating
from acc.recipes.gradient_gating_l0 import GradientGatingL0
from acc.stack_step import JointStep, Member
from acc.trainer import TrainConfig, Trainer

SEED = 42


def branch(recipe, p, data, root, control: str | None, noise: float = 0.0) -> tuple:
    model = recipe.build_model(p)
    model.load_state_dict(root)
    if noise:
        generator = torch.Generator().manual_seed(0)
        with torch.no_grad():
            for q in model.parameters():
                q.mul_(1 + noise * torch.randn(q.shape, generator=generator))
    gate = {"encoder.0": {"gate_strength": 1.0}}
    gating = attach_competitive_gating(model, 1.0, gate, control=control, seed=SEED)
    config = TrainConfig(batch_size=p.batch_size, seed=SEED)
    return model, Trainer(model, recipe.tasks(p, data), config), gating


def difference(a: torch.nn.Module, b: torch.nn.Module) -> float:
    return max(((x - y).norm() / y.norm()).item() for x, y in zip(a.parameters(), b.parameters()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=2000)
    args = parser.parse_args()
    recipe, data = GradientGatingL0(), load_mnist("flat")
    p = recipe.Params()
    torch.manual_seed(SEED)
    root = recipe.build_model(p).state_dict()
    marks = sorted({1, 10, 100, 500, 1000, args.steps} & set(range(1, args.steps + 1)))
    for control in (None, "shuffled"):
        alone = branch(recipe, p, data, root, control)
        moved = branch(recipe, p, data, root, control, noise=1e-7)
        stack = [Member(0, "b", *branch(recipe, p, data, root, control)),
                 Member(1, "standard", *branch(recipe, p, data, root, None))]  # fmt: skip
        joint = JointStep(stack)
        print(f"\n{control or 'gated'}: step, stacked vs alone, alone moved 1e-7 vs alone")
        for step in range(1, args.steps + 1):
            alone[1]._train_step()
            moved[1]._train_step()
            joint.step({m.key: m.trainer.order.next() for m in stack})
            if step in marks:
                stacked, perturbed = (
                    difference(stack[0].model, alone[0]),
                    difference(moved[0], alone[0]),
                )
                print(f"  {step:6d}   {stacked:.1e}   {perturbed:.1e}", flush=True)


if __name__ == "__main__":
    main()

"""The plan of a run: one root checkpoint per seed, then one BranchSpec per (condition, seed).

The paired design lives here, once, for every recipe: for each seed the model is built once
under ``torch.manual_seed(seed)`` and saved as the root checkpoint; every condition of that
seed forks from those bytes and draws its batches from a generator seeded by the seed.

Planning is also resuming: roots that exist are reused, completed branches are skipped, and a
branch with a resume point continues from it. Running the plan of a fresh run and of an
interrupted one is the same operation.
"""

from __future__ import annotations

import torch

from acc.branch import BranchSpec, pack_factors
from acc.data import load_mnist
from acc.recipes import Recipe
from acc.recipes.base import RecipeParams
from acc.status import Status
from acc.store import Store
from acc.sweep import arms


def plan_run(
    store: Store,
    run_id: str,
    recipe: Recipe,
    p: RecipeParams,
    device: str,
    data_dir: str | None = None,
    checkpoint_every: int = 0,
    cells: list[dict] | None = None,
    on_log=None,
) -> list[BranchSpec]:
    """Every branch of the run still to train, in seed-major order (roots saved first). A
    sweep's run has ``cells``: its gated conditions train once per cell (see acc.sweep)."""
    done = {
        (b["condition"], b["seed"])
        for b in store.branches(run_id)
        if b["status"] == Status.COMPLETED and b["checkpoint_id"]
    }
    roots = {c["seed"]: c["id"] for c in store.checkpoints.of_run(run_id) if c["tag"] == "init"}
    factors = measured_factors(store, recipe, data_dir, on_log) if recipe.measured_factors else None
    specs = []
    for seed in p.seeds:
        root_id = roots.get(seed) or save_root(store, run_id, recipe, p, seed)
        root = store.checkpoints.read_bytes(root_id)
        for arm in arms(recipe, p, cells):
            branch_id = store.plan_branch(run_id, arm.name, seed)
            if (arm.name, seed) in done:
                continue
            resume = store.checkpoints.resume_point(branch_id)
            specs.append(
                BranchSpec(
                    run_id=run_id,
                    branch_id=branch_id,
                    recipe=recipe.name,
                    params=arm.params.model_dump(),
                    condition=arm.name,
                    recipe_condition=arm.condition.name,
                    seed=seed,
                    root_id=root_id,
                    root=root,
                    device=device,
                    data_dir=data_dir,
                    checkpoint_every=checkpoint_every,
                    resume=resume[1] if resume else None,
                    factors=factors,
                )
            )
    return specs


def measured_factors(store: Store, recipe: Recipe, data_dir, on_log=None) -> bytes:
    """The Morpho-MNIST factors the recipe's tasks read, for both splits, measured here once
    (cached in ``<store>/factors`` by the data's hash) and sent to every worker with its spec:
    workers need no shared file system and never measure."""
    from acc.factors import dataset_factors  # scikit-image: only recipes with factors need it

    data = load_mnist(recipe.data_view, "cpu", data_dir)
    cache = store.root / "factors"
    say = on_log or (lambda message: None)
    out = {}
    for split in ("train", "test"):
        say(f"measured factors of the {split} split: from {cache} (measured now if not cached)")
        named = dataset_factors(data, split, cache, log=say)
        out[split] = {name: named[name] for name in recipe.measured_factors}
    return pack_factors(out)


def save_root(store: Store, run_id: str, recipe: Recipe, p: RecipeParams, seed: int) -> str:
    """The seed's initial model, as every condition of the seed will start from it."""
    torch.manual_seed(seed)
    model = recipe.build_model(p)
    metadata = {
        "model": model.config(),
        "recipe_params": p.model_dump(),
        "gating": None,
        "tasks": [],
        "condition": None,
    }
    return store.checkpoints.save(run_id, model.state_dict(), "init", 0, metadata, seed=seed).id

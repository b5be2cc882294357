"""The stacked executor: branches trained as one program give each branch its own results.

(a) the trap: each member's gradients in one joint step equal the same branch's alone (a
tensor hook inside vmap is silently not applied, so the gate must work another way);
(b) runs with --executor stacked give the inline executor's metrics and verdicts;
(c) a stacked run interrupted and resumed ends bit-identical to an uninterrupted one;
(d) branches that cannot share a program are split and the run says so; (e) bad input.
"""

from __future__ import annotations

import math

import pytest
import torch
from typer.testing import CliRunner

from acc.cli import app
from acc.executors import ExecutorError, make_executor
from acc.executors.stacked import StackedExecutor
from acc.gradient_gating import attach_competitive_gating
from acc.plan import plan_run
from acc.recipes import recipe_registry
from acc.recipes.gradient_gating_l0 import GradientGatingL0
from acc.recipes.gradient_gating_l1 import GradientGatingL1
from acc.runner import create_run, execute_run, split_config, validate_params
from acc.stack_plan import plan_stacks
from acc.stack_step import JointStep, Member
from acc.store import Store
from acc.trainer import TrainConfig, Trainer

runner = CliRunner()

# (layer options, control) per member: ungated, fixed T at strength 1, strength 0.5, shuffled
MEMBERS = [
    None,
    ({"temperature": 0.5, "gate_strength": 1.0}, None),
    ({"temperature": 2.0, "gate_strength": 0.5}, None),
    ({"temperature": 0.5, "gate_strength": 1.0}, "shuffled"),
]


def _member(recipe, p, data, root, layers, gate, seed: int) -> tuple:
    model = recipe.build_model(p)
    model.load_state_dict(root)
    gating = None
    if gate is not None:
        options, control = gate
        configs = {layer: dict(options) for layer in layers}
        gating = attach_competitive_gating(model, 1.0, configs, control=control, seed=seed)
    config = TrainConfig(batch_size=p.batch_size, lr=1e-3, seed=seed)
    return model, Trainer(model, recipe.tasks(p, data), config), gating


def _recording(trainer: Trainer, grads: list) -> None:
    """Keep each step's parameter gradients as the optimizer sees them."""
    step = trainer.optimizer.step

    def wrapped(*args, **kwargs):
        grads.append({n: q.grad.clone() for n, q in trainer.model.named_parameters()})
        return step(*args, **kwargs)

    trainer.optimizer.step = wrapped


@pytest.mark.parametrize("level", [0, 1])
def test_each_members_gradients_are_those_of_the_branch_alone(level, small_mnist, monkeypatch):
    # each member's own optimizer sees its gradients (the stacked Adam's test is below)
    monkeypatch.setattr("acc.stack_step.stackable", lambda *args: False)
    if level == 0:
        recipe, data, layers = GradientGatingL0(), small_mnist, ["encoder.0"]
        p = recipe.Params(batch_size=32, hidden_dim=16)
    else:
        recipe, layers = GradientGatingL1(), ["encoder.conv1", "encoder.conv2"]
        images = torch.nn.functional.pad(small_mnist.train.images.reshape(-1, 1, 28, 28), (2,) * 4)
        data = type(small_mnist)("mnist", "32", type(small_mnist.train)(images[:256], None),
                                 small_mnist.test)  # fmt: skip
        p = recipe.Params(batch_size=8, hidden_dim=8)
    torch.manual_seed(0)
    root = recipe.build_model(p).state_dict()
    alone, stacked = [], []
    for i, gate in enumerate(MEMBERS):
        seed = 1 + i % 2  # two batch orders in the stack
        alone.append(_member(recipe, p, data, root, layers, gate, seed))
        stacked.append(_member(recipe, p, data, root, layers, gate, seed))
    grads_alone, grads_stacked = [[] for _ in MEMBERS], [[] for _ in MEMBERS]
    for (_, trainer, _), grads in zip(alone, grads_alone):
        _recording(trainer, grads)
        for _ in range(2):
            trainer._train_step()
    members = [Member(i, f"m{i}", *parts) for i, parts in enumerate(stacked)]
    for member, grads in zip(members, grads_stacked):
        _recording(member.trainer, grads)
    joint = JointStep(members)
    for _ in range(2):
        joint.step({m.key: m.trainer.order.next() for m in members})
    for i in range(len(MEMBERS)):
        for step in range(2):
            for name, expected in grads_alone[i][step].items():
                got = grads_stacked[i][step][name]
                scale = expected.abs().max().item()
                assert (got - expected).abs().max().item() <= 1e-5 * scale, (i, step, name)
    # the gate did something: the gated members' gradients differ from the ungated one's
    first = grads_stacked[0][0][f"{layers[0]}.weight"]
    for i in (1, 2, 3):
        assert not torch.allclose(grads_stacked[i][0][f"{layers[0]}.weight"], first)
    for (_, _, gate_alone), member in zip(alone, members):  # the gate statistics, per member
        if gate_alone is not None:
            a, b = gate_alone.read_statistics(), member.gating.read_statistics()
            for layer in a:
                assert b[layer] == pytest.approx(a[layer], rel=1e-5)


def test_the_stacked_adam_is_each_members_own_adam_bit_for_bit(small_mnist, monkeypatch):
    """Members with their own learning rates, one a step ahead: one stacked update gives the
    weights and optimizer states that each member's own Adam gives on the same gradients."""
    recipe = GradientGatingL0()
    p = recipe.Params(batch_size=32, hidden_dim=16)
    torch.manual_seed(0)
    root = recipe.build_model(p).state_dict()

    def members() -> list[Member]:
        out = []
        for i, gate in enumerate(MEMBERS):
            model, trainer, gating = _member(recipe, p, small_mnist, root, ["encoder.0"], gate, i)
            trainer.optimizer.param_groups[0]["lr"] = 1e-3 * (i + 1)
            if i == 2:
                trainer._train_step()  # ahead: its bias corrections differ from the others'
            out.append(Member(i, f"m{i}", model, trainer, gating))
        return out

    def train(stack: list[Member]) -> JointStep:
        joint = JointStep(stack)
        for _ in range(3):
            joint.step({m.key: m.trainer.order.next() for m in stack})
        return joint

    stacked = members()
    assert train(stacked).adam is not None
    monkeypatch.setattr("acc.stack_step.stackable", lambda *args: False)
    own = members()
    assert train(own).adam is None
    for a, b in zip(stacked, own):
        for (name, x), y in zip(a.model.named_parameters(), b.model.parameters()):
            assert torch.equal(x, y), (a.label, name)
        state_a, state_b = a.trainer.optimizer.state_dict(), b.trainer.optimizer.state_dict()
        for index, entry in state_b["state"].items():
            for key, value in entry.items():
                assert torch.equal(state_a["state"][index][key], value), (a.label, key)


def test_a_members_numbers_do_not_depend_on_the_stack_around_it(small_mnist):
    """Observed on this CPU (l0 and l1): a member trains bit-identically in a stack of four
    and of two, so a resumed stack missing its finished branches still resumes exactly."""
    recipe = GradientGatingL0()
    p = recipe.Params(batch_size=32, hidden_dim=16)
    torch.manual_seed(0)
    root = recipe.build_model(p).state_dict()

    def weights(keys: list[int]) -> dict:
        stack = [
            Member(i, f"m{i}", *_member(recipe, p, small_mnist, root, ["encoder.0"], MEMBERS[i], i))
            for i in keys
        ]
        joint = JointStep(stack)
        for _ in range(5):
            joint.step({m.key: m.trainer.order.next() for m in stack})
        return {m.key: [q.detach().clone() for q in m.model.parameters()] for m in stack}

    four, two = weights([0, 1, 2, 3]), weights([1, 3])
    for key in two:
        assert all(torch.equal(a, b) for a, b in zip(four[key], two[key]))


def _params(**extra) -> dict:
    return {"steps": 30, "seeds": [1, 2], "eval_every": 15, "batch_size": 16, **extra}


def _run(store, data_dir, recipe="gradient_gating_l0", executor=None, events=None, **params):
    run_id = create_run(store, recipe, _params(**params), "cpu", data_dir)
    on_event = events.append if events is not None else None
    return execute_run(store, run_id, executor, on_event=on_event)


def _close(a: dict, b: dict) -> None:
    for condition, entry in a["conditions"].items():
        for run_a, run_b in zip(entry["runs"], b["conditions"][condition]["runs"]):
            for key, value in run_a["metrics"].items():
                other = run_b["metrics"][key]
                if isinstance(value, float) and math.isfinite(value):
                    assert other == pytest.approx(value, rel=1e-4, abs=1e-7), (condition, key)
    verdicts = [(c["metric"], c["verdict"]) for c in a["comparisons"]]
    assert verdicts == [(c["metric"], c["verdict"]) for c in b["comparisons"]]


@pytest.mark.parametrize(
    "recipe, extra",
    [
        ("gradient_gating_l0", {"controls": ["shuffled"]}),
        ("gradient_gating_l1", {"steps": 6, "eval_every": 3, "hidden_dim": 8}),
    ],
)
def test_a_stacked_run_gives_the_inline_metrics_and_verdicts(tmp_path, tiny_mnist, recipe, extra):
    inline = _run(Store(tmp_path / "a"), tiny_mnist, recipe, **extra)
    events: list = []
    executor = StackedExecutor()
    stacked = _run(Store(tmp_path / "b"), tiny_mnist, recipe, executor, events, **extra)
    assert stacked["status"] == "completed"
    conditions = len(inline["conditions"])
    assert executor.meetings[0].largest == 2 * conditions  # one stack: every branch
    _close(inline, stacked)
    steps = {(e["condition"], e["seed"]) for e in events if e["type"] == "step"}
    assert len(steps) == 2 * conditions  # live progress from every branch


def _weights(store: Store, results: dict) -> dict:
    return {
        (c, r["seed"]): store.checkpoints.load_state_dict(r["checkpoint_id"])
        for c, entry in results["conditions"].items()
        for r in entry["runs"]
    }


def test_a_stacked_run_interrupted_and_resumed_ends_bit_identical(tmp_path, tiny_mnist):
    params = {"checkpoint_every": 10, "controls": ["shuffled"]}
    whole_store = Store(tmp_path / "whole")
    run_id = create_run(whole_store, "gradient_gating_l0", _params(**{"controls": ["shuffled"]}),
                        "cpu", tiny_mnist, checkpoint_every=10)  # fmt: skip
    whole = execute_run(whole_store, run_id, StackedExecutor())
    store = Store(tmp_path / "cut")
    run_id = create_run(store, "gradient_gating_l0", _params(controls=params["controls"]),
                        "cpu", tiny_mnist, checkpoint_every=10)  # fmt: skip
    seen = {"points": 0}

    def stop_after_resume_points() -> bool:
        return seen["points"] >= 6  # every branch has saved its step-10 point

    def count(event: dict) -> None:
        seen["points"] += event["type"] == "resume_point"

    cut = execute_run(
        store, run_id, StackedExecutor(), on_event=count, should_stop=stop_after_resume_points
    )
    assert cut["status"] in ("cancelled", "interrupted")
    resumed = execute_run(store, run_id, StackedExecutor())
    assert resumed["status"] == "completed"
    a, b = _weights(whole_store, whole), _weights(store, resumed)
    assert a.keys() == b.keys()
    for key in a:
        for name in a[key]:
            assert torch.equal(a[key][name], b[key][name]), (key, name)
    for condition, entry in whole["conditions"].items():
        for run_a, run_b in zip(entry["runs"], resumed["conditions"][condition]["runs"]):
            assert run_a["metrics"] == run_b["metrics"]


def test_branches_that_cannot_share_a_program_are_split_and_said(tmp_path, tiny_mnist):
    store = Store(tmp_path / "store")
    run_l0 = create_run(store, "gradient_gating_l0", _params(steps=4), "cpu", tiny_mnist)
    wide = create_run(store, "gradient_gating_l0", _params(steps=4, hidden_dim=32), "cpu",
                      tiny_mnist)  # fmt: skip
    sample = create_run(store, "gradient_gating_l0", _params(steps=4, mode="sample"), "cpu",
                        tiny_mnist)  # fmt: skip
    vae = create_run(store, "gradient_gating_l2", _params(steps=4), "cpu", tiny_mnist)
    specs = []
    for run_id in (run_l0, wide, sample, vae):
        run = store.get_run(run_id)
        recipe = recipe_registry().get(run["recipe"])()
        params, settings = split_config(run["config"])
        p = validate_params(type(recipe), params)
        specs += plan_run(store, run_id, recipe, p, **settings)
    plan = plan_stacks(specs)
    sizes = sorted(len(s) for s in plan.stacks)
    # l0 (standard and gated of 2 seeds) with the sample-mode run's standard branches (6);
    # the wider model's 4; the sample-mode gated branches apart from the batch-mode ones (2)
    assert sizes == [2, 4, 6]
    assert [why for _, why in plan.alone] == ["its model draws random numbers in training "
                                              "(per-branch noise)"] * 4  # fmt: skip
    summary = plan.summary()
    assert "3 stacks (6 + 2 + 4 branches)" in summary and "draws random numbers" in summary
    assert "split by gate mode" in summary
    assert len(plan_stacks(specs[:4], stack_size=3).stacks) == 1  # 3 together, 1 alone

    notices: list = []
    executor = StackedExecutor(stack_size=3)
    results = _run(Store(tmp_path / "small"), tiny_mnist, executor=executor,
                   events=notices, steps=4)  # fmt: skip
    assert results["status"] == "completed"
    said = [e["message"] for e in notices if e["type"] == "log" and e.get("notice")]
    assert len(said) == 1 and "alone (no other branch shares its program)" in said[0]


def test_a_model_that_cannot_be_stacked_trains_one_by_one_and_says_so(
    tmp_path, tiny_mnist, monkeypatch
):
    inline = _run(Store(tmp_path / "a"), tiny_mnist, steps=4)

    def unstackable(members):
        raise RuntimeError("vmap does not support this model")

    monkeypatch.setattr("acc.stack_meeting.JointStep", unstackable)
    events: list = []
    results = _run(Store(tmp_path / "b"), tiny_mnist, executor=StackedExecutor(), events=events,
                   steps=4)  # fmt: skip
    assert results["status"] == "completed"
    _close(inline, results)
    said = [e["message"] for e in events if e["type"] == "log" and e.get("notice")]
    assert len(said) == 1 and "vmap does not support this model" in said[0]


def test_a_stack_that_does_not_fit_says_which_size_would(tmp_path, tiny_mnist, monkeypatch):
    def out_of_memory(self, indices):
        raise torch.OutOfMemoryError("tried to allocate 2.00 GiB")

    monkeypatch.setattr("acc.stack_step.JointStep.step", out_of_memory)
    results = _run(Store(tmp_path / "s"), tiny_mnist, executor=StackedExecutor(), steps=4)
    assert results["status"] == "failed"
    errors = {r["error"] for e in results["conditions"].values() for r in e["runs"]}
    assert len(errors) == 1
    (error,) = errors
    assert "a stack of 4 branches does not fit" in error and "--stack-size 2" in error


@pytest.mark.parametrize("size", ["0", "-2"])
def test_a_stack_size_below_one_is_refused_with_what_is_valid(tmp_path, tiny_mnist, size):
    result = runner.invoke(
        app,
        ["run", "gradient_gating_l0", "--steps", "2", "--store", str(tmp_path / "s"),
         "--data-dir", str(tiny_mnist), "--executor", "stacked", "--stack-size", size],
    )  # fmt: skip
    assert result.exit_code == 2
    assert "--stack-size must be a whole number >= 1" in result.output
    assert not (tmp_path / "s").exists()  # nothing opened
    with pytest.raises(ExecutorError, match="stack-size must be"):
        make_executor("stacked", stack_size=int(size))


def test_stack_size_without_the_stacked_executor_is_refused(tmp_path, tiny_mnist):
    result = runner.invoke(
        app,
        ["run", "gradient_gating_l0", "--steps", "2", "--store", str(tmp_path / "s"),
         "--data-dir", str(tiny_mnist), "--stack-size", "2"],
    )  # fmt: skip
    assert result.exit_code == 2 and "--stack-size needs --executor stacked" in result.output

"""Recipe: an experiment declared as data, so one shared place can run it anywhere.

A recipe says *what* to compare, not how to loop: its parameters, its conditions (each a
name, a description, the gating it attaches and any model-constructor overrides), how to
build its model, which data view it trains on, which tasks train and measure the model,
and the hypotheses tested over seeds. ``acc.plan`` expands seeds x conditions into branches
(one root checkpoint per seed, every condition forks from it and sees the same batches),
and ``acc.branch.run_branch`` trains one branch wherever an executor puts it.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Annotated, ClassVar, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    WithJsonSchema,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError
from torch import nn

from acc.data import Dataset
from acc.gradient_gating import CONTROLS, GatingError, parse_temperature
from acc.stats import Hypothesis
from acc.tasks.base import Task

GATING = {"gating": True}  # marks a parameter that only the gated conditions use (sweeps)
MAX_STEPS = 10**9  # steps per branch: beyond any real run, and far from integer overflow
MAX_SEEDS = 1_000  # seeds per run: each one is a paired replicate of every condition
# The seeds `--num-seeds N` takes, in order: the plan's three, then 1000, 1001, 1002, ... (so
# a run with more seeds extends one with fewer, and every researcher's "10 seeds" are the same)
SEED_LIST = (42, 123, 456, *range(1000, 1000 + MAX_SEEDS - 3))
Seed = Annotated[int, Field(ge=-(2**63), le=2**63 - 1)]  # what SQLite's INTEGER holds
# Sizes are bounded so a typo is refused with its field named, not met as an allocation of
# hundreds of GB (10^8 hidden units asked for 313 GB): 4,096 units (or latent dimensions) is
# far beyond what MNIST needs, a batch at most the 60,000 training images.
MAX_UNITS = 4_096
MAX_BATCH = 60_000


def steps_field(default: int, description: str = "training steps per branch (0 = evaluate the "
                "untrained models)"):  # fmt: skip
    """A recipe's steps per branch: 0 to MAX_STEPS, whatever its default."""
    return Field(default, ge=0, le=MAX_STEPS, description=description)


def units_field(default: int, description: str, ge: int = 1):
    """A layer's width (hidden units, latent dimensions): ``ge`` to MAX_UNITS."""
    return Field(default, ge=ge, le=MAX_UNITS, description=f"{description} ({ge} to {MAX_UNITS})")


def batch_field(default: int):
    """Images per training step: 1 to MAX_BATCH (the training set)."""
    return Field(
        default, ge=1, le=MAX_BATCH, description=f"images per training step (1 to {MAX_BATCH})"
    )


def _temperature(value):
    try:
        return parse_temperature(value)
    except GatingError as exc:  # said as it is, without pydantic's "Value error, " prefix
        raise PydanticCustomError("temperature", str(exc)) from None


# A gate's temperature: a number > 0, or "entropy:H" (0 < H < 1) for a mask whose normalised
# entropy is H at every step (acc.gradient_gating.probabilities_at_entropy).
Temperature = Annotated[
    float | str,
    BeforeValidator(_temperature),
    WithJsonSchema({"anyOf": [{"type": "number", "exclusiveMinimum": 0}, {"type": "string"}]}),
]


def temperature_field(default: float | str = 1.0):
    return Field(
        default,
        description="softmax temperature of the gate (> 0), or entropy:H (0 < H < 1) to set "
        "the mask's normalised entropy to H at every step",
        json_schema_extra=GATING,
    )


class RecipeParams(BaseModel):
    """Parameters every recipe takes. Subclasses add their own; unknown keys are errors."""

    # inf and NaN are refused with the field named, before anything trains
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    steps: int = steps_field(25_000)
    seeds: list[Seed] = Field(
        [42, 123, 456],
        min_length=1,
        max_length=MAX_SEEDS,
        description="one paired replicate per seed",
    )
    eval_every: int = Field(500, ge=0, description="steps between periodic evaluations (0 = off)")
    batch_size: int = batch_field(128)
    lr: float = Field(1e-3, gt=0, description="learning rate")
    optimizer: Literal["adam", "sgd"] = Field("adam", description="adam or sgd")
    controls: list[str] = Field(
        [],
        description="control conditions added beside the recipe's own: shuffled (the gate's "
        "scales in a random channel order every step, compared with gated)",
    )

    @model_validator(mode="before")
    @classmethod
    def _num_seeds(cls, data):
        """``num_seeds: N`` stands for the first N seeds of SEED_LIST (never beside seeds)."""
        if not isinstance(data, dict) or "num_seeds" not in data:
            return data
        data = dict(data)
        n = data.pop("num_seeds")
        if "seeds" in data:
            raise PydanticCustomError(
                "num_seeds", "give seeds (a list) or num_seeds (a count), not both"
            )
        if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= MAX_SEEDS:
            raise PydanticCustomError(
                "num_seeds", f"num_seeds must be a whole number from 1 to {MAX_SEEDS}, got {n!r}"
            )
        return {**data, "seeds": list(SEED_LIST[:n])}

    @field_validator("controls", mode="before")
    @classmethod
    def _known_controls(cls, value):
        names = value.split(",") if isinstance(value, str) else value
        if not isinstance(names, list):
            raise ValueError(f"controls is a list of names ({', '.join(CONTROLS)})")
        names = [n.strip() if isinstance(n, str) else n for n in names]
        names = [n for n in names if n != ""]  # "" (an empty form field) is no control
        for name in names:
            if name not in CONTROLS:
                valid = ", ".join(CONTROLS)
                raise PydanticCustomError("control", f"unknown control {name!r}; valid: {valid}")
        if len(set(names)) != len(names):
            raise ValueError("controls must be distinct")
        return [n for n in names if n]

    @field_validator("seeds")
    @classmethod
    def _distinct(cls, seeds: list[int]) -> list[int]:
        if len(set(seeds)) != len(seeds):
            raise ValueError("seeds must be distinct")
        return seeds


@dataclass(frozen=True)
class Gating:
    """Competitive gradient gating as a condition applies it: ``layers`` maps a layer name to
    its options (``gate_strength``, ``mode``, optionally its own ``temperature``); ``labels``
    name the layers in metric keys (``gate_entropy[conv1]``) when there are several."""

    temperature: float | str
    layers: dict[str, dict]
    labels: dict[str, str] = field(default_factory=dict)
    control: str | None = None  # "shuffled": the control of DESIGN.md, not competition

    def metric_label(self, layer: str) -> str | None:
        return None if len(self.layers) == 1 else self.labels.get(layer, layer)


@dataclass(frozen=True)
class Condition:
    """One arm of the comparison. ``model_overrides`` are passed to the recipe's model
    builder (e.g. ``detach_factor_grad=True``); they may change how the model computes, never
    its parameters, so every condition can fork from the same root checkpoint."""

    name: str
    description: str
    gating: Gating | None = None
    model_overrides: dict = field(default_factory=dict)


class Recipe:
    """An experiment: conditions compared per seed, hypotheses tested over seeds."""

    name: ClassVar[str]
    description: ClassVar[str]
    Params: ClassVar[type[RecipeParams]] = RecipeParams
    data_view: ClassVar[str] = "flat"  # the MNIST view the model takes: flat, 28 or 32
    measured_factors: ClassVar[tuple[str, ...]] = ()  # Morpho-MNIST factors the tasks read
    hypotheses: ClassVar[list[Hypothesis]] = []

    def conditions(self, p: RecipeParams) -> list[Condition]:
        raise NotImplementedError

    def build_model(self, p: RecipeParams, **overrides) -> nn.Module:
        """A fresh model; its initial weights come from the global RNG (seeded by the caller)."""
        raise NotImplementedError

    def tasks(self, p: RecipeParams, data: Dataset) -> list[Task]:
        """The training tasks and the evaluation-only measurements, fresh for each branch."""
        raise NotImplementedError


SHUFFLED = "shuffled"


def experiment_conditions(recipe: Recipe, p: RecipeParams) -> list[Condition]:
    """The recipe's conditions, then the controls ``p.controls`` asks for: ``shuffled`` is
    the ``gated`` condition with its scales' channel order shuffled every step (same
    distribution of gradient scales, unrelated to which channel fired)."""
    conditions = recipe.conditions(p)
    gated = next((c for c in conditions if c.name == "gated" and c.gating), None)
    if SHUFFLED in p.controls and gated is not None:
        conditions.append(
            Condition(
                SHUFFLED,
                f"control: {gated.description}, with the scales' channel order shuffled every step",
                gating=replace(gated.gating, control=SHUFFLED),
                model_overrides=gated.model_overrides,
            )
        )
    return conditions


def experiment_hypotheses(recipe: Recipe, p: RecipeParams) -> list[Hypothesis]:
    """The recipe's hypotheses, and with the shuffled control each "gated vs standard" one
    again as "gated vs shuffled": does *which* channel fired matter, beyond the rescaling?"""
    rows = list(recipe.hypotheses)
    if SHUFFLED in p.controls:
        rows += [
            replace(
                h,
                control=SHUFFLED,
                name=f"{h.key}: gated vs shuffled" if h.name else None,
                statement=h.statement.replace("standard", SHUFFLED) if h.statement else None,
            )
            for h in recipe.hypotheses
            if h.treatment == "gated" and h.control == "standard"
        ]
    return rows


def condition_descriptions(recipe: Recipe, p: RecipeParams) -> dict[str, str]:
    """``{name: description}`` in the recipe's order (what the store and the page show)."""
    return {c.name: c.description for c in experiment_conditions(recipe, p)}

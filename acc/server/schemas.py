"""Request and response bodies of the HTTP API (they are what /openapi.json documents).

Request bodies forbid unknown keys, so a typo is a 422 naming the key rather than a silently
ignored setting. Recipe parameters are checked by the recipe's own ``Params`` model.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from acc.decisions import check_correction, check_delta
from acc.jsonable import finite
from acc.store import MAX_NAME, MAX_NOTE, check_label


def _all_finite(params: dict[str, Any]) -> dict[str, Any]:
    """NaN and infinity parse from lenient JSON but are no valid setting; say so (422)."""
    if finite(params) != params:
        raise ValueError("numbers must be finite (no NaN or Infinity)")
    return params


def _deltas(deltas: dict[str, Any]) -> dict[str, float]:
    """Each a finite number > 0 (the keys are checked against the recipe when the run opens)."""
    return {key: check_delta(key, value) for key, value in deltas.items()}


def _correction(name: str | None) -> str | None:
    return check_correction(name, None)


DELTAS_FIELD = Field(
    default_factory=dict,
    description="smallest effect of interest per metric, in its units, e.g. "
    '{"weight_cosine_sim": 0.005, "effective_rank[conv1]": 2} (default: the metric\'s own)',
)
CORRECTION_FIELD = Field(
    None,
    description="multiple-testing correction: holm, bonferroni, fdr_bh or none "
    "(default: holm over a run's hypotheses, fdr_bh per heatmap of a sweep)",
)


# How often a branch saves a resume point, as `acc run --checkpoint-every` sets it.
CHECKPOINT_EVERY_FIELD = Field(
    None,
    ge=0,
    le=10**9,
    description="steps between a branch's resume points (0: none); default 1,000",
)


class JobRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    recipe: str = Field(
        min_length=1, max_length=100, description="a recipe name (GET /api/recipes)"
    )
    params: dict[str, Any] = Field(
        default_factory=dict,
        description="recipe parameters, e.g. "
        '{"steps": 2000, "seeds": [42, 123], "eval_every": 200}',
    )
    deltas: dict[str, Any] = DELTAS_FIELD
    correction: str | None = CORRECTION_FIELD
    checkpoint_every: int | None = CHECKPOINT_EVERY_FIELD

    _finite = field_validator("params")(_all_finite)
    _delta = field_validator("deltas")(_deltas)
    _method = field_validator("correction")(_correction)


class SweepRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    recipe: str = Field(min_length=1, max_length=100, description="a recipe name")
    params: dict[str, Any] = Field(
        default_factory=dict, description='base parameters, e.g. {"steps": 2000, "seeds": [1, 2]}'
    )
    grid: dict[str, list[Any]] = Field(
        default_factory=dict, description='axes that multiply, e.g. {"temperature": [0.5, 1]}'
    )
    zip: dict[str, list[Any]] = Field(
        default_factory=dict, description='axes that advance together, e.g. {"lr": [0.1, 1]}'
    )
    yes: bool = Field(False, description="start even a sweep of more than 1,000 branches")
    deltas: dict[str, Any] = DELTAS_FIELD
    correction: str | None = CORRECTION_FIELD

    _finite = field_validator("params", "grid", "zip")(_all_finite)
    _delta = field_validator("deltas")(_deltas)
    _method = field_validator("correction")(_correction)


class SweepSummary(BaseModel):
    """A line of the sweeps list (a run's line adds its sweep)."""

    id: str
    recipe: str
    status: str
    created_at: float
    finished_at: float | None = None
    job_id: str | None = None


class EvaluateRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    task: str = Field(min_length=1, max_length=100, description="a task type (GET /api/tasks)")
    params: dict[str, Any] = Field(
        default_factory=dict,
        description='the task\'s constructor parameters, e.g. {"layer_name": "encoder.0"}',
    )

    _finite = field_validator("params")(_all_finite)


class Job(BaseModel):
    id: str
    run_id: str
    recipe: str
    params: dict[str, Any]
    status: str = Field(
        description="queued, running, completed, partial, failed, cancelled or interrupted"
    )
    error: str | None = None
    pid: int | None = None
    created_at: float
    started_at: float | None = None
    finished_at: float | None = None
    cancel_requested: bool = False
    sweep_id: str | None = Field(
        None, description="set for a sweep's job (run_id is then the sweep)"
    )


class RecipeParam(BaseModel):
    name: str
    type: str
    choices: list[Any] | None = None
    default: Any = None
    description: str | None = None
    gating: bool = False  # varied per cell of a sweep's gated condition


class RecipeInfo(BaseModel):
    name: str
    description: str
    conditions: dict[str, str]
    hypotheses: list[dict[str, Any]]
    params: list[RecipeParam]
    params_schema: dict[str, Any]


class RecipeList(BaseModel):
    recipes: list[RecipeInfo]
    import_errors: dict[str, str] = Field(default_factory=dict)


class RunSummary(SweepSummary):
    sweep_id: str | None = Field(None, description="the sweep this run is a setting of")
    name: str | None = Field(None, description="the run's name, if it was given one")
    note: str | None = Field(None, description="the run's note, if it has one")


class RunLabel(BaseModel):
    """A run's new name and/or note: a field given changes ("" or null clears it), a field
    left out stays as it is."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(
        None, max_length=MAX_NAME, description="a short name (no line breaks or control characters)"
    )
    note: str | None = Field(
        None, max_length=MAX_NOTE, description="free text (line breaks allowed)"
    )

    @field_validator("name", "note")
    @classmethod
    def _printable(cls, value: str | None, info: ValidationInfo) -> str | None:
        check_label(**{info.field_name: value})  # the store's rules: ValueError -> 422
        return value


class RunDeleted(BaseModel):
    deleted: str = Field(description="the deleted run's id")
    branches: int
    checkpoints: int
    files: int = Field(description="checkpoint and resume-point files removed from disk")


class SweepDeleted(BaseModel):
    deleted: str = Field(description="the deleted sweep's id")
    runs: int
    branches: int
    checkpoints: int
    files: int = Field(description="checkpoint and resume-point files removed from disk")


class Evaluation(BaseModel):
    checkpoint: str
    task: str
    params: dict[str, Any]
    metrics: dict[str, Any]


class BackgroundEvaluation(BaseModel):
    id: str
    checkpoint: str
    task: str
    params: dict[str, Any]
    status: str = Field(description="running, cancelling, completed, failed or cancelled")
    seconds: float = Field(description="how long it has run (or ran)")
    expected_seconds: float | None = Field(
        description="how long the same evaluation took last time in this server, if it ran"
    )
    metrics: dict[str, Any] | None = Field(description="once completed")
    error: str | None

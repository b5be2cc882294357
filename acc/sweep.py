"""Sweeps as data: grid and zip axes over a recipe's parameters, expanded into settings x cells.

``--grid`` axes multiply; ``--zip`` axes advance together. Gating parameters (those a recipe
marks ``gating``: temperature, gate strength, mode) vary only the gated conditions and make
*cells*; every other axis (optimizer, lr, beta, ...) makes *settings*, each with its own
standard condition. A setting becomes one run whose conditions are the standard arm(s) plus
one arm per cell and gated condition, so a standard branch trains once per seed and setting
and every cell is paired with it (same root checkpoint, same batches).
"""

from __future__ import annotations

import itertools
import json
import math
from dataclasses import dataclass, replace

from pydantic import ValidationError

from acc.recipes import Recipe
from acc.recipes.base import (
    Condition,
    RecipeParams,
    experiment_conditions,
    experiment_hypotheses,
)
from acc.stats import Hypothesis

# replicates and added conditions, not parameters to sweep
NOT_AXES = {
    "seeds": "give the replicates with --seeds (or --num-seeds)",
    "num_seeds": "give the replicates with --num-seeds (or --seeds)",
    "controls": "give control conditions with -p controls=shuffled (every cell gets them)",
}
MAX_BRANCHES = 1000  # more than this needs --yes
MAX_BRANCHES_EVEN_WITH_YES = 100_000  # beyond this the expansion alone stalls a server


class SweepError(ValueError):
    """An axis that cannot be swept; the message names it and says what is valid."""


@dataclass(frozen=True)
class Arm:
    """One condition of a run as the store names it: a recipe condition, or (in a sweep) a
    gated condition at one cell, with the parameters its branches train with."""

    name: str
    condition: Condition
    params: RecipeParams


def gating_params(params_type: type[RecipeParams]) -> set[str]:
    """The parameters a recipe marks as gating (``json_schema_extra={"gating": True}``)."""
    return {
        name
        for name, field in params_type.model_fields.items()
        if isinstance(field.json_schema_extra, dict) and field.json_schema_extra.get("gating")
    }


def parse_axis(text: str) -> tuple[str, list]:
    """``"temperature=0.3,0.5,1"`` -> ("temperature", [0.3, 0.5, 1]); values are JSON where
    they parse as JSON (numbers, true/false), strings otherwise."""
    name, sep, values = text.partition("=")
    if not sep or not name.strip():
        raise SweepError(f"an axis is NAME=V1,V2,...; got {text!r}")
    items = [v.strip() for v in values.split(",") if v.strip()]
    if not items:
        raise SweepError(f"axis {name.strip()} has no values ({text!r})")
    return name.strip(), [_value(v) for v in items]


def parse_axes(texts: list[str], option: str) -> dict[str, list]:
    """``--grid``/``--zip`` values as axes; an axis given twice is refused (a dict would keep
    only the last one's values and train the first one's never)."""
    axes: dict[str, list] = {}
    given: dict[str, str] = {}
    for text in texts:
        name, values = parse_axis(text)
        if name in axes:
            raise SweepError(
                f"{option} {name} is given twice ({given[name]!r} and {text!r}); give all its "
                f"values in one: {option} {name}=V1,V2,..."
            )
        axes[name], given[name] = values, text
    return axes


def _value(text: str):
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def label(params: dict) -> str:
    """``{"temperature": 0.3, "gate_strength": 0.5}`` -> "temperature=0.3,gate_strength=0.5"."""
    return ",".join(f"{k}={v}" for k, v in params.items()) or "base"


@dataclass(frozen=True)
class Expansion:
    settings: list[dict]  # non-gating parameter values, one dict per setting
    cells: list[dict]  # gating parameter values, one dict per cell


def expand(
    recipe: type[Recipe],
    base: dict,
    grid: dict[str, list],
    zipped: dict[str, list],
    max_branches: int | None = None,
) -> Expansion:
    """Validate the axes against the recipe and expand them (settings and cells in order).
    The branches are counted from the axis lengths first: more than ``max_branches`` (or,
    whatever the limit, more than MAX_BRANCHES_EVEN_WITH_YES) is refused before expanding."""
    params_type = recipe.Params
    _check_names(recipe, grid, zipped)
    _check_base(base, grid, zipped)
    empty = next((name for name, values in {**grid, **zipped}.items() if not values), None)
    if empty is not None:
        raise SweepError(f"axis {empty} has no values")
    lengths = {len(v) for v in zipped.values()}
    if len(lengths) > 1:
        sizes = ", ".join(f"{k} has {len(v)}" for k, v in zipped.items())
        raise SweepError(f"--zip axes advance together and need as many values each: {sizes}")
    gating = gating_params(params_type)
    if zipped and 0 < len(set(zipped) & gating) < len(zipped):
        raise SweepError(
            f"zipped axes must all be gating parameters ({', '.join(sorted(gating))}) or all "
            f"other parameters; got {', '.join(zipped)}"
        )
    _check_size(count_branches(recipe, base, grid, zipped), max_branches)
    normal = {
        name: [_validate(params_type, base, name, value) for value in values]
        for name, values in {**grid, **zipped}.items()
    }
    for name in grid:
        _check_distinct(f"axis {name}", grid[name], normal[name])
    if zipped:
        rows = [dict(zip(zipped, row)) for row in zip(*zipped.values())]
        normal_rows = [dict(zip(zipped, row)) for row in zip(*(normal[k] for k in zipped))]
        _check_distinct(f"zipped axes ({', '.join(zipped)})", rows, normal_rows, "row")
    zip_rows = [dict(zip(zipped, row)) for row in zip(*zipped.values())] if zipped else [{}]
    zip_is_gating = bool(zipped) and set(zipped) <= gating
    setting_grid = {k: v for k, v in grid.items() if k not in gating}
    cell_grid = {k: v for k, v in grid.items() if k in gating}
    settings = _product(setting_grid, [{}] if zip_is_gating else zip_rows)
    cells = _product(cell_grid, zip_rows if zip_is_gating else [{}])
    return Expansion(settings, cells if cell_grid or zip_is_gating else [])


def count_branches(recipe: type[Recipe], base: dict, grid: dict, zipped: dict) -> int:
    """The branches a sweep trains, from the axis lengths alone (nothing is expanded): seeds x
    settings x (ungated conditions + gated conditions x cells), conditions as at ``base``."""
    gating = gating_params(recipe.Params)
    zip_length = len(next(iter(zipped.values()))) if zipped else 1
    zip_is_gating = bool(zipped) and set(zipped) <= gating
    settings = math.prod(len(v) for k, v in grid.items() if k not in gating)
    cells = math.prod(len(v) for k, v in grid.items() if k in gating)
    settings, cells = (
        (settings, cells * zip_length) if zip_is_gating else (settings * zip_length, cells)
    )
    try:
        p = recipe.Params(**base)
    except ValidationError as exc:
        problems = "; ".join(e["msg"] for e in exc.errors())
        raise SweepError(f"the base parameters are invalid: {problems}") from None
    conditions = experiment_conditions(recipe(), p)
    gated = sum(c.gating is not None for c in conditions)
    has_cells = zip_is_gating or any(k in gating for k in grid)
    per_setting = len(conditions) - gated + gated * cells if has_cells else len(conditions)
    return len(p.seeds) * settings * per_setting


def _check_size(total: int, max_branches: int | None) -> None:
    if total > MAX_BRANCHES_EVEN_WITH_YES:
        raise SweepError(
            f"this sweep trains {total} branches; no sweep may train more than "
            f"{MAX_BRANCHES_EVEN_WITH_YES}, even with --yes: give the axes fewer values"
        )
    if max_branches is not None and total > max_branches:
        raise SweepError(
            f"this sweep trains {total} branches (more than {max_branches}); "
            "pass --yes to start it anyway"
        )


def _check_names(recipe: type[Recipe], grid: dict, zipped: dict) -> None:
    known = list(recipe.Params.model_fields)
    for name in [*grid, *zipped]:
        if name in NOT_AXES:
            raise SweepError(f"{name} is not an axis: {NOT_AXES[name]}")
        if name not in known:
            raise SweepError(
                f"unknown parameter {name!r} for {recipe.name}; its parameters: {', '.join(known)}"
            )
    both = set(grid) & set(zipped)
    if both:
        raise SweepError(f"{', '.join(sorted(both))} is both a --grid and a --zip axis")


def _check_base(base: dict, grid: dict, zipped: dict) -> None:
    """A parameter set for the whole sweep and swept too would be silently overridden."""
    both = sorted(set(base) & (set(grid) | set(zipped)))
    if both:
        raise SweepError(
            f"{', '.join(both)} is both a parameter of the whole sweep (-p/params) and an axis; "
            "give it only as an axis"
        )


def _check_distinct(what: str, values: list, normal: list, unit: str = "value") -> None:
    """Each value of an axis (each row of zipped axes) once: a repeated one trains the same
    cell twice and repeats its hypotheses. Values the recipe reads alike (1 and 1.0) count
    as the same."""
    seen: dict[str, object] = {}
    for value, same in zip(values, normal):
        key = json.dumps(same, sort_keys=True, default=str)
        if key in seen:
            first = seen[key]
            twice = (
                f"{_show(value)} is given twice"
                if _show(first) == _show(value)
                else f"{_show(first)} and {_show(value)} are the same value ({_show(same)})"
            )
            raise SweepError(f"{what}: {twice}; give each {unit} once")
        seen[key] = value


def _show(value) -> str:
    if isinstance(value, dict):
        return ",".join(f"{k}={_show(v)}" for k, v in value.items())
    return value if isinstance(value, str) else json.dumps(value)


def _validate(params_type: type[RecipeParams], base: dict, name: str, value):
    """The value as the recipe reads it (e.g. 1 -> 1.0), or SweepError saying why not."""
    try:
        return params_type(**{**base, name: value}).model_dump()[name]
    except ValidationError as exc:
        problems = "; ".join(e["msg"] for e in exc.errors())
        raise SweepError(f"axis {name}: value {value!r} is invalid: {problems}") from None


def _product(grid: dict[str, list], rows: list[dict]) -> list[dict]:
    combos = [dict(zip(grid, values)) for values in itertools.product(*grid.values())]
    return [{**combo, **row} for combo in combos for row in rows]


def arms(recipe: Recipe, p: RecipeParams, cells: list[dict] | None) -> list[Arm]:
    """The conditions a run trains: the recipe's own, or (with cells) its ungated conditions
    plus each gated condition at each cell, named ``gated[temperature=0.3,...]``."""
    if not cells:
        return [Arm(c.name, c, p) for c in experiment_conditions(recipe, p)]
    out = [Arm(c.name, c, p) for c in experiment_conditions(recipe, p) if c.gating is None]
    for cell in cells:
        at_cell = type(p)(**{**p.model_dump(), **cell})
        for c in experiment_conditions(recipe, at_cell):
            if c.gating is not None:
                out.append(Arm(f"{c.name}[{label(cell)}]", c, at_cell))
    return out


def cell_hypotheses(recipe: Recipe, p: RecipeParams, cells: list[dict]) -> list[Hypothesis]:
    """Each recipe hypothesis whose treatment is gated, once per cell (paired with the same
    control: the setting's ungated one, or a gated control such as shuffled at the same cell)."""
    gated = {c.name for c in experiment_conditions(recipe, p) if c.gating is not None}
    out = []
    for h in experiment_hypotheses(recipe, p):
        if h.treatment not in gated:
            out.append(h)
            continue
        for cell in cells:
            control = f"{h.control}[{label(cell)}]" if h.control in gated else h.control
            out.append(replace(h, treatment=f"{h.treatment}[{label(cell)}]", control=control))
    return out


def normalised(params_type: type[RecipeParams], base: dict, values: dict) -> dict:
    """``values`` as the recipe's validation leaves them (e.g. "1" -> 1.0)."""
    dumped = params_type(**{**base, **values}).model_dump()
    return {k: dumped[k] for k in values}

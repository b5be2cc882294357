"""Exporting a run: its results and every branch's curves, as files other tools read.

Three formats, all read from the store (nothing is written to it), so a run that is still
open exports what it has so far:

``json``
    ``<run_id>.json``: ``{"run": <the results JSON of DESIGN.md>, "branches": [...]}``, one
    entry per branch (condition, seed, status, steps_done, error, health, ``final_metrics``,
    ``losses`` ``{task: {"step": [...], "value": [...]}}`` and ``evals`` ``{"step": [...],
    "metrics": {key: [...]}}`` as the dashboard's series, without list-valued eval metrics).
    NaN and infinity are written as null, so any JSON parser reads it.
``csv``
    ``final_metrics.csv`` (run_id, condition, seed, metric, value), ``losses.csv`` (run_id,
    condition, seed, task, step, value) and ``evals.csv`` (run_id, condition, seed, step,
    metric, value): tidy, one number per row. A list-valued metric (``kl_per_dim``) is one row
    per element, its metric named ``kl_per_dim[3]``. Values are Python's shortest round-trip
    form (the store's numbers exactly); NaN and infinity are ``nan``, ``inf``, ``-inf``; a
    value that is not a number (none so far) is left empty.
``tensorboard``
    One event file per branch in ``<condition>/seed_<seed>/``: scalars ``loss/<task>`` at each
    logged step, ``eval/<metric>`` at each evaluation, ``final/<metric>`` at the branch's last
    step, and the hparams plugin's session (the run's scalar parameters, with a sweep cell's
    own gating values, plus run_id, recipe, condition, seed), so TensorBoard's HParams tab
    lists one row per branch with its final metrics. No experiment summary is written:
    TensorBoard then gathers the columns from every branch, also across several exports in
    one ``--logdir``.

An existing output folder is written into: the files an export writes are replaced (each
written to a temporary name and renamed into place), nothing else there is touched.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import shutil
import tempfile
import zipfile
from collections.abc import Iterator
from enum import Enum
from pathlib import Path

from acc.files import write_atomic
from acc.jsonable import finite
from acc.results import build_results
from acc.series import run_series
from acc.store import Store
from acc.sweep import label


class ExportFormat(str, Enum):
    json = "json"
    csv = "csv"
    tensorboard = "tensorboard"


FORMATS = tuple(f.value for f in ExportFormat)
CSV_FILES = ("final_metrics.csv", "losses.csv", "evals.csv")
EVENT_FILE = "events.out.tfevents.acc-export"  # one fixed name: a re-export replaces it
TENSORBOARD_HINT = "the tensorboard format needs the tensorboard package: pip install tensorboard"


def export_format(fmt: str | ExportFormat) -> ExportFormat:
    """The format named ``fmt``, or a ValueError naming the valid ones."""
    try:
        return ExportFormat(fmt)
    except ValueError:
        raise ValueError(
            f"unknown export format {str(fmt)!r}; valid formats: {', '.join(FORMATS)}"
        ) from None


def export_name(run_id: str, fmt: str | ExportFormat) -> str:
    """What an export of ``run_id`` is called: ``<run_id>.json``, ``<run_id>-csv``, ..."""
    fmt = export_format(fmt)
    return f"{run_id}.json" if fmt is ExportFormat.json else f"{run_id}-{fmt.value}"


def export_run(store: Store, run_id: str, fmt: str | ExportFormat, out_dir: str | Path) -> Path:
    """Export the run into ``out_dir`` (made if missing) under its ``export_name``; return
    the file (json) or folder (csv, tensorboard) written."""
    fmt = export_format(fmt)
    store.get_run(run_id)  # an unknown run fails before anything is made
    target = Path(out_dir) / export_name(run_id, fmt)
    if fmt is ExportFormat.json:
        write_json(store, run_id, target)
    elif fmt is ExportFormat.csv:
        write_csv(store, run_id, target)
    else:
        write_tensorboard(store, run_id, target)
    return target


def export_zip(store: Store, run_id: str, fmt: str | ExportFormat) -> bytes:
    """The export as a zip archive, its files under one folder named ``export_name``."""
    fmt = export_format(fmt)
    store.get_run(run_id)
    buffer = io.BytesIO()
    with tempfile.TemporaryDirectory(prefix="acc-export-") as tmp:
        target = export_run(store, run_id, fmt, tmp)
        paths = [target] if target.is_file() else sorted(p for p in target.rglob("*"))
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
            for path in paths:
                if path.is_file():
                    archive.write(path, path.relative_to(tmp).as_posix())
    return buffer.getvalue()


# --- json ------------------------------------------------------------------------------------


def run_document(store: Store, run_id: str) -> dict:
    """The json export: the results JSON and every branch's final metrics and curves, with
    non-finite numbers as None."""

    results = build_results(store, run_id)
    metrics = {b["id"]: b["metrics"] or {} for b in store.branches(run_id)}
    branches = []
    for series in run_series(store, run_id, final_point=False)["branches"]:
        branch_id = series.pop("id")
        branches.append(
            {
                **{k: series[k] for k in ("condition", "seed", "status", "steps_done")},
                "error": series["error"],
                "health": series["health"],
                "final_metrics": metrics.get(branch_id, {}),
                "losses": series["losses"],
                "evals": series["evals"],
            }
        )
    return finite({"run": results, "branches": branches})


def json_bytes(store: Store, run_id: str) -> bytes:
    return json.dumps(run_document(store, run_id), indent=2, allow_nan=False).encode()


def write_json(store: Store, run_id: str, path: str | Path) -> Path:
    path = Path(path)
    write_atomic(path, json_bytes(store, run_id))
    return path


# --- csv -------------------------------------------------------------------------------------


def csv_tables(store: Store, run_id: str) -> dict[str, list[list]]:
    """The three tidy tables (file name -> rows, header first)."""
    store.get_run(run_id)
    final = [["run_id", "condition", "seed", "metric", "value"]]
    losses = [["run_id", "condition", "seed", "task", "step", "value"]]
    evals = [["run_id", "condition", "seed", "step", "metric", "value"]]
    for branch in store.branches(run_id):
        key = [run_id, branch["condition"], branch["seed"]]
        for metric, value in _flat(branch["metrics"] or {}):
            final.append([*key, metric, _cell(value)])
        for row in store.losses(branch["id"]):
            losses.append([*key, row["task"], row["step"], _cell(row["value"])])
        for row in store.evals(branch["id"]):
            for metric, value in _flat(row["metrics"]):
                evals.append([*key, row["step"], metric, _cell(value)])
    return dict(zip(CSV_FILES, (final, losses, evals)))


def write_csv(store: Store, run_id: str, folder: str | Path) -> Path:
    folder = Path(folder)
    for name, rows in csv_tables(store, run_id).items():
        text = io.StringIO(newline="")
        csv.writer(text, lineterminator="\n").writerows(rows)
        write_atomic(folder / name, text.getvalue().encode())
    return folder


def _flat(metrics: dict) -> Iterator[tuple[str, object]]:
    """(name, value) pairs, a list-valued metric element by element as ``name[i]``."""
    for name, value in metrics.items():
        if isinstance(value, (list, tuple)):
            for i, element in enumerate(value):
                yield f"{name}[{i}]", element
        else:
            yield name, value


def _cell(value) -> object:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, (int, float)):
        return value  # csv writes repr(): the exact float
    return ""


# --- tensorboard -----------------------------------------------------------------------------


def write_tensorboard(store: Store, run_id: str, folder: str | Path) -> Path:
    """One event file per branch under ``folder/<condition>/seed_<seed>/``."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as exc:
        raise RuntimeError(f"{TENSORBOARD_HINT} ({exc})") from None

    folder = Path(folder)
    run = store.get_run(run_id)
    series = {b["id"]: b for b in run_series(store, run_id, final_point=False)["branches"]}
    for branch in store.branches(run_id):
        target = folder / branch["condition"].replace("/", "_") / f"seed_{branch['seed']}"
        target.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=target, prefix=".acc-export-"))
        try:
            writer = SummaryWriter(str(tmp))
            _write_branch(writer, run, branch, series[branch["id"]])
            writer.close()
            [written] = [p for p in tmp.iterdir() if "tfevents" in p.name]
            os.replace(written, target / EVENT_FILE)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return folder


def _write_branch(writer, run: dict, branch: dict, series: dict) -> None:
    for task, points in series["losses"].items():
        for step, value in zip(points["step"], points["value"]):
            if value is not None:
                writer.add_scalar(f"loss/{task}", value, step)
    steps = series["evals"]["step"]
    for metric, values in series["evals"]["metrics"].items():
        for step, value in zip(steps, values):
            if value is not None:
                writer.add_scalar(f"eval/{metric}", value, step)
    final = {
        f"final/{k}": float(v)
        for k, v in (branch["metrics"] or {}).items()
        if isinstance(v, (int, float)) and not isinstance(v, bool)
    }
    for tag, value in final.items():
        writer.add_scalar(tag, value, branch["steps_done"])
    for summary in _hparams_summaries(_hparams(run, branch), final, branch):
        writer.file_writer.add_summary(summary)


def _hparams(run: dict, branch: dict) -> dict:
    """The branch's scalar parameters: the run's config, with a sweep cell's own values."""
    config = run["config"]
    params = {k: v for k, v in config.items() if _scalar(v) and k != "seeds"}
    arm, _, cell_label = branch["condition"].partition("[")
    if cell_label:
        cell = next((c for c in config.get("cells") or [] if label(c) == cell_label[:-1]), {})
        params.update({k: v for k, v in cell.items() if _scalar(v)})
    extra = {"sweep_id": run.get("sweep_id"), "setting": run.get("setting")}
    return {
        "run_id": run["id"],
        "recipe": run["recipe"],
        "condition": branch["condition"],
        "seed": branch["seed"],
        **({"arm": arm} if cell_label else {}),
        **{k: v for k, v in extra.items() if v is not None},
        **params,
    }


def _scalar(value) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    return isinstance(value, (str, int))


def _hparams_summaries(hparams: dict, metrics: dict, branch: dict) -> list:
    """The hparams plugin's session start (and end, for a finished branch) summaries."""
    from tensorboard.compat.proto.summary_pb2 import Summary, SummaryMetadata
    from tensorboard.plugins.hparams.api_pb2 import Status
    from tensorboard.plugins.hparams.metadata import (
        PLUGIN_DATA_VERSION,
        PLUGIN_NAME,
        SESSION_END_INFO_TAG,
    )
    from tensorboard.plugins.hparams.plugin_data_pb2 import HParamsPluginData, SessionEndInfo
    from torch.utils.tensorboard.summary import hparams as hparams_summaries

    _, start, _ = hparams_summaries(hparams, metrics)
    status = {
        "completed": "STATUS_SUCCESS",
        "failed": "STATUS_FAILURE",
        "cancelled": "STATUS_ABORTED",
        "interrupted": "STATUS_ABORTED",
    }.get(branch["status"])
    if status is None:  # queued or running: the session has not ended
        return [start]
    end = HParamsPluginData(
        session_end_info=SessionEndInfo(
            status=Status.Value(status), end_time_secs=branch["finished_at"] or 0.0
        ),
        version=PLUGIN_DATA_VERSION,
    )
    metadata = SummaryMetadata(
        plugin_data=SummaryMetadata.PluginData(
            plugin_name=PLUGIN_NAME, content=end.SerializeToString()
        )
    )
    return [start, Summary(value=[Summary.Value(tag=SESSION_END_INFO_TAG, metadata=metadata)])]

"""The HTTP API without training in the server: validation, errors, runs, checkpoints, pictures.

The store holds one small finished run made through the runner directly, as ``acc run``
would: it must show up in the API like any other (the store is the hub). The app is built
with ``max_concurrent=0`` so jobs it accepts stay queued and nothing trains here.
"""

from __future__ import annotations

import re
import sqlite3
import struct
import time
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from safetensors.torch import save_file

from acc.jsonable import finite
from acc.models import MODELS, FactorSlotAutoencoder
from acc.runner import create_run, execute_run, run_recipe
from acc.server import create_app
from acc.server.images import (
    ImageError,
    filter_grid,
    first_filters,
    png,
    reconstruction_strip,
    traversal_grid,
)
from acc.server.inspector import dataset_view
from acc.store import Store

METRICS = {
    "l1",
    "psnr",
    "weight_cosine_sim",
    "activation_sparsity",
    "sparsity_variance",
    "effective_rank",
}


@pytest.fixture(scope="module")
def cli_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("api") / "store"
    store = Store(root)
    results = run_recipe(
        store, "gradient_gating_l0", {"steps": 6, "seeds": [5], "eval_every": 3}, device="cpu"
    )
    store.close()
    return root, results


@pytest.fixture
def client(cli_run):
    with TestClient(create_app(cli_run[0], max_concurrent=0)) as c:
        yield c


def decode_png(data: bytes) -> tuple[int, int, int, bytes]:
    """(width, height, colour type, raw scanlines) of a PNG, checking every chunk's CRC."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, header = 8, b"", None
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos : pos + 8])
        body = data[pos + 8 : pos + 8 + length]
        assert struct.unpack(">I", data[pos + 8 + length : pos + 12 + length])[0] == zlib.crc32(
            kind + body
        )
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    return header[0], header[1], header[3], zlib.decompress(idat)


def test_png_encoder_round_trips():
    pixels = np.arange(12, dtype=np.uint8).reshape(3, 4) * 20
    width, height, colour, raw = decode_png(png(pixels))
    assert (width, height, colour) == (4, 3, 0)
    rows = [raw[i * 5 : (i + 1) * 5] for i in range(3)]
    assert all(r[0] == 0 for r in rows)
    assert np.array_equal(
        np.frombuffer(b"".join(r[1:] for r in rows), np.uint8).reshape(3, 4), pixels
    )
    assert decode_png(png(np.zeros((2, 5, 3), np.uint8)))[:3] == (5, 2, 2)


def test_finite_replaces_nan_and_infinity():
    assert finite({"a": [1.0, float("nan")], "b": float("inf"), "c": "x"}) == {
        "a": [1.0, None],
        "b": None,
        "c": "x",
    }


def test_recipes_list_parameters_with_defaults(client):
    recipes = {r["name"]: r for r in client.get("/api/recipes").json()["recipes"]}
    l0 = recipes["gradient_gating_l0"]
    defaults = {p["name"]: p["default"] for p in l0["params"]}
    assert defaults["steps"] == 25000 and defaults["seeds"] == [42, 123, 456]
    assert defaults["eval_every"] == 500 and defaults["hidden_dim"] == 64
    assert next(p for p in l0["params"] if p["name"] == "mode")["choices"] == ["batch", "sample"]
    assert set(l0["conditions"]) == {"standard", "gated"}
    assert {h["metric"] for h in l0["hypotheses"]} == {
        "weight_cosine_sim",
        "activation_sparsity",
        "effective_rank",
        "effective_rank_normalized",
        "hoyer_sparsity",
    }
    gating = {p["name"] for p in l0["params"] if p["gating"]}
    assert gating == {"temperature", "gate_strength", "mode"}  # sweeps make cells of these


def test_openapi_documents_every_endpoint(client):
    spec = client.get("/openapi.json").json()
    for path in (
        "/api/recipes",
        "/api/jobs",
        "/api/jobs/{job_id}",
        "/api/jobs/{job_id}/cancel",
        "/api/jobs/{job_id}/events",
        "/api/runs",
        "/api/runs/{run_id}",
        "/api/runs/{run_id}/series",
        "/api/runs/{run_id}/checkpoints",
        "/api/checkpoints/{ckpt_id}",
        "/api/checkpoints/{ckpt_id}/evaluate",
        "/api/checkpoints/{ckpt_id}/evaluations",
        "/api/evaluations/{evaluation_id}",
        "/api/evaluations/{evaluation_id}/cancel",
        "/api/checkpoints/{ckpt_id}/filters.png",
        "/api/checkpoints/{ckpt_id}/reconstructions.png",
        "/api/checkpoints/{ckpt_id}/traversals.png",
        "/api/tasks",
    ):
        assert path in spec["paths"], path
    assert {"JobRequest", "EvaluateRequest", "Job"} <= set(spec["components"]["schemas"])


def test_unknown_recipe_is_404_listing_the_known_ones(client):
    response = client.post("/api/jobs", json={"recipe": "nope", "params": {}})
    assert response.status_code == 404
    assert "nope" in response.json()["detail"] and "gradient_gating_l0" in response.json()["detail"]


@pytest.mark.parametrize(
    ("params", "field", "why"),
    [
        ({"steps": -1}, "steps", "greater than or equal to 0"),
        ({"seeds": []}, "seeds", "at least 1"),
        ({"steps": "many"}, "steps", "valid integer"),
        ({"seeds": [1, 1]}, "seeds", "distinct"),
        ({"stpes": 10}, "stpes", "Extra inputs"),
        ({"gate_strength": 2}, "gate_strength", "less than or equal to 1"),
        ({"steps": 10**10}, "steps", "less than or equal to 1000000000"),
        ({"seeds": list(range(1001))}, "seeds", "at most 1000 items"),
    ],
)
def test_invalid_params_are_422_naming_the_field_and_start_nothing(client, params, field, why):
    before = len(client.get("/api/runs").json())
    response = client.post("/api/jobs", json={"recipe": "gradient_gating_l0", "params": params})
    assert response.status_code == 422
    body = response.json()
    assert any(e["loc"][-1] == field and why in e["msg"] for e in body["errors"]), body
    assert field in body["detail"]
    assert len(client.get("/api/runs").json()) == before
    assert client.get("/api/jobs").json() == []


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"recipe": "gradient_gating_l0", "extra": 1},
        {"recipe": 3},
        {"recipe": "gradient_gating_l0", "params": []},
    ],
)
def test_malformed_bodies_are_422(client, body):
    assert client.post("/api/jobs", json=body).status_code == 422


def test_queued_job_can_be_cancelled_once(client):
    response = client.post(
        "/api/jobs", json={"recipe": "gradient_gating_l0", "params": {"steps": 5, "seeds": [1]}}
    )
    assert response.status_code == 202
    job = response.json()
    assert job["status"] == "queued" and job["run_id"]
    assert client.get("/api/jobs").json()[0]["id"] == job["id"]
    queued = client.get(f"/api/runs/{job['run_id']}").json()
    assert queued["status"] == "queued" and queued["config"]["checkpoint_every"] == 1000
    cancelled = client.post(f"/api/jobs/{job['id']}/cancel")
    assert cancelled.status_code == 202 and cancelled.json()["status"] == "cancelled"
    assert client.post(f"/api/jobs/{job['id']}/cancel").status_code == 409
    assert client.get(f"/api/runs/{job['run_id']}").json()["status"] == "cancelled"


def test_a_job_sets_how_often_its_branches_save_resume_points(client):
    """Issue 20, defect 13: dashboard jobs could not set checkpoint_every (`acc run` can)."""
    body = {"recipe": "gradient_gating_l0", "params": {"steps": 5, "seeds": [1]}}
    job = client.post("/api/jobs", json={**body, "checkpoint_every": 7}).json()
    assert client.get(f"/api/runs/{job['run_id']}").json()["config"]["checkpoint_every"] == 7
    client.post(f"/api/jobs/{job['id']}/cancel")
    for bad in (-1, 2.5, "often"):
        refused = client.post("/api/jobs", json={**body, "checkpoint_every": bad})
        assert refused.status_code == 422 and "checkpoint_every" in refused.text, refused.text


def test_statuses_are_served_for_the_page(client):
    statuses = client.get("/api/statuses").json()
    assert statuses["open"] == ["queued", "running"]
    assert set(statuses["values"]) == {
        "queued", "running", "completed", "partial", "failed", "cancelled", "interrupted"
    }  # fmt: skip


def test_resume_queues_a_stopped_run_and_refuses_the_rest(tmp_path, cli_run):
    root = tmp_path / "store"
    store = Store(root)
    run_id = create_run(store, "gradient_gating_l0", {"steps": 4, "seeds": [1]}, "cpu")

    def interrupt(event):
        if event["type"] == "step":
            raise KeyboardInterrupt

    execute_run(store, run_id, on_event=interrupt)
    with TestClient(create_app(root, max_concurrent=0)) as c:
        response = c.post(f"/api/runs/{run_id}/resume")
        assert response.status_code == 202, response.text
        job = response.json()
        assert job["run_id"] == run_id and job["status"] == "queued"
        assert c.get(f"/api/runs/{run_id}").json()["status"] == "queued"
        again = c.post(f"/api/runs/{run_id}/resume")
        assert again.status_code == 409 and "only a run that has stopped" in again.json()["detail"]
        assert c.post("/api/runs/no-such-run/resume").status_code == 404
    with TestClient(create_app(cli_run[0], max_concurrent=0)) as c:
        done = c.post(f"/api/runs/{cli_run[1]['run_id']}/resume")
        assert done.status_code == 409 and "nothing to resume" in done.json()["detail"]


@pytest.mark.parametrize(
    "path",
    [
        "/api/runs/nope",
        "/api/runs/nope/series",
        "/api/runs/nope/checkpoints",
        "/api/runs/..%2F..%2Fetc",
        "/api/runs/%2Fetc%2Fpasswd",
        "/api/runs/..",
        "/api/jobs/nope",
        "/api/jobs/..%2Fx",
        "/api/jobs/nope/events",
        "/api/checkpoints/nope",
        "/api/checkpoints/..%2F..%2Facc.sqlite/filters.png",
        "/api/checkpoints/%2Fetc%2Fpasswd/reconstructions.png",
        "/api/checkpoints/ck-0/filters.png",
    ],
)
def test_unknown_or_escaping_ids_are_404(client, path):
    assert client.get(path).status_code == 404


def test_unknown_ids_on_post_are_404(client):
    assert client.post("/api/jobs/nope/cancel").status_code == 404
    assert (
        client.post(
            "/api/checkpoints/..%2Fx/evaluate", json={"task": "ReconstructionTask"}
        ).status_code
        == 404
    )


def test_a_cli_run_shows_up_with_results_and_series(client, cli_run):
    _, expected = cli_run
    runs = client.get("/api/runs").json()
    summary = next(r for r in runs if r["id"] == expected["run_id"])
    assert summary["job_id"] is None and summary["status"] == "completed"
    results = client.get(f"/api/runs/{expected['run_id']}").json()
    assert results["conditions"]["gated"]["mean"] == pytest.approx(
        expected["conditions"]["gated"]["mean"]
    )
    assert set(results["conditions"]["standard"]["mean"]) >= METRICS
    series = client.get(f"/api/runs/{expected['run_id']}/series").json()
    assert {(b["condition"], b["seed"]) for b in series["branches"]} == {
        ("standard", 5),
        ("gated", 5),
    }
    branch = series["branches"][0]
    assert branch["losses"]["reconstruction"]["step"] == [1, 2, 3, 4, 5, 6]  # one per step
    assert branch["evals"]["step"] == [0, 3, 6]
    assert len(branch["evals"]["metrics"]["weight_cosine_sim"]) == 3


def test_checkpoint_tree_inspector_and_pictures(client, cli_run):
    run_id = cli_run[1]["run_id"]
    tree = client.get(f"/api/runs/{run_id}/checkpoints").json()
    root = next(c for c in tree if c["tag"] == "init")
    finals = {c["condition"]: c for c in tree if c["tag"] == "final"}
    assert set(finals) == {"standard", "gated"}
    assert all(c["parent_id"] == root["id"] for c in finals.values())
    gated = finals["gated"]["id"]

    info = client.get(f"/api/checkpoints/{gated}").json()
    assert info["view"] == "flat" and "encoder.0" in info["layers"]
    assert info["weight_layers"] == ["encoder.0", "decoder.0"]
    assert info["metadata"]["gating"]["encoder.0"]["gate_strength"] == 1.0

    filters = client.get(f"/api/checkpoints/{gated}/filters.png").content
    width, height, colour, _ = decode_png(filters)
    assert colour == 2 and width == height == 8 * 29 + 1  # 64 tiles of 28x28, 1px gaps
    recon = client.get(f"/api/checkpoints/{gated}/reconstructions.png?n=3")
    assert recon.headers["content-type"] == "image/png"
    assert decode_png(recon.content)[:3] == (3 * 29 + 1, 2 * 29 + 1, 0)
    assert client.get(f"/api/checkpoints/{gated}/reconstructions.png?n=0").status_code == 422
    traversal = client.get(f"/api/checkpoints/{gated}/traversals.png?group=digit")
    assert traversal.status_code == 422 and "no factor groups" in traversal.text

    # the inspector reproduces the metric the run recorded for that checkpoint
    recorded = cli_run[1]["conditions"]["gated"]["runs"][0]["metrics"]
    out = client.post(
        f"/api/checkpoints/{gated}/evaluate",
        json={"task": "WeightDiversityTask", "params": {"layer_name": "encoder.0"}},
    )
    assert out.status_code == 200
    assert out.json()["metrics"]["weight_cosine_sim"] == pytest.approx(
        recorded["weight_cosine_sim"], rel=1e-9
    )
    out = client.post(f"/api/checkpoints/{gated}/evaluate", json={"task": "ReconstructionTask"})
    assert out.json()["metrics"]["l1"] == pytest.approx(recorded["l1"], rel=1e-6)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"task": "NoSuchTask"}, "known tasks"),
        ({"task": "WeightDiversityTask", "params": {"layer_name": "nope"}}, "encoder.0"),
        ({"task": "WeightDiversityTask", "params": {}}, "layer_name"),
        ({"task": "WeightDiversityTask", "params": {"layer_name": 3}}, "layer_name"),
        ({"task": "WeightDiversityTask", "params": {"layer_name": "encoder.1"}}, "no weight"),
        ({"task": "ReconstructionTask", "params": {"loss": "huber"}}, "huber"),
        ({"task": "ReconstructionTask", "params": {"dataset": "x"}}, "dataset"),
    ],
)
def test_bad_evaluations_are_422_with_the_reason(client, cli_run, body, message):
    ckpt = cli_run[1]["conditions"]["gated"]["runs"][0]["checkpoint_id"]
    response = client.post(f"/api/checkpoints/{ckpt}/evaluate", json=body)
    assert response.status_code == 422
    assert message in str(response.json()["detail"])


def wait_for(client, evaluation: dict, seconds: float = 20) -> dict:
    deadline = time.monotonic() + seconds
    while evaluation["status"] in ("running", "cancelling") and time.monotonic() < deadline:
        time.sleep(0.05)
        evaluation = client.get(f"/api/evaluations/{evaluation['id']}").json()
    return evaluation


def test_background_evaluations_report_their_time_and_stop_when_cancelled(
    client, cli_run, monkeypatch
):
    """Issue 20, defect 5: the inspector's evaluations (80+ s at level 3) need progress and a
    cancel. The metrics are the one-request endpoint's; a repeat knows how long it will take."""
    ckpt = cli_run[1]["conditions"]["gated"]["runs"][0]["checkpoint_id"]
    body = {"task": "EffectiveRankTask", "params": {"layer_name": "encoder.0"}}
    direct = client.post(f"/api/checkpoints/{ckpt}/evaluate", json=body).json()["metrics"]
    started = client.post(f"/api/checkpoints/{ckpt}/evaluations", json=body)
    assert started.status_code == 202 and started.json()["expected_seconds"] is None
    first = wait_for(client, started.json())
    assert first["status"] == "completed" and first["metrics"] == direct
    again = client.post(f"/api/checkpoints/{ckpt}/evaluations", json=body).json()
    assert again["expected_seconds"] == first["seconds"]
    wait_for(client, again)
    bad = client.post(f"/api/checkpoints/{ckpt}/evaluations", json={"task": "NoSuchTask"})
    assert bad.status_code == 422 and "unknown task 'NoSuchTask'" in bad.text

    def slow(model, task, task_type):  # a task that computes until it is stopped
        x = torch.randn(64, 64)
        while True:
            x = torch.tanh(x @ x)

    monkeypatch.setattr("acc.server.routes_evaluations.run_evaluation", slow)
    running = client.post(f"/api/checkpoints/{ckpt}/evaluations", json=body).json()
    time.sleep(0.3)
    assert client.get(f"/api/evaluations/{running['id']}").json()["seconds"] >= 0.3
    cancelling = client.post(f"/api/evaluations/{running['id']}/cancel")
    assert cancelling.status_code == 202 and cancelling.json()["status"] == "cancelling"
    stopped = wait_for(client, cancelling.json(), seconds=5)
    assert stopped["status"] == "cancelled" and stopped["metrics"] is None
    assert client.post(f"/api/evaluations/{running['id']}/cancel").status_code == 409
    assert client.get("/api/evaluations/eval-000000000000").status_code == 404


def test_task_catalog_offers_layer_tasks(client):
    tasks = {t["name"]: t for t in client.get("/api/tasks").json()}
    assert tasks["WeightDiversityTask"]["layer_task"]
    assert [p["name"] for p in tasks["WeightDiversityTask"]["params"]][0] == "layer_name"
    assert not tasks["ReconstructionTask"]["layer_task"]
    # plain text, the task's own summary (issue 20, defect 13: raw ``markup`` and a base
    # class's "A measurement: no training signal" showed in the inspector)
    assert tasks["RegressionTask"]["description"] == (
        "A linear probe from some latent channels to one measured factor. Linear probe from "
        "latent channels [start, end) to the standardised factor."
    )
    assert tasks["DeadUnitsTask"]["description"] == (
        "Channels of a layer that are zero on every test image."
    )
    assert not any("`" in t["description"] for t in tasks.values())


def test_page_is_served_and_works_offline(client):
    page = client.get("/")
    assert page.status_code == 200 and "<title>ACC dashboard</title>" in page.text
    static = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    assert static and not [s for s in static if re.match(r"(https?:)?//", s)]
    for path in static:
        assert client.get(path).status_code == 200, path
    for name in ("app.js", "charts.js", "panels.js", "util.js", "style.css"):
        text = client.get(f"/static/{name}").text
        assert not re.search(r"https?://(?!www\.w3\.org)", text), name
    plotly = client.get("/static/vendor/plotly.min.js")
    assert plotly.status_code == 200 and len(plotly.content) > 1_000_000


@pytest.mark.parametrize("name", sorted(MODELS))
def test_every_model_has_filter_and_reconstruction_pictures(name):
    model = MODELS[name]().eval()
    view = dataset_view(model)
    side = 28 if view == "flat" else int(view)
    layer, tiles = first_filters(model)
    conv = any(isinstance(m, torch.nn.Conv2d) for m in model.modules())
    assert tiles.shape[1:] == ((3, 3) if conv else (28, 28)), (layer, tiles.shape)
    grid = filter_grid(tiles)
    assert grid.ndim == 3 and grid.dtype == np.uint8
    images = torch.rand(4, 784) if view == "flat" else torch.rand(4, 1, side, side)
    strip = reconstruction_strip(model, images)
    scale = -(-24 // side)
    assert strip.shape == (2 * (side * scale + 1) + 1, 4 * (side * scale + 1) + 1)


def test_sweeps_are_validated_queued_listed_and_served(tmp_path):
    body = {
        "recipe": "gradient_gating_l0",
        "params": {"steps": 4, "seeds": [1, 2]},
        "grid": {"temperature": [0.5, 2.0], "gate_strength": [0.5, 1.0]},
        "zip": {"optimizer": ["adam", "sgd"], "lr": [0.001, 5.0]},
    }
    with TestClient(create_app(tmp_path / "store", max_concurrent=0)) as c:
        response = c.post("/api/sweeps", json=body)
        assert response.status_code == 202, response.text
        job = response.json()
        assert job["status"] == "queued" and job["sweep_id"] == job["run_id"]
        [listed] = c.get("/api/sweeps").json()
        assert listed["id"] == job["sweep_id"] and listed["job_id"] == job["id"]
        assert listed["status"] == "queued"
        sweep = c.get(f"/api/sweeps/{job['sweep_id']}").json()
        assert [s["id"] for s in sweep["settings"]] == [
            "optimizer=adam,lr=0.001",
            "optimizer=sgd,lr=5.0",
        ]
        assert len(sweep["cells"]) == 8 and all(cell["runs"] == [] for cell in sweep["cells"])
        assert c.post(f"/api/sweeps/{job['sweep_id']}/resume").status_code == 409  # queued
        bad = c.post("/api/sweeps", json={**body, "grid": {"colour": [1, 2]}})
        assert bad.status_code == 422 and "unknown parameter 'colour'" in bad.json()["detail"]
        zipped = c.post("/api/sweeps", json={**body, "zip": {"lr": [0.1], "optimizer": ["a", "b"]}})
        assert zipped.status_code == 422
        for empty in (
            {"grid": {"hidden_dim": []}},
            {"grid": {"temperature": []}},
            {"zip": {"lr": []}},
        ):
            refused = c.post("/api/sweeps", json={**body, **empty})
            assert refused.status_code == 422 and "has no values" in refused.json()["detail"]
        for repeated, message in (
            ({"grid": {"temperature": [1, 1]}}, "axis temperature: 1 is given twice"),
            ({"grid": {"temperature": [1, 1.0]}}, "1 and 1.0 are the same value (1.0)"),
            ({"params": {**body["params"], "lr": 0.1}, "zip": {"lr": [0.1, 1]}},
             "lr is both a parameter of the whole sweep (-p/params) and an axis"),
        ):  # fmt: skip
            refused = c.post("/api/sweeps", json={**body, **repeated})
            assert refused.status_code == 422 and message in refused.json()["detail"]
        twice = (
            '{"recipe": "gradient_gating_l0", "grid": {"temperature": [0.5], "temperature": [2]}}'
        )
        refused = c.post("/api/sweeps", content=twice, headers={"Content-Type": "application/json"})
        assert refused.status_code == 422
        assert refused.json()["detail"][0]["msg"] == (
            "the key 'temperature' is given twice in one JSON object; give it once (with all "
            "its values)"
        )
        assert c.post("/api/sweeps", json={**body, "recipe": "nope"}).status_code == 404
        assert c.get("/api/sweeps/nope").status_code == 404
        assert len(c.get("/api/sweeps").json()) == 1  # the bad ones opened nothing


def test_a_huge_grid_is_422_at_once_without_expanding_it(tmp_path, monkeypatch):
    def expanded(*args):
        raise AssertionError("the grid was expanded before its size was checked")

    monkeypatch.setattr("acc.sweep._product", expanded)
    body = {
        "recipe": "gradient_gating_l0",
        "grid": {
            "lr": [0.001 * i for i in range(1, 2001)],
            "temperature": [0.01 * i for i in range(1, 2001)],
        },
    }  # 4 million cells in a 30 KB body
    with TestClient(create_app(tmp_path / "store", max_concurrent=0)) as c:
        for yes in (False, True):
            refused = c.post("/api/sweeps", json={**body, "yes": yes})
            assert refused.status_code == 422, refused.text
            assert "12006000 branches" in refused.json()["detail"]
        large = {"lr": body["grid"]["lr"][:100], "temperature": body["grid"]["temperature"][:100]}
        refused = c.post("/api/sweeps", json={**body, "grid": large})
        assert refused.status_code == 422 and "pass --yes" in refused.json()["detail"]
        assert c.get("/api/sweeps").json() == []


def test_traversal_grid_of_a_factor_slot_model_and_its_errors():
    torch.manual_seed(0)
    model = FactorSlotAutoencoder(width="small").eval()
    images = torch.rand(50, 1, 32, 32)
    grid = traversal_grid(model, images, "slant", n=3)
    scale = -(-24 // 32)
    assert grid.dtype == np.uint8
    assert grid.shape == (3 * (32 * scale + 1) + 1, 9 * (32 * scale + 1) + 1)  # rows x steps
    with pytest.raises(ImageError, match="unknown factor group 'colour'; this model has: digit"):
        traversal_grid(model, images, "colour", n=3)
    with pytest.raises(ImageError, match="no factor groups"):
        traversal_grid(MODELS["ConvAutoencoder"]().eval(), images, "digit", n=3)


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda p, data: p.write_bytes(data[: len(data) // 2]), "cannot be read"),
        (lambda p, data: p.write_bytes(b""), "cannot be read"),
        (lambda p, data: save_file({"x": torch.ones(3)}, str(p)), "does not hold the weights"),
        (lambda p, data: p.unlink(), "is missing"),
    ],
    ids=["truncated", "zero-byte", "wrong-shape", "missing"],
)
def test_a_damaged_checkpoint_file_is_409_naming_the_file(tmp_path, damage, message):
    store = Store(tmp_path)
    results = run_recipe(store, "gradient_gating_l0", {"steps": 2, "seeds": [1], "eval_every": 0},
                         device="cpu")  # fmt: skip
    [run] = results["conditions"]["gated"]["runs"]
    path = Path(run["checkpoint"])
    damage(path, path.read_bytes())
    ck = run["checkpoint_id"]
    with TestClient(create_app(tmp_path, max_concurrent=0)) as client:
        for response in (
            client.get(f"/api/checkpoints/{ck}"),
            client.get(f"/api/checkpoints/{ck}/filters.png"),
            client.get(f"/api/checkpoints/{ck}/reconstructions.png"),
            client.post(f"/api/checkpoints/{ck}/evaluate",
                        json={"task": "DeadUnitsTask", "params": {"layer_name": "encoder.1"}}),
        ):  # fmt: skip
            assert response.status_code == 409, response.text
            detail = response.json()["detail"]
            assert str(path) in detail and message in detail


def test_a_full_queue_refuses_new_jobs_before_opening_anything(client, monkeypatch):
    monkeypatch.setattr("acc.server.jobs.MAX_QUEUED", 2)
    job = {"recipe": "gradient_gating_l0", "params": {"steps": 1, "seeds": [1]}}
    queued = [client.post("/api/jobs", json=job).json() for _ in range(2)]  # no slots: they wait
    runs = len(client.get("/api/runs").json())
    refused = client.post("/api/jobs", json=job)
    assert refused.status_code == 422 and "2 jobs are already queued (at most 2)" in refused.text
    assert len(client.get("/api/runs").json()) == runs  # nothing opened
    assert len(client.get("/api/jobs?limit=1").json()) == 1
    assert client.get("/api/jobs?limit=0").status_code == 422
    for j in queued:
        client.post(f"/api/jobs/{j['id']}/cancel")


def test_concurrent_submissions_never_overshoot_the_queue_and_the_list_says_how_many(
    tmp_path, monkeypatch
):
    def slow_create_run(*args, **kwargs):  # widens the gap between the check and the insert
        time.sleep(0.05)
        return create_run(*args, **kwargs)

    monkeypatch.setattr("acc.server.jobs.MAX_QUEUED", 5)
    monkeypatch.setattr("acc.server.jobs.create_run", slow_create_run)
    job = {"recipe": "gradient_gating_l0", "params": {"steps": 1, "seeds": [1]}}
    with TestClient(create_app(tmp_path, max_concurrent=0)) as c:
        with ThreadPoolExecutor(12) as pool:
            codes = sorted(pool.map(lambda _: c.post("/api/jobs", json=job).status_code, range(12)))
        assert codes == [202] * 5 + [422] * 7
        assert len(c.get("/api/runs").json()) == 5  # the refused ones opened nothing
        listed = c.get("/api/jobs", params={"limit": 2})
        assert len(listed.json()) == 2 and listed.headers["X-Total-Count"] == "5"


def test_a_database_that_fails_under_the_server_is_503_naming_it(tmp_path, monkeypatch):
    def malformed(*args, **kwargs):
        raise sqlite3.DatabaseError("database disk image is malformed")

    with TestClient(create_app(tmp_path, max_concurrent=0)) as client:
        monkeypatch.setattr(Store, "list_runs", malformed)
        response = client.get("/api/runs")
    assert response.status_code == 503
    detail = response.json()["detail"]
    assert str(tmp_path / "acc.sqlite") in detail and "is corrupt" in detail
    assert "PRAGMA integrity_check" in detail


def test_the_run_list_pages_and_says_how_many_runs_match(tmp_path):
    """Issue 20, capabilities: /api/runs gave the newest ``limit`` runs and no way past them."""
    store = Store(tmp_path)
    for i in range(5):
        store.create_run("gradient_gating_l0", {}, [], {}, name=f"r{i}", note="odd" * (i % 2))
    store.close()
    with TestClient(create_app(tmp_path, max_concurrent=0)) as c:
        page = c.get("/api/runs?limit=2&offset=2")
        assert [r["name"] for r in page.json()] == ["r2", "r1"]
        assert page.headers["X-Total-Count"] == "5"
        searched = c.get("/api/runs?q=ODD&limit=1&offset=1")  # search pages too
        assert [r["name"] for r in searched.json()] == ["r1"]
        assert searched.headers["X-Total-Count"] == "2"
        assert c.get("/api/runs?offset=7").json() == []
        bad = c.get("/api/runs?offset=-1")
        assert bad.status_code == 422 and "offset" in bad.text

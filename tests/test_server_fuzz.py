"""Property-based: whatever a client sends, the API answers without a server error (no 5xx).

Hypothesis generates path ids (including traversal attempts), query values, headers and
JSON bodies (including NaN and Infinity, which lenient JSON parsers accept) for every
endpoint. The app runs with ``max_concurrent=0``: jobs it accepts are queued, never trained,
so the job-starting endpoint can be fuzzed too. Bounded to a few dozen examples each.
"""

from __future__ import annotations

import json
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from acc.recipes import recipe_registry
from acc.runner import run_recipe
from acc.server import create_app
from acc.store import Store
from acc.tasks import task_registry

SETTINGS = settings(
    max_examples=30,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=12)
    | st.sampled_from([float("nan"), float("inf"), -float("inf"), 10**40]),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)
TRICKY_IDS = [
    "..",
    "../acc.sqlite",
    "/etc/passwd",
    "..%2F..",
    "\x00",
    " ",
    "ck-",
    "%",
    "?a=1",
    "a" * 300,
]


@pytest.fixture(scope="module")
def known(tmp_path_factory):
    """A store with one finished run, and an app over it with a cancelled job."""
    root = tmp_path_factory.mktemp("fuzz") / "store"
    store = Store(root)
    results = run_recipe(
        store, "gradient_gating_l0", {"steps": 2, "seeds": [1], "eval_every": 0}, device="cpu"
    )
    store.close()
    with TestClient(create_app(root, max_concurrent=0), raise_server_exceptions=False) as client:
        job = client.post(
            "/api/jobs", json={"recipe": "gradient_gating_l0", "params": {"steps": 1, "seeds": [1]}}
        ).json()
        client.post(f"/api/jobs/{job['id']}/cancel")
        ckpt = results["conditions"]["gated"]["runs"][0]["checkpoint_id"]
        yield client, {"run": results["run_id"], "ckpt": ckpt, "job": job["id"]}


def ids(kind: str, known_ids: dict):
    return st.one_of(st.text(max_size=20), st.sampled_from(TRICKY_IDS), st.just(known_ids[kind]))


def no_server_error(response) -> None:
    assert response.status_code < 500, (response.request.url, response.text[:500])


GETS = [
    "/api/runs/{run}",
    "/api/runs/{run}/series",
    "/api/runs/{run}/checkpoints",
    "/api/jobs/{job}",
    "/api/jobs/{job}/events",
    "/api/checkpoints/{ckpt}",
    "/api/checkpoints/{ckpt}/filters.png",
    "/api/checkpoints/{ckpt}/reconstructions.png",
]


@pytest.mark.parametrize("template", GETS)
def test_get_endpoints_never_fail(known, template):
    client, known_ids = known
    kind = template.split("{")[1].split("}")[0]

    @SETTINGS
    @given(
        value=ids(kind, known_ids),
        query=st.dictionaries(
            st.sampled_from(["n", "limit", "after"]),
            st.text(max_size=6) | st.integers().map(str),
            max_size=2,
        ),
        last_event_id=st.none() | st.text(max_size=10),
    )
    def check(value, query, last_event_id):
        headers = (
            {}
            if last_event_id is None
            else {
                "Last-Event-ID": last_event_id.encode("ascii", "replace")
                .decode()
                .replace("\r", "")
                .replace("\n", "")
            }
        )
        path = template.replace("{" + kind + "}", quote(value, safe=""))
        no_server_error(client.get(path, params=query, headers=headers))

    check()


def test_list_endpoints_never_fail(known):
    client, _ = known

    @SETTINGS
    @given(limit=st.integers() | st.text(max_size=5))
    def check(limit):
        for path in ("/api/runs", "/api/jobs", "/api/recipes", "/api/tasks", "/api/metrics"):
            no_server_error(client.get(path, params={"limit": limit}))

    check()


def raw_post(client, path: str, body) -> None:
    content = json.dumps(body)  # allow_nan: NaN/Infinity go out as lenient JSON does
    no_server_error(
        client.post(path, content=content, headers={"Content-Type": "application/json"})
    )


def test_starting_jobs_never_fails(known):
    client, _ = known
    recipes = recipe_registry().names()
    params = st.dictionaries(
        st.sampled_from(
            [
                "steps",
                "seeds",
                "eval_every",
                "lr",
                "batch_size",
                "optimizer",
                "gate_strength",
                "mode",
                "x",
            ]
        ),
        JSON,
        max_size=4,
    )

    @SETTINGS
    @given(
        body=st.one_of(
            JSON,
            st.fixed_dictionaries(
                {"recipe": st.sampled_from(recipes) | st.text(max_size=10), "params": params | JSON}
            ),
        )
    )
    def check(body):
        raw_post(client, "/api/jobs", body)

    check()


def test_cancel_never_fails(known):
    client, known_ids = known

    @SETTINGS
    @given(job=ids("job", known_ids))
    def check(job):
        no_server_error(client.post(f"/api/jobs/{quote(job, safe='')}/cancel"))

    check()


def test_checkpoint_evaluation_never_fails(known):
    client, known_ids = known
    params = st.dictionaries(
        st.sampled_from(
            ["layer_name", "label", "weight", "loss", "latent_slice", "name", "dataset", "x"]
        ),
        JSON | st.sampled_from(["encoder.0", "encoder.1", "decoder", "l1"]),
        max_size=3,
    )

    @settings(SETTINGS, max_examples=25)
    @given(
        ckpt=ids("ckpt", known_ids),
        body=st.one_of(
            JSON,
            st.fixed_dictionaries(
                {
                    "task": st.sampled_from(task_registry().names()) | st.text(max_size=10),
                    "params": params,
                }
            ),
        ),
    )
    def check(ckpt, body):
        raw_post(client, f"/api/checkpoints/{quote(ckpt, safe='')}/evaluate", body)

    check()


NASTY = ["\ud800", "a\udfffb", "\x00", "\x1b[31m", "\u2028", "\x7f\n\r\t"]  # lone surrogates
BODIES = {  # a valid body per endpoint; each of its fields (and keys) gets each NASTY string
    "/api/jobs": {
        "recipe": "gradient_gating_l0",
        "params": {"steps": 1, "seeds": [1], "optimizer": "adam"},
        "deltas": {"l1": 0.1},
        "correction": "holm",
    },
    "/api/sweeps": {
        "recipe": "gradient_gating_l0",
        "params": {"steps": 1, "seeds": [1], "mode": "batch"},
        "grid": {"temperature": [0.5, 1.0], "optimizer": ["adam"]},
        "zip": {"lr": [0.1]},
        "deltas": {"l1": 0.1},
        "correction": "holm",
    },
    "/api/checkpoints/{ckpt}/evaluate": {"task": "l1", "params": {"name": "l1"}},
    "/api/checkpoints/{ckpt}/evaluations": {"task": "l1", "params": {"name": "l1"}},
    "/api/runs/{run}": {"name": "a name", "note": "a note"},
}


def nasty_variants(value, nasty: str):
    """``value`` with, one at a time, each string, each key and each list item replaced by
    ``nasty`` (or holding it as a key)."""
    if isinstance(value, dict):
        yield {**value, nasty: 1}
        for key, item in value.items():
            yield {**{k: v for k, v in value.items() if k != key}, nasty: item}
            for variant in nasty_variants(item, nasty):
                yield {**value, key: variant}
    elif isinstance(value, list):
        for i, item in enumerate(value):
            for variant in [nasty, *nasty_variants(item, nasty)]:
                yield [*value[:i], variant, *value[i + 1 :]]
    else:
        yield nasty


@pytest.mark.parametrize("template", BODIES)
def test_lone_surrogates_and_control_characters_in_any_field_are_never_a_server_error(
    known, template
):
    client, known_ids = known
    path = template.format(**known_ids)
    method = "PATCH" if template.startswith("/api/runs/") else "POST"
    for nasty in NASTY:
        for body in nasty_variants(BODIES[template], nasty):
            response = client.request(
                method,
                path,
                content=json.dumps(body),  # ensure_ascii: surrogates travel as \ud800 escapes
                headers={"Content-Type": "application/json"},
            )
            assert response.status_code < 500, (path, body, response.text[:300])
            if response.status_code >= 400:
                response.json()  # an answer a client can read, whatever it echoes

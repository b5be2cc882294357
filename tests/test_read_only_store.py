"""A store on read-only media can still be listed and shown (a real read-only bind mount; the
test needs root and mount, and is skipped where they are missing)."""

from __future__ import annotations

import os
import subprocess

import pytest
from typer.testing import CliRunner

from acc.cli import app
from acc.runner import run_recipe
from acc.store import Store

runner = CliRunner()


@pytest.fixture
def read_only_store(tmp_path):
    source, mounted = tmp_path / "store", tmp_path / "mounted"
    store = Store(source)
    results = run_recipe(store, "gradient_gating_l0", {"steps": 2, "seeds": [1], "eval_every": 0},
                         device="cpu")  # fmt: skip
    store.close()
    mounted.mkdir()
    if os.geteuid() != 0:
        pytest.skip("a read-only bind mount needs root")
    for command in (["mount", "--bind", str(source), str(mounted)],
                    ["mount", "-o", "remount,ro,bind", str(mounted)]):  # fmt: skip
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode != 0:
            subprocess.run(["umount", str(mounted)], capture_output=True)
            pytest.skip(f"cannot make a read-only mount here: {done.stderr.strip()}")
    yield mounted, results["run_id"]
    subprocess.run(["umount", "--lazy", str(mounted)], check=True)  # the CLI kept it open


def test_a_read_only_store_is_listed_and_shown_but_not_resumed(read_only_store):
    mounted, run_id = read_only_store
    with pytest.raises(OSError):  # really read-only
        (mounted / "probe").write_text("x")
    listing = runner.invoke(app, ["runs", "--store", str(mounted)])
    assert listing.exit_code == 0 and run_id in listing.output and "read-only" in listing.output
    shown = runner.invoke(app, ["show", run_id, "--json", "--store", str(mounted)])
    assert shown.exit_code == 0 and f'"run_id": "{run_id}"' in shown.output
    resumed = runner.invoke(app, ["run", "--resume", run_id, "--store", str(mounted)])
    assert resumed.exit_code == 2 and "cannot write to the store" in " ".join(
        resumed.output.split()
    )

"""Results do not change with how branches are run: final metrics pinned from a short run of
each recipe made before branches became units of work (tests/data/pinned_metrics.json, made
by the old one-process loop), compared exactly on a CPU of the same kind.

Bit-identity holds for the same torch build, CPU kernel family and thread count (1 here);
on another kind of CPU the same code rounds differently, so there the check is to 1e-5.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from acc.runner import create_run, execute_run

PINNED = json.loads((Path(__file__).parent / "data" / "pinned_metrics.json").read_text())
SAME_KERNELS = (
    torch.backends.cpu.get_cpu_capability() == PINNED["cpu_capability"]
    and torch.__version__ == PINNED["torch"]
)


@pytest.mark.parametrize("recipe", sorted(PINNED["cases"]))
def test_final_metrics_match_the_pinned_values(store, recipe):
    case = PINNED["cases"][recipe]
    run_id = create_run(store, recipe, case["params"], device="cpu")
    results = execute_run(store, run_id)
    for condition, expected in case["metrics"].items():
        [run] = results["conditions"][condition]["runs"]
        assert run["status"] == "completed", run
        pinned = {key: run["metrics"][key] for key in expected}  # metrics added later aside
        if SAME_KERNELS:
            assert pinned == expected, f"{recipe} {condition} changed"
        else:
            assert pinned == pytest.approx(expected, rel=1e-5, abs=1e-8)

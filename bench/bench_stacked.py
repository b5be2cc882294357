"""Wall time of a level-0 sweep under the stacked executor against two worker processes.

The sweep-like set: level 0, 2 seeds, gate_strength x temperature 3 x 3 cells plus the
standard condition: 20 branches, ``--steps`` each (2,000 by default), no periodic evaluation.
Each variant is a fresh `acc sweep` process on a fresh store (start-up, every branch's final
evaluation and the store's writes included), run with the same `nice` as this script. The
ratio is the process executor's time over the stacked one's (above 1: stacked is faster),
measured in one run; the stacked sweep's final metrics and verdicts are compared with the
process executor's (largest relative difference; verdicts that agree).

    nice -n 15 .venv/bin/python bench/bench_stacked.py --steps 2000
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SWEEP = [
    sys.executable, "-m", "acc", "sweep", "gradient_gating_l0", "--seeds", "42,123",
    "--grid", "gate_strength=0.25,0.5,1.0", "--grid", "temperature=0.3,1.0,3.0",
    "--param", "eval_every=0",
]  # fmt: skip
VARIANTS = {
    "process, --workers 2": ["--workers", "2"],
    "stacked, one stack of 20": ["--executor", "stacked"],
}


def run(args: list[str], steps: int) -> tuple[float, dict, dict]:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "results.json"
        started = time.perf_counter()
        subprocess.run(
            [*SWEEP, "--steps", str(steps), *args, "--store", tmp, "--json", str(out)],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        seconds = time.perf_counter() - started
        results = json.loads(out.read_text())
    metrics = {}
    for setting in results["settings"]:
        for r in setting["standard"]["runs"]:
            metrics[("standard", r["seed"])] = r["metrics"]
    for cell in results["cells"]:
        for r in cell["runs"]:
            metrics[(json.dumps(cell["params"]), r["seed"])] = r["metrics"]
    verdicts = {
        (cell["setting"], json.dumps(cell["params"]), c["metric"], c["a"], c["b"]): c["verdict"]
        for cell in results["cells"]
        for c in cell["comparisons"]
    }
    return seconds, metrics, verdicts


def largest_difference(a: dict, b: dict) -> float:
    worst = 0.0
    for key, metrics in a.items():
        for name, value in metrics.items():
            other = b[key][name]
            if isinstance(value, float) and math.isfinite(value) and value != 0:
                worst = max(worst, abs(other - value) / abs(value))
    return worst


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=2000, help="steps per branch")
    args = parser.parse_args()
    times, metrics, verdicts = {}, {}, {}
    for name, extra in VARIANTS.items():
        times[name], metrics[name], verdicts[name] = run(extra, args.steps)
        print(f"{name}: {times[name]:.1f} s", flush=True)
    process, stacked = times["process, --workers 2"], times["stacked, one stack of 20"]
    branches = len(metrics["stacked, one stack of 20"])
    print(f"\nlevel-0 sweep, {branches} branches x {args.steps:,} steps, one run each")
    print(f"  stacked vs --workers 2: {process / stacked:.2f}x (above 1: stacked is faster)")
    worst = largest_difference(metrics["process, --workers 2"], metrics["stacked, one stack of 20"])
    print(f"  largest relative difference of a final metric, stacked vs process: {worst:.2e}")
    a, b = verdicts["process, --workers 2"], verdicts["stacked, one stack of 20"]
    same = sum(a[key] == b.get(key) for key in a)
    print(f"  verdicts (unadjusted, per cell and hypothesis) the same: {same} of {len(a)}")
    print("  (bench/bench_stacked_drift.py: how far any float32 rounding difference grows)")


if __name__ == "__main__":
    main()

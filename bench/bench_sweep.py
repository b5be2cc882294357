"""Wall time of a small sweep with two worker processes against one process.

Level 0, a 2 x 2 grid (temperature x gate strength) x 2 seeds, 1,000 steps: 2 standard +
8 gated branches, each variant a fresh `acc sweep` process on a fresh store (start-up
included), alternating round by round; medians reported; the cells' metrics must agree.

    .venv/bin/python bench/bench_sweep.py --rounds 3
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SWEEP = [
    sys.executable, "-m", "acc", "sweep", "gradient_gating_l0",
    "--grid", "temperature=0.5,2", "--grid", "gate_strength=0.5,1",
    "--seeds", "42,123", "--threads", "1",
]  # fmt: skip
VARIANTS = {"one process": ["--workers", "1"], "two workers": ["--workers", "2"]}


def run(args: list[str], steps: int) -> tuple[float, dict]:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "sweep.json"
        started = time.perf_counter()
        subprocess.run(
            [*SWEEP, "--steps", str(steps), *args, "--store", tmp, "--json", str(out)],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        seconds = time.perf_counter() - started
        results = json.loads(out.read_text())
    cells = {(c["setting"], json.dumps(c["params"])): c["mean"] for c in results["cells"]}
    return seconds, cells


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=1000)
    args = parser.parse_args()
    times: dict[str, list[float]] = {name: [] for name in VARIANTS}
    cells: dict[str, dict] = {}
    for round_ in range(args.rounds):
        order = list(VARIANTS) if round_ % 2 == 0 else list(reversed(VARIANTS))
        for name in order:
            seconds, cells[name] = run(VARIANTS[name], args.steps)
            times[name].append(seconds)
            print(f"round {round_ + 1}: {name}: {seconds:.1f} s", flush=True)
    one, two = (statistics.median(times[name]) for name in VARIANTS)
    print(
        f"\nlevel 0 sweep, 2 x 2 grid x 2 seeds x {args.steps:,} steps (10 branches), median of "
        f"{args.rounds}: one process {one:.1f} s, two workers {two:.1f} s = {two / one:.2f}x"
    )
    print(f"cells' metrics identical: {cells['one process'] == cells['two workers']}")


if __name__ == "__main__":
    main()

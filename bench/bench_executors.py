"""Wall time of one run under each executor, as a researcher would start it from the shell.

Level 0, seeds 42 and 123, both conditions, 3,000 steps (``--steps``; periodic evaluation
every 500, the recipe's default): four branches. Each variant is a fresh `acc run` process on
a fresh store, so start-up (torch import, worker spawn, Ray's start) is included. Variants
alternate round by round so that drift in machine load hits them alike; medians are reported,
and the final metrics of the single-thread variants are checked to be identical.

    .venv/bin/python bench/bench_executors.py --rounds 3
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

ACC = [sys.executable, "-m", "acc", "run", "gradient_gating_l0", "--seeds", "42,123"]
VARIANTS = {
    "inline, 1 thread": ["--threads", "1"],
    "inline, 2 threads": ["--threads", "2"],
    "process, 2 workers": ["--workers", "2"],
    "ray, local 2-CPU instance": ["--executor", "ray", "--threads", "1"],
}
IDENTICAL = ("inline, 1 thread", "process, 2 workers", "ray, local 2-CPU instance")


def run(args: list[str], steps: int) -> tuple[float, dict]:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "results.json"
        started = time.perf_counter()
        subprocess.run(
            [*ACC, "--steps", str(steps), *args, "--store", tmp, "--json", str(out)],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        seconds = time.perf_counter() - started
        results = json.loads(out.read_text())
    metrics = {
        (c, r["seed"]): r["metrics"] for c, e in results["conditions"].items() for r in e["runs"]
    }
    return seconds, metrics


BUSY_LOOP = (
    "import time, torch; torch.set_num_threads(1); x, w = torch.randn(128, 784), "
    "torch.randn(784, 64); t = time.perf_counter()\n"
    "for _ in range(20000): x @ w\n"
    "print(time.perf_counter() - t)"
)


def parallel_ceiling() -> float:
    """How much two single-thread processes slow each other on this machine: the best ratio
    two workers can reach against one process is (slowdown) / 2. On two independent cores it
    is 1.0 (ceiling 0.5); on two hyper-threads of one core, or under a CPU quota, far more."""
    alone = float(subprocess.run([sys.executable, "-c", BUSY_LOOP], capture_output=True,
                                 text=True, check=True).stdout)  # fmt: skip
    pair = [subprocess.Popen([sys.executable, "-c", BUSY_LOOP], stdout=subprocess.PIPE, text=True)
            for _ in range(2)]  # fmt: skip
    together = statistics.mean(float(p.communicate()[0]) for p in pair)
    return together / alone


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=3000, help="steps per branch")
    args = parser.parse_args()
    times: dict[str, list[float]] = {name: [] for name in VARIANTS}
    metrics: dict[str, dict] = {}
    for round_ in range(args.rounds):
        order = list(VARIANTS) if round_ % 2 == 0 else list(reversed(VARIANTS))
        for name in order:
            seconds, metrics[name] = run(VARIANTS[name], args.steps)
            times[name].append(seconds)
            print(f"round {round_ + 1}: {name}: {seconds:.1f} s", flush=True)
    base = statistics.median(times["inline, 1 thread"])
    print(
        f"\nlevel 0, 2 seeds x 2 conditions x {args.steps:,} steps, median of {args.rounds} rounds"
    )
    for name, values in times.items():
        median = statistics.median(values)
        print(f"  {name:<28} {median:6.1f} s   {median / base:.2f}x inline (1 thread)")
    same = all(metrics[name] == metrics[IDENTICAL[0]] for name in IDENTICAL)
    print(f"final metrics identical across {', '.join(IDENTICAL)}: {same}")
    slowdown = parallel_ceiling()
    print(
        f"two single-thread processes side by side each run {slowdown:.2f}x slower than one alone "
        f"here: the best two workers can do is {slowdown / 2:.2f}x one process"
    )


if __name__ == "__main__":
    main()

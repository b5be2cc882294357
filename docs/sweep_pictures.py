"""Pictures of a sweep for the README, taken from the real dashboard in headless Chromium.

    .venv/bin/python docs/sweep_pictures.py SWEEP_ID [--store acc-store] [--metrics m1 m2 ...]

For each metric: the sweep view's heatmaps (one per setting) as docs/<prefix>_<metric>.png,
and the gate-entropy tables as docs/<prefix>_gate_entropy.png. Nothing trains: the server is
started with no job slots.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from dashboard_page import dashboard_page


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sweep_id")
    parser.add_argument("--store", default="acc-store")
    parser.add_argument("--prefix", default="sweep_l0")
    parser.add_argument("--metrics", nargs="+", default=["weight_cosine_sim"])
    args = parser.parse_args()
    docs = Path(__file__).parent
    with dashboard_page(args.store, f"sweep={args.sweep_id}") as page:
        page.wait_for_selector("#sweep-heatmaps .main-svg", timeout=60_000)
        for metric in args.metrics:
            page.select_option("#sweep-metric", metric)
            page.wait_for_timeout(1500)
            path = docs / f"{args.prefix}_{metric}.png"
            page.locator("#sweep-heatmaps").screenshot(path=str(path))
            print(f"wrote {path}")
        path = docs / f"{args.prefix}_gate_entropy.png"
        page.locator("#sweep-entropy").screenshot(path=str(path))
        print(f"wrote {path}")


if __name__ == "__main__":
    main()

"""The README's picture of two runs compared side by side on the dashboard.

    python docs/compare_picture.py RUN_ID RUN_ID [...] --store STORE
                                   [--out docs/dashboard_compare.png] [--smoothing 0.6]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from dashboard_page import dashboard_page


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", help="two or more run ids")
    parser.add_argument("--store", required=True)
    parser.add_argument("--out", type=Path, default=Path("docs/dashboard_compare.png"))
    parser.add_argument("--smoothing", type=float, default=0.6, help="loss EMA weight")
    args = parser.parse_args()
    with dashboard_page(args.store, f"compare={','.join(args.runs)}") as page:
        page.evaluate(
            "s => { const e = document.getElementById('smoothing'); e.value = String(s);"
            " e.dispatchEvent(new Event('input')); }",
            args.smoothing,
        )
        columns = 1 + sum(  # the metric column and one per run x condition
            page.evaluate(f"fetch('/api/runs/{r}').then(x => x.json())")["conditions"].__len__()
            for r in args.runs
        )
        page.wait_for_function(
            f"document.querySelectorAll('#compare-table thead th').length === {columns}"
            " && document.querySelectorAll('#compare-metrics .plot .main-svg').length > 0"
        )
        page.wait_for_timeout(1500)  # the last redraw of the charts
        args.out.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(args.out), full_page=True)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

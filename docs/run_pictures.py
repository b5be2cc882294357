"""The pictures panel of a run (filters, reconstructions, and for a factor-slot run the latent
traversals per group), one column per condition, taken from the real dashboard in headless
Chromium for the README.

    .venv/bin/python docs/run_pictures.py RUN_ID [--store acc-store] [--out docs/l3_pictures.png]

Nothing trains: the server is started with no job slots.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from dashboard_page import dashboard_page


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_id")
    parser.add_argument("--store", default="acc-store")
    parser.add_argument("--seed", type=int, help="the seed whose checkpoints are shown")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "l3_pictures.png")
    args = parser.parse_args()
    with dashboard_page(args.store, f"run={args.run_id}") as page:
        page.wait_for_selector("#pictures img", timeout=60_000)
        if args.seed is not None:
            page.select_option("#picture-seed", str(args.seed))
        page.wait_for_function(
            "[...document.querySelectorAll('#pictures img')]"
            ".every(i => i.complete && i.naturalWidth > 0)",
            timeout=180_000,
        )
        page.locator("#pictures").screenshot(path=str(args.out))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

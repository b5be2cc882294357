"""What the dashboard costs: API latency while a job trains, and training speed with the
server and an open page against training with neither.

    python bench/bench_server.py [--steps 2000] [--seeds 1 2] [--repeats 2] [--no-browser]
                                 [--screenshot docs/dashboard.png] [--mode job|cli|compare|all]
                                 [--compare-runs 20]

``--mode job`` (the default) measures a job started from the dashboard, as described below.
``--mode cli``: the same recipe run by ``acc run`` in its own process, alone against with
``acc serve`` and the page open on it (the page polls the store for a CLI run); speed is the
branches' steps over their wall time, from the store. ``--mode compare``: ``--compare-runs``
runs (all finished but one, which a CLI process trains) opened side by side in the page's
comparison view: the time until every chart is drawn and the page's CPU while it follows the
live one.

Plain: the recipe runs in a spawned process with the same torch thread count a server
worker gets, no server. Served: ``acc serve`` runs as its own process, the job is started
through the API, the real page follows it live in headless Chromium (when available), and
a prober requests a mix of API endpoints ten times a second, timing each answer. Training
speed is steps per second of ``ctx.train`` (periodic evaluations included, the same work in
both), taken from the recipe's own timing log. Plain and served runs alternate, so slow
phases of a shared machine hit both; the medians are reported.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import closing
from pathlib import Path

import httpx

RECIPE = "gradient_gating_l0"
TIMING = re.compile(r": (\d+) steps in ([\d.]+)s$")
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                 "--disable-background-networking"]  # fmt: skip
POLLING = "document.getElementById('live').textContent === 'polling'"


def steps_per_second(log_lines: list[str]) -> float:
    steps = seconds = 0.0
    for line in log_lines:
        match = TIMING.search(line)
        if match:
            steps, seconds = steps + int(match[1]), seconds + float(match[2])
    if not seconds:
        raise RuntimeError(f"no training timings in the log: {log_lines}")
    return steps / seconds


# --- plain: no server --------------------------------------------------------------------------


def _plain_worker(store: str, params: dict, threads: int, out) -> None:
    import torch

    from acc.runner import run_recipe
    from acc.store import Store

    torch.set_num_threads(threads)
    logs: list[str] = []
    run_recipe(
        Store(store),
        RECIPE,
        params,
        device="cpu",
        on_event=lambda e: logs.append(e["message"]) if e["type"] == "log" else None,
    )
    out.put(logs)


def run_plain(params: dict, threads: int) -> float:
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    with tempfile.TemporaryDirectory() as store:
        process = ctx.Process(target=_plain_worker, args=(store, params, threads, out))
        process.start()
        logs = out.get(timeout=1800)
        process.join()
    return steps_per_second(logs)


# --- served: server + page + API traffic -------------------------------------------------------


class Prober(threading.Thread):
    """Requests a mix of endpoints every ``period`` seconds and keeps each latency."""

    def __init__(self, url: str, job: dict, period: float = 0.1) -> None:
        super().__init__(daemon=True)
        self.client = httpx.Client(base_url=url, timeout=30)
        self.paths = [
            "/api/jobs",
            f"/api/jobs/{job['id']}",
            "/api/runs",
            f"/api/runs/{job['run_id']}",
            f"/api/runs/{job['run_id']}/series",
            "/api/recipes",
            f"/api/runs/{job['run_id']}/checkpoints",
        ]
        self.period, self.samples, self.stop = period, [], threading.Event()

    def run(self) -> None:
        i = 0
        while not self.stop.is_set():
            path = self.paths[i % len(self.paths)]
            started = time.perf_counter()
            response = self.client.get(path)
            elapsed = time.perf_counter() - started
            if response.status_code >= 400:
                raise RuntimeError(f"{path}: {response.status_code} {response.text[:200]}")
            self.samples.append((path.split("/")[2] + _shape(path), elapsed))
            i += 1
            self.stop.wait(max(0.0, self.period - elapsed))


class CpuMeter(threading.Thread):
    """CPU seconds used by the server, its job worker, and the browser (this process's other
    descendants), read from /proc: what the dashboard takes from the machine, whatever the
    machine's other load. ``cli_pid``: an ``acc run`` process (and its children), counted as
    "cli" rather than as the browser."""

    def __init__(self, server_pid: int, cli_pid: int | None = None) -> None:
        super().__init__(daemon=True)
        self.server_pid, self.cli_pid, self.stop = server_pid, cli_pid, threading.Event()
        self.used: dict[int, tuple[str, float]] = {}
        self.tick = os.sysconf("SC_CLK_TCK")

    def run(self) -> None:
        while not self.stop.wait(0.25):
            self.sample()

    def sample(self) -> None:
        parents = {}
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    stat = Path(f"/proc/{entry}/stat").read_text()
                except OSError:
                    continue
                fields = stat[stat.rindex(")") + 2 :].split()
                parents[int(entry)] = (
                    int(fields[1]),
                    (int(fields[11]) + int(fields[12])) / self.tick,
                )
        for pid, (_, cpu) in parents.items():
            group = self._group(pid, parents)
            if group:
                self.used[pid] = (group, max(cpu, self.used.get(pid, ("", 0.0))[1]))

    def _group(self, pid: int, parents: dict) -> str | None:
        chain = [pid]
        while chain[-1] in parents and chain[-1] > 1 and len(chain) < 20:
            chain.append(parents[chain[-1]][0])
        if pid == self.server_pid:
            return "server"
        if self.server_pid in chain:
            return "worker"
        if self.cli_pid is not None and self.cli_pid in chain:
            return "cli"
        return "browser" if os.getpid() in chain[1:] else None

    def totals(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for group, cpu in self.used.values():
            out[group] = out.get(group, 0.0) + cpu
        return out

    def mark(self) -> None:
        """Start of the measured window: training has begun (start-up costs left out)."""
        self.sample()
        self.marked, self.marked_at = self.totals(), time.monotonic()

    def cores(self) -> dict[str, float]:
        """Average cores each group used since ``mark()``."""
        seconds = time.monotonic() - self.marked_at
        return {k: (v - self.marked.get(k, 0.0)) / seconds for k, v in self.totals().items()}


def _shape(path: str) -> str:
    parts = path.split("/")[3:]
    return "".join("/{id}" if p.startswith(("job-", "2")) else f"/{p}" for p in parts)


def start_server(store: str, threads: int) -> tuple[subprocess.Popen, str]:
    acc = Path(sys.executable).parent / "acc"
    server = subprocess.Popen(
        [str(acc), "serve", "--port", "0", "--store", store, "--worker-threads", str(threads)],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "COLUMNS": "200"},
    )
    line = server.stdout.readline()
    match = re.search(r"http://127\.0\.0\.1:\d+", line)
    if not match:
        server.kill()
        raise RuntimeError(f"acc serve did not print its address: {line!r}")
    return server, match[0]


def run_served(
    params: dict, threads: int, browser: bool, screenshot: Path | None = None
) -> tuple[float, list, dict]:
    with tempfile.TemporaryDirectory() as store:
        server, url = start_server(store, threads)
        meter = CpuMeter(server.pid)
        meter.start()
        try:
            with httpx.Client(base_url=url, timeout=30) as client:
                job = client.post("/api/jobs", json={"recipe": RECIPE, "params": params}).json()
                prober = Prober(url, job)
                with _page(url, job, browser) as page:
                    prober.start()
                    _wait_for_training(client, job)
                    meter.mark()
                    while client.get(f"/api/jobs/{job['id']}").json()["status"] in (
                        "queued",
                        "running",
                    ):
                        time.sleep(0.5)
                    meter.stop.set()
                    meter.join()
                    cores = meter.cores()
                    prober.stop.set()
                    prober.join()
                    if page is not None and screenshot:
                        try:
                            _screenshot(page, screenshot)
                        except Exception as exc:  # noqa: BLE001 - the figures still count
                            print(f"screenshot failed: {exc}")
                logs = [
                    json.loads(line[6:])
                    for line in client.get(f"/api/jobs/{job['id']}/events").text.splitlines()
                    if line.startswith("data: ")
                ]
            return (
                steps_per_second([e["message"] for e in logs if e["type"] == "log"]),
                prober.samples,
                cores,
            )
        finally:
            server.terminate()
            server.wait(timeout=30)


def _wait_for_training(client: httpx.Client, job: dict) -> None:
    """Until the worker reports its first training steps (it has loaded torch and the data)."""
    while True:
        series = client.get(f"/api/runs/{job['run_id']}/series").json()
        if any(b["steps_done"] > 0 for b in series["branches"]) or series["status"] != "running":
            return
        time.sleep(0.2)


class _page:
    """The dashboard following the job in headless Chromium (or nothing, without one)."""

    def __init__(self, url: str, job: dict, browser: bool) -> None:
        self.url, self.job, self.enabled = url, job, browser and os.path.exists(CHROMIUM)

    def __enter__(self):
        if not self.enabled:
            return None
        from playwright.sync_api import sync_playwright

        self.playwright = sync_playwright().start()
        self.browser = self.playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = self.browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(f"{self.url}/#run={self.job['run_id']}")
        return page

    def __exit__(self, *exc) -> None:
        if self.enabled:
            self.browser.close()
            self.playwright.stop()


def _screenshot(page, path: Path) -> None:
    page.wait_for_function(
        "document.querySelector('#run-status').textContent === 'completed'", timeout=60_000
    )
    page.wait_for_function(
        "[...document.querySelectorAll('#pictures img')]"
        ".every(i => i.complete && i.naturalWidth > 0)",
        timeout=30_000,
    )
    page.locator("#ckpt-tree button", has_text="gated").first.click()
    page.wait_for_selector("#inspector form")
    page.select_option("#inspector select[name=task]", "EffectiveRankTask")
    page.select_option("#inspector select[name=layer_name]", "encoder.0")
    page.click("#inspector button[type=submit]")
    page.wait_for_selector("#inspector .result table", timeout=60_000)
    path.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(path), full_page=True)
    print(f"screenshot written to {path}")


# --- a CLI run, with and without the page polling it --------------------------------------------


def cli_command(store: str, params: dict, threads: int) -> list[str]:
    acc = Path(sys.executable).parent / "acc"
    return [
        str(acc), "run", RECIPE, "--steps", str(params["steps"]),
        "--seeds", ",".join(map(str, params["seeds"])), "--eval-every", str(params["eval_every"]),
        "--threads", str(threads), "--store", store,
    ]  # fmt: skip


def store_speed(store: str) -> float:
    """Steps per second of the run's branches (their steps over their wall time)."""
    from acc.store import Store

    with closing(Store(store)) as s:
        run = s.list_runs()[0]
        branches = s.branches(run["id"])
    if run["status"] != "completed":
        raise RuntimeError(f"the CLI run ended {run['status']}")
    return sum(b["steps_done"] for b in branches) / sum(
        b["finished_at"] - b["started_at"] for b in branches
    )


def run_cli(params: dict, threads: int, page: bool, browser: bool) -> tuple[float, dict]:
    """One ``acc run`` to completion; with ``page``: ``acc serve`` on the same store and the
    page open on the run from its first step. Returns (steps/s, cores used while training)."""
    with tempfile.TemporaryDirectory() as store:
        server, url, cores = None, None, {}
        if page:
            server, url = start_server(store, threads)
        cli = subprocess.Popen(cli_command(store, params, threads), stdout=subprocess.DEVNULL)
        try:
            run_id = _first_run(store)
            meter = CpuMeter(server.pid if server else -1, cli.pid)
            meter.start()
            with _page(url, {"run_id": run_id}, page and browser) as tab:
                if tab is not None:  # the page follows the run by polling the store
                    tab.wait_for_function(POLLING)
                meter.mark()
                if cli.wait(timeout=3600):
                    raise RuntimeError(f"acc run exited {cli.returncode}")
                meter.stop.set()
                meter.join()
                cores = meter.cores()
            return store_speed(store), cores
        finally:
            cli.kill()
            if server is not None:
                server.terminate()
                server.wait(timeout=30)


def _first_run(store: str, known: frozenset[str] = frozenset(), timeout: float = 120) -> str:
    """The id of the run the CLI opened (one not in ``known``), once a branch of it trains."""
    from acc.store import Store

    deadline = time.time() + timeout
    while time.time() < deadline:
        if (Path(store) / "acc.sqlite").exists():
            try:
                with closing(Store(store)) as s:
                    for run in s.list_runs():
                        if run["id"] not in known and any(
                            b["steps_done"] > 0 for b in s.branches(run["id"])
                        ):
                            return run["id"]
            except Exception:  # noqa: BLE001 - the store is still being created
                pass
        time.sleep(0.2)
    raise RuntimeError("the CLI run did not start training")


def bench_cli(params: dict, threads: int, repeats: int, browser: bool) -> None:
    alone, watched = [], []
    for _ in range(repeats):
        alone.append(run_cli(params, threads, page=False, browser=browser)[0])
        print(f"  cli alone           {alone[-1]:8.1f} steps/s")
        speed, cpu = run_cli(params, threads, page=True, browser=browser)
        watched.append(speed)
        print(
            f"  cli + serve + page  {speed:8.1f} steps/s   (cores used while training: "
            + ", ".join(f"{k} {v:.2f}" for k, v in sorted(cpu.items()))
            + ")"
        )
    ratio = statistics.median(watched) / statistics.median(alone)
    print(
        f"\nCLI run: alone {statistics.median(alone):.1f} steps/s, with the page polling it "
        f"{statistics.median(watched):.1f} steps/s, ratio {ratio:.3f} (target >= 0.95)"
    )


# --- many runs compared -------------------------------------------------------------------------


def bench_compare(n_runs: int, params: dict, threads: int, seconds: float = 30) -> None:
    """``n_runs`` runs in the comparison view, one of them training (a CLI process)."""
    from playwright.sync_api import sync_playwright

    from acc.runner import create_run, execute_run
    from acc.store import Store

    small = {"steps": 200, "seeds": [1, 2], "eval_every": 50}
    with tempfile.TemporaryDirectory() as store:
        started = time.perf_counter()
        with closing(Store(store)) as s:
            finished = []
            for i in range(n_runs - 1):
                run_id = create_run(s, RECIPE, {**small, "temperature": 0.5 + i / 10}, "cpu")
                execute_run(s, run_id)
                finished.append(run_id)
        print(f"  {n_runs - 1} finished runs made in {time.perf_counter() - started:.0f} s")
        server, url = start_server(store, threads)
        cli = subprocess.Popen(cli_command(store, params, threads), stdout=subprocess.DEVNULL)
        try:
            live = _first_run(store, frozenset(finished))
            ids = [*finished, live]
            meter = CpuMeter(server.pid, cli.pid)
            meter.start()
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
                tab = browser.new_page(viewport={"width": 1400, "height": 1000})
                tab.goto(f"{url}/#compare={','.join(ids)}")
                columns = 1 + 2 * n_runs  # the metric names and a column per run x condition
                tab.wait_for_function(
                    f"document.querySelectorAll('#compare-table thead th').length === {columns}"
                    " && document.querySelectorAll('#compare-metrics .plot .main-svg').length > 0",
                    timeout=120_000,
                )
                drawn = tab.evaluate("performance.now()") / 1000
                traces = tab.evaluate(
                    "[...document.querySelectorAll('#compare-view .plot')]"
                    ".reduce((n, d) => n + d.data.length, 0)"
                )
                meter.mark()
                time.sleep(seconds)
                cores = meter.cores()
                browser.close()
            meter.stop.set()
            print(
                f"  {n_runs} runs compared: every chart drawn {drawn:.1f} s after the page opened "
                f"({traces} traces); while one of them trains, for {seconds:.0f} s: "
                + ", ".join(f"{k} {v:.2f} cores" for k, v in sorted(cores.items()))
            )
        finally:
            cli.kill()
            server.terminate()
            server.wait(timeout=30)


# --- report ------------------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--eval-every", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument(
        "--threads",
        type=int,
        default=max(1, (os.cpu_count() or 2) - 1),
        help="torch threads for training (the server's worker default)",
    )
    parser.add_argument("--no-browser", action="store_true", help="no real page, API only")
    parser.add_argument("--screenshot", type=Path, help="save the page after the last run")
    parser.add_argument("--mode", choices=["job", "cli", "compare", "all"], default="job")
    parser.add_argument("--compare-runs", type=int, default=20)
    args = parser.parse_args()
    params = {"steps": args.steps, "seeds": args.seeds, "eval_every": args.eval_every}
    browser = not args.no_browser and os.path.exists(CHROMIUM)
    print(
        f"{RECIPE} {params}, torch threads {args.threads}, {os.cpu_count()} CPUs, "
        f"page in Chromium: {browser}"
    )
    if args.mode in ("cli", "all"):
        bench_cli(params, args.threads, args.repeats, browser)
    if args.mode in ("compare", "all"):
        bench_compare(args.compare_runs, params, args.threads)
    if args.mode in ("job", "all"):
        bench_job(args, params, browser)


def bench_job(args, params: dict, browser: bool) -> None:

    plain, served, samples = [], [], []
    for i in range(args.repeats):
        plain.append(run_plain(params, args.threads))
        print(f"  plain   {plain[-1]:8.1f} steps/s")
        last = i == args.repeats - 1
        speed, lat, cpu = run_served(
            params, args.threads, browser, args.screenshot if last else None
        )
        served.append(speed)
        samples += lat
        print(
            f"  served  {served[-1]:8.1f} steps/s   ({len(lat)} API requests; cores used "
            "while training: " + ", ".join(f"{k} {v:.2f}" for k, v in sorted(cpu.items())) + ")"
        )

    ratio = statistics.median(served) / statistics.median(plain)
    ms = [s * 1000 for _, s in samples]
    print(
        f"\ntraining: plain {statistics.median(plain):.1f} steps/s, served + page "
        f"{statistics.median(served):.1f} steps/s, ratio {ratio:.3f} (target >= 0.95)"
    )
    print(
        f"API while training: {len(ms)} requests, p50 {percentile(ms, 50):.1f} ms, "
        f"p95 {percentile(ms, 95):.1f} ms, p99 {percentile(ms, 99):.1f} ms, "
        f"max {max(ms):.1f} ms (target p95 < 50 ms)"
    )
    for name in sorted({n for n, _ in samples}):
        values = [s * 1000 for n, s in samples if n == name]
        print(f"  {name:<28} p95 {percentile(values, 95):6.1f} ms  (n={len(values)})")


if __name__ == "__main__":
    main()

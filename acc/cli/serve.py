"""``acc serve``: the dashboard."""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Annotated

import typer

from acc.cli.common import (
    GpusPerBranchOption,
    RayAddressOption,
    StoreOption,
    app,
    console,
    fail,
    open_store,
)


@app.command()
def serve(
    host: Annotated[
        str,
        typer.Option(
            help="address to listen on (0.0.0.0 exposes it to the network: only on a trusted one)"
        ),
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="port (0 = any free port)")] = 8000,
    store: StoreOption = None,
    max_jobs: Annotated[int, typer.Option(min=1, help="jobs trained at the same time")] = 1,
    workers: Annotated[
        int, typer.Option(min=1, help="branches of a job trained at the same time")
    ] = 1,
    executor: Annotated[str, typer.Option(help="process or ray")] = "process",
    ray_address: RayAddressOption = None,
    gpus_per_branch: GpusPerBranchOption = 0.0,
    worker_threads: Annotated[
        int | None,
        typer.Option(
            min=1, help="torch threads per branch worker [default: (CPU cores - 1) / workers]"
        ),
    ] = None,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda, for jobs")] = "auto",
    data_dir: Annotated[
        Path | None,
        typer.Option(envvar="ACC_DATA_DIR", help="MNIST IDX files instead of the bundled MNIST"),
    ] = None,
    allowed_host: Annotated[
        list[str] | None,
        typer.Option(help="another host name the server answers to (repeatable)"),
    ] = None,
    token: Annotated[
        str | None,
        typer.Option(
            envvar="ACC_TOKEN",
            help="required from every client [default off loopback: generated and printed]",
        ),
    ] = None,
) -> None:
    """Start the dashboard: run recipes, watch them live, compare conditions."""
    from acc.server import create_app
    from acc.server.guard import is_loopback, names_of_this_machine
    from acc.server.lease import StoreBusy, StoreLease
    from acc.server.serving import bind, serve_forever, url_of

    hosts = [host, *(allowed_host or [])]
    if not is_loopback(host):
        hosts += names_of_this_machine() if host in ("0.0.0.0", "::") else []
        token = token or secrets.token_urlsafe(16)
    root = open_store(store).root
    try:
        StoreLease(root).check_free()  # a second server on one store would steal its jobs
        application = create_app(
            root,
            max_concurrent=max_jobs,
            worker_threads=worker_threads,
            device=device,
            data_dir=str(data_dir) if data_dir else None,
            executor=executor,
            workers=workers,
            ray_address=ray_address,
            gpus_per_branch=gpus_per_branch,
            allowed_hosts=hosts,
            token=token,
        )
        sock = bind(host, port)
    except (OSError, ValueError, StoreBusy) as exc:
        raise fail(str(exc)) from None
    url = f"{url_of(sock)}/" + (f"?token={token}" if token else "")
    if not is_loopback(host):
        console.print(
            f"[yellow]warning:[/yellow] listening on {host}: anyone who can reach this machine "
            "can reach the dashboard; it asks for the token in the URL below (keep it private)"
        )
    console.print(f"ACC dashboard at [bold]{url}[/bold] · store {root.resolve()}", highlight=False)
    serve_forever(application, sock)

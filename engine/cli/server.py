"""``engine server``: the REST API (and the schedulers) in one process, served by uvicorn."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import click

from . import cli, grace_option, interrupts, state_dir_option


@cli.command()
@click.argument(
    "folders", nargs=-1, type=click.Path(exists=True, file_okay=False, path_type=Path), metavar="[FOLDER]..."
)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind (127.0.0.1: this machine only).")
@click.option("--port", default=8080, show_default=True, type=click.IntRange(0, 65535), help="Port to listen on.")
@click.option("--no-scheduler", is_flag=True, help="Do not run scheduled slots here (another engine serve does).")
@click.option(
    "--workers-runs",
    default=4,
    show_default=True,
    type=click.IntRange(min=1),
    help="Runs started through the API executed at once; more wait for a place.",
)
@grace_option
@state_dir_option
@click.pass_context
def server(
    ctx: click.Context,
    folders: tuple[Path, ...],
    host: str,
    port: int,
    no_scheduler: bool,
    workers_runs: int,
    grace_s: float,
    state_dir: Path | None,
) -> None:
    """Serve the REST API at http://HOST:PORT/api/v1 (docs at /api/docs), run scheduled policies
    and the runs it is asked for. Policies in each FOLDER are file-backed (edit the files).

    Requests need an API token ('engine token create'). [governance] require_approval defaults
    to true here. SIGTERM/SIGINT: stop accepting, let runs finish for --grace-s, exit 0."""
    import uvicorn

    from .. import logs
    from ..config import EngineConfig
    from ..server.app import create_app
    from ..server.context import ServerContext
    from ..workspaces import current_workspace, root_state_dir

    _check_port(host, port)
    root = root_state_dir(state_dir or ctx.obj["state_dir"])
    root.mkdir(parents=True, exist_ok=True)
    logs.configure(root)
    context = ServerContext(
        root=root,
        config=EngineConfig.load(),
        folders=[f.resolve() for f in folders],
        folder_workspace=current_workspace(),
        max_runs=workers_runs,
    )
    app = create_app(context, scheduler=not no_scheduler, grace_s=grace_s)
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=5,
        lifespan="on",
    )
    interrupts.collect_garbage()
    _Server(config).run()


def _check_port(host: str, port: int) -> None:
    """Refuse at once (exit 2) an address that cannot be listened on, before anything starts."""
    import socket

    from ..errors import UsageError

    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise UsageError(f"--host {host!r}: {exc.strerror}") from None
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as exc:
            raise UsageError(
                f"cannot listen on {host}:{port}: {exc.strerror} (another engine server? choose one with --port)"
            ) from None


class _Server:
    """uvicorn's server, except that a SIGTERM/SIGINT that stopped it gracefully exits 0 (uvicorn
    raises the signal again after its shutdown, which would end the process with -15)."""

    def __init__(self, config: Any) -> None:
        import uvicorn

        class Quiet(uvicorn.Server):
            def handle_exit(self, sig: int, frame: Any) -> None:
                from ..logs import get_logger

                get_logger().info("server.signal", signal=signal.Signals(sig).name)
                if self.should_exit and sig == signal.SIGINT:
                    self.force_exit = True
                else:
                    self.should_exit = True

        self.server = Quiet(config)

    def run(self) -> None:
        self.server.run()

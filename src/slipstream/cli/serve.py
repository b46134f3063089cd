"""``slipstream serve``: build the services, bind the socket, serve until interrupted."""

from __future__ import annotations

import contextlib
import gc
import logging
import re
import signal
import socket
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import typer
import uvicorn

from slipstream.auth.keys import ADMIN_PREFIX
from slipstream.config import ConfigError, Settings, load_settings


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(2048)  # accept from now on, so the announced URL works before uvicorn is up
    return sock


SERVING_ON = "Slipstream is serving on"
# What scripts (tests, benchmarks, supervisors of the gateway) match in the announcement below.
URL_LINE = re.compile(rf"{SERVING_ON} (http://\S+)")
ADMIN_TOKEN_LINE = re.compile(rf"^\s+({re.escape(ADMIN_PREFIX)}\S+)\s*$")


def _announce(settings: Settings, url: str, admin_token: str | None) -> None:
    lines = [
        f"{SERVING_ON} {url}",
        f"  OpenAI base URL: {url}/v1",
        f"  data directory: {settings.data_dir}",
    ]
    if admin_token:
        lines += [
            "",
            "Admin token (shown once; store it now, e.g. export SLIPSTREAM_ADMIN_TOKEN=...):",
            f"  {admin_token}",
        ]
    print("\n".join(lines), flush=True)


class DrainingServer(uvicorn.Server):
    """uvicorn, but SIGTERM drains like SIGINT and the process then runs its own shutdown.

    uvicorn re-raises a captured signal once it has stopped serving; for SIGTERM (how systemd,
    Docker and Kubernetes stop a service) that kills the process before ``Services.aclose()``
    writes the last usage rows, stops the runners and removes their socket directory.
    """

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = {sig: signal.signal(sig, self.handle_exit) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


async def run_server(settings: Settings) -> None:
    from slipstream.http.app import create_app
    from slipstream.http.connection_limits import limited_protocol
    from slipstream.services import Services

    sock = _bind(settings.host, settings.port)
    port = sock.getsockname()[1]
    settings = settings.model_copy(update={"port": port})
    services = await Services.start(settings)
    try:
        app = create_app(services)
        config = uvicorn.Config(
            app,
            http=limited_protocol(settings.http),  # header, body, write and concurrency limits
            timeout_keep_alive=settings.http.keep_alive_timeout_s,  # type: ignore[arg-type]
            loop="none",
            lifespan="off",
            access_log=False,
            proxy_headers=False,
            server_header=False,
            log_level=settings.log_level,
            timeout_graceful_shutdown=settings.shutdown_grace_s,
        )
        server = DrainingServer(config)
        # Everything built so far lives as long as the server: keep it out of the collector's
        # scans, so full collections stay short and do not show up as latency spikes.
        gc.collect()
        gc.freeze()
        _announce(settings, settings.base_url, services.first_admin_token)
        await server.serve(sockets=[sock])
    finally:
        await services.aclose()
        sock.close()


def serve_command(
    host: Annotated[str | None, typer.Option(help="interface to listen on")] = None,
    port: Annotated[int | None, typer.Option(help="port to listen on; 0 picks a free one")] = None,
    data_dir: Annotated[Path | None, typer.Option("--data-dir", help="where the database and secret live")] = None,
    config: Annotated[Path | None, typer.Option("--config", help="a YAML or TOML settings/catalog file")] = None,
) -> None:
    """Start the gateway."""
    try:
        settings = load_settings(config, host=host, port=port, data_dir=data_dir)
    except ConfigError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        raise typer.Exit(2) from None
    logging.basicConfig(
        level=settings.log_level.upper(),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    import uvloop

    with contextlib.suppress(KeyboardInterrupt):
        try:
            uvloop.run(run_server(settings))
        except ConfigError as exc:
            print(f"Error: {exc}", file=sys.stderr)
            raise typer.Exit(2) from None
        except OSError as exc:
            print(f"Error: cannot listen on {settings.host}:{settings.port}: {exc.strerror}", file=sys.stderr)
            raise typer.Exit(2) from None


__all__ = ["run_server", "serve_command"]

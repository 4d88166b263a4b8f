"""``conveyor dashboard APP``: serve the web dashboard (the ``dashboard`` extra) with
uvicorn; the app itself is :func:`conveyor.dashboard.create_dashboard`.
"""

from __future__ import annotations

import click

from conveyor.cli import (
    configure_logging,
    import_app,
    log_level_option,
    main,
    missing_database,
    relative_path_hint,
    shown_url,
)
from conveyor.errors import ConveyorError

__all__ = ["dashboard"]


@main.command()
@click.argument("app")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind.")
@click.option("--port", default=8000, show_default=True, type=int)
@click.option(
    "--token",
    envvar="CONVEYOR_DASHBOARD_TOKEN",
    default=None,
    help="Access token (Bearer header or login); prefer the variable CONVEYOR_DASHBOARD_TOKEN.",
)
@click.option(
    "--basic-auth",
    envvar="CONVEYOR_DASHBOARD_BASIC_AUTH",
    default=None,
    metavar="USER:PASSWORD",
    help="HTTP basic auth (or CONVEYOR_DASHBOARD_BASIC_AUTH).",
)
@click.option("--read-only", is_flag=True, help="Hide the actions and refuse them (403).")
@click.option("--root-path", default="", help="URL prefix when served behind a proxy.")
@log_level_option
def dashboard(
    app: str,
    host: str,
    port: int,
    token: str | None,
    basic_auth: str | None,
    read_only: bool,
    root_path: str,
    log_level: str,
) -> None:
    """Serve the web dashboard of APP, and /metrics (docs/dashboard.md). On any address
    but a loopback one it refuses to start without --token or --basic-auth."""
    try:
        import uvicorn

        from conveyor.dashboard import create_dashboard
        from conveyor.dashboard.auth import is_loopback
    except ImportError as exc:
        raise click.ClickException(
            f"the dashboard needs its extra: pip install 'conveyor-tasks[dashboard]' ({exc})"
        ) from None
    loopback = is_loopback(host)
    conveyor = import_app(app)
    missing = missing_database(conveyor)
    if missing is not None:  # it waits for workers to fill it, so it creates it
        click.echo(
            f"warning: {missing} does not exist; the dashboard creates it, empty."
            f"{relative_path_hint(conveyor)}",
            err=True,
        )
    try:
        web = create_dashboard(
            conveyor,
            token=token,
            basic_auth=basic_auth,
            read_only=read_only,
            require_auth=not loopback,
            # an open dashboard on 127.0.0.1 answers only to local names (DNS rebinding)
            allowed_hosts=(
                ["localhost", "127.0.0.1", "::1", host.strip("[]")]
                if loopback and not (token or basic_auth)
                else None
            ),
        )
    except ConveyorError as exc:
        raise click.ClickException(str(exc)) from exc
    configure_logging(log_level)
    shown = f"[{host}]" if ":" in host else host
    auth = "token" if token else "basic auth" if basic_auth else "none (loopback only)"
    click.echo(
        f"dashboard on http://{shown}:{port}{root_path}/ (auth: {auth}) "
        f"for {shown_url(conveyor.settings.broker_url)}",
        err=True,
    )
    uvicorn.run(web, host=host, port=port, root_path=root_path, log_level=log_level.lower())

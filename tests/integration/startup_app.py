"""An app whose worker start-up fails on demand, for the start-up tests (broker from the
env; ``STARTUP_FAILS=config`` raises a ConfigurationError in a startup handler,
``STARTUP_FAILS=bug`` a plain exception from the user's own code)."""

from __future__ import annotations

import os

from conveyor import ConfigurationError, Conveyor

app = Conveyor()


@app.task
async def echo(value: str) -> str:
    return value


@app.on_startup
async def open_resources() -> None:
    failure = os.environ.get("STARTUP_FAILS", "")
    if failure == "config":
        raise ConfigurationError("SMTP_HOST is not set; export it before starting workers")
    if failure == "bug":
        _connect_to_mail_server()


def _connect_to_mail_server() -> None:
    raise RuntimeError("mail server said no")

"""An app for the forking-supervisor tests (broker from the env). Each import appends the
importing process's pid to ``$FORK_APP_IMPORTS``, so a test sees which processes imported
it; ``FORK_APP_THREAD=1`` starts a thread at import, as some libraries do."""

from __future__ import annotations

import asyncio
import os
import threading

from conveyor import Conveyor

_imports = os.environ.get("FORK_APP_IMPORTS")
if _imports:
    with open(_imports, "a") as record:
        record.write(f"{os.getpid()}\n")
if os.environ.get("FORK_APP_THREAD"):
    threading.Thread(target=threading.Event().wait, name="a-library-thread", daemon=True).start()

app = Conveyor()


@app.task
async def whoami() -> int:
    await asyncio.sleep(0.01)  # so that every worker process gets some of them
    return os.getpid()

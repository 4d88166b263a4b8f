"""The API side of taskiq-fastapi's README app: start it, POST /val (which sends the task),
GET /val until the worker's task has stored the value through the Request dependency."""

import time
import uuid

from compat_checks import blocked, check
from fastapi.testclient import TestClient
from test_script import app

ATTEMPTS = 5  # ZeroMQ PUB/SUB drops what is published before the worker's SUB connects


def main() -> None:
    client = None
    with check("app_starts"):
        # GET /val is declared -> str: a key not set yet is a 500, not an exception here
        client = TestClient(app, raise_server_exceptions=False)
        client.__enter__()  # runs the startup events: broker.startup(), the redis pool
    if client is None:
        blocked(["post_endpoint_kicks_task", "task_runs_with_request_dependency"], "app_starts")
        return
    key = f"compat-{uuid.uuid4().hex}"
    stored = None
    with check("post_endpoint_kicks_task"):
        for attempt in range(ATTEMPTS):
            value = f"value-{attempt}"
            response = client.post("/val", json={"key": key, "val": value})
            assert response.status_code == 200, (response.status_code, response.text)
            deadline = time.monotonic() + 3
            while time.monotonic() < deadline:
                got = client.get("/val", params={"key": key})
                if got.status_code == 200:
                    stored = got.json()
                    break
                time.sleep(0.05)  # sleep: the poll interval
            if stored is not None:
                break
    with check("task_runs_with_request_dependency"):
        assert stored is not None and stored.startswith("value-"), f"GET /val gave {stored!r}"
    client.__exit__(None, None, None)


if __name__ == "__main__":
    main()

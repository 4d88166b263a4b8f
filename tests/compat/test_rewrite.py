"""The import rewrite changes import statements of taskiq modules and nothing else."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.compat.rewrite import rewrite_command, rewrite_source, rewrite_tree


@pytest.mark.parametrize(
    ("before", "after"),
    [
        (
            "from taskiq import InMemoryBroker\n",
            "from conveyor.compat.taskiq import InMemoryBroker\n",
        ),
        (
            "from taskiq.abc.middleware import TaskiqMiddleware\n",
            "from conveyor.compat.taskiq.abc.middleware import TaskiqMiddleware\n",
        ),
        (
            "from taskiq_redis import RedisStreamBroker\n",
            "from conveyor.compat.taskiq_redis import RedisStreamBroker\n",
        ),
        ("import taskiq_fastapi\n", "import conveyor.compat.taskiq_fastapi as taskiq_fastapi\n"),
        ("import taskiq as tq\n", "import conveyor.compat.taskiq as tq\n"),
        (
            "import taskiq.api\n",
            "import conveyor.compat.taskiq.api; from conveyor.compat import taskiq\n",
        ),
        ("import os, taskiq\n", "import os, conveyor.compat.taskiq as taskiq\n"),
        (
            "from taskiq import (\n    Context,\n    TaskiqDepends,\n)\n",
            "from conveyor.compat.taskiq import (\n    Context,\n    TaskiqDepends,\n)\n",
        ),
        (
            "def f():\n    from taskiq.compat import model_dump\n",
            "def f():\n    from conveyor.compat.taskiq.compat import model_dump\n",
        ),
    ],
)
def test_imports_are_moved_under_conveyor_compat(before: str, after: str) -> None:
    assert rewrite_source(before) == after


@pytest.mark.parametrize(
    "source",
    [
        "import taskiqx\nfrom taskiq_pipelines import x\n",  # other packages of the family
        "from . import taskiq\nfrom .taskiq import broker\n",  # relative imports
        'doc = """\nfrom taskiq import X\n"""\n# import taskiq\n',  # strings and comments
        "sys.modules['taskiq'] = stub\n",
        "import os\n",
    ],
)
def test_everything_else_is_left_alone(source: str) -> None:
    assert rewrite_source(source) == source


def test_rewritten_code_binds_the_same_names() -> None:
    source = "import taskiq\nimport taskiq.api\nimport taskiq_fastapi\nfrom taskiq import A as B\n"
    bound = {
        name.asname or name.name.split(".")[0]
        for node in ast.parse(rewrite_source(source)).body
        if isinstance(node, ast.Import | ast.ImportFrom)
        for name in node.names
    }
    assert {"taskiq", "taskiq_fastapi", "B"} <= bound


def test_line_numbers_and_non_ascii_text_survive() -> None:
    source = "# é\nx = 'ü'; from taskiq import Y\nimport taskiq_redis\nz = 1\n"
    result = rewrite_source(source)
    assert result.splitlines()[1] == "x = 'ü'; from conveyor.compat.taskiq import Y"
    assert result.splitlines()[3] == "z = 1"


def test_tree_is_copied_and_only_python_files_rewritten(tmp_path: Path) -> None:
    source = tmp_path / "src"
    (source / "pkg").mkdir(parents=True)
    (source / "pkg" / "tkq.py").write_text("from taskiq import InMemoryBroker\n")
    (source / "pkg" / "plain.py").write_text("x = 1\n")
    (source / "README.md").write_text("from taskiq import InMemoryBroker\n")
    changed = rewrite_tree(source, tmp_path / "out")
    assert changed == [tmp_path / "out" / "pkg" / "tkq.py"]
    assert (tmp_path / "out" / "pkg" / "tkq.py").read_text() == (
        "from conveyor.compat.taskiq import InMemoryBroker\n"
    )
    assert (tmp_path / "out" / "README.md").read_text() == "from taskiq import InMemoryBroker\n"


@pytest.mark.parametrize(
    ("before", "after"),
    [
        (
            ["taskiq", "worker", "broker:broker", "-w", "1"],
            ["conveyor", "worker", "broker:broker", "-w", "1"],
        ),
        (
            ["/v/bin/taskiq", "scheduler", "m:scheduler"],
            ["/v/bin/conveyor", "scheduler", "m:scheduler"],
        ),
        (["python", "main.py"], ["python", "main.py"]),
        (["taskiq", "other"], ["taskiq", "other"]),
    ],
)
def test_commands(before: list[str], after: list[str]) -> None:
    assert rewrite_command(before) == after


def test_a_lock_of_a_killed_session_is_taken_at_once_and_a_live_ones_is_not() -> None:
    import subprocess
    import sys
    import uuid

    from tests.compat import harness

    try:
        client = harness._redis()
    except harness.Unavailable as exc:
        from tests.brokers.conftest import service_unavailable

        service_unavailable(str(exc))
    key = f"conveyor-compat:test-lock-{uuid.uuid4().hex}"
    try:
        dead = subprocess.Popen([sys.executable, "-c", "pass"])
        dead.wait()
        host = harness.socket.gethostname()
        client.set(key, f"{host}:{dead.pid}:x", ex=60)  # a session killed mid-run
        assert harness._claim(client, key, "mine")
        assert client.get(key) == b"mine"
        client.set(key, f"{host}:{harness.os.getpid()}:y", ex=60)  # a live session
        assert not harness._claim(client, key, "mine")
    finally:
        client.delete(key)
        client.close()

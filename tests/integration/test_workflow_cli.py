"""`conveyor status` counts workflows by state (in this process, with click's runner)."""

from __future__ import annotations

import asyncio
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

from conveyor.cli import main
from conveyor.cli.status import workflow_line


def test_workflow_line_names_every_state() -> None:
    assert workflow_line({"running": 2, "failed": 1}) == (
        "workflows: 2 running, 0 succeeded, 1 failed, 0 aborted"
    )


def test_status_counts_workflows(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    db = tmp_path / "flows.db"
    (tmp_path / "flows_app.py").write_text(
        textwrap.dedent(
            f"""
            from conveyor import Conveyor

            app = Conveyor("sqlite:///{db}", environ={{}}, log_tasks=False)

            @app.task
            async def double(x: int) -> int:
                return 2 * x

            @app.task
            async def boom(x: int) -> int:
                raise ValueError(x)
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    import flows_app  # type: ignore[import-not-found]

    from conveyor import chain, group

    async def run() -> None:
        app = flows_app.app
        async with app:
            done = await group(flows_app.double.s(1), flows_app.double.s(2)).kiq()
            failed = await chain(flows_app.boom.s(1), flows_app.double.s()).kiq()
            async with app.worker():
                await done.wait_results(timeout=10)
                await failed.wait_result(timeout=10)
            # no worker runs these: one stays running, one is aborted
            await chain(flows_app.double.s(1), flows_app.double.s()).kiq()
            await (await chain(flows_app.double.s(1), flows_app.double.s()).kiq()).abort()

    asyncio.run(run())
    result = CliRunner().invoke(main, ["status", "flows_app:app"])
    assert result.exit_code == 0, result.output
    assert "workflows: 1 running, 1 succeeded, 1 failed, 1 aborted" in result.output


def test_abort_a_workflow_from_the_command_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = tmp_path / "abort.db"
    (tmp_path / "abort_app.py").write_text(
        textwrap.dedent(
            f"""
            from conveyor import Conveyor

            app = Conveyor("sqlite:///{db}", environ={{}}, log_tasks=False)

            @app.task
            async def double(x: int) -> int:
                return 2 * x
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    import abort_app  # type: ignore[import-not-found]

    from conveyor import chain

    async def send() -> str:
        async with abort_app.app:
            handle = await chain(abort_app.double.s(1), abort_app.double.s()).kiq()
            return handle.workflow_id

    workflow_id = asyncio.run(send())
    runner = CliRunner()
    first = runner.invoke(main, ["abort", "--workflow", "abort_app:app", workflow_id])
    assert first.exit_code == 0, first.output
    assert f"{workflow_id}: aborted: 1 of its task(s) stopped" in first.output
    again = runner.invoke(main, ["abort", "--workflow", "abort_app:app", workflow_id])
    assert "aborted: it had already ended, nothing changed" in again.output
    unknown = runner.invoke(main, ["abort", "--workflow", "abort_app:app", "nope"])
    assert unknown.exit_code == 1 and "nope: unknown" in unknown.output

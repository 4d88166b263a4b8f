"""The arguments preview in received events: what the dashboard shows as a task's args,
bounded in length, and off with event_args_preview=0."""

from __future__ import annotations

from conveyor import Conveyor
from conveyor.events import EventLog, TaskReceived, args_preview
from tests.conftest import eventually, fast_app


def test_args_preview_is_bounded_in_length() -> None:
    assert args_preview(["a.png", 1], {"width": [1, 2]}, 100) == "'a.png', 1, width=[1, 2]"
    assert args_preview(["x"], {}, 0) == ""
    # reprlib cuts strings and containers before formatting them, not after
    shown = args_preview(["x" * 5_000_000, list(range(100_000))], {"deep": [[[[[1]]]]]}, 50)
    assert len(shown) == 50 and shown.endswith("...")
    assert args_preview([list(range(100))], {}, 200) == "[0, 1, 2, 3, 4, 5, 6, 7, 8, 9, ...]"


async def test_received_events_carry_the_preview_unless_turned_off() -> None:
    async def run(app: Conveyor) -> list[str]:
        @app.task(name="echo")
        async def echo(text: str, times: int = 1) -> str:
            return text * times

        async with app, app.worker(concurrency=1):
            await (await echo.kiq("hi", times=2)).get(timeout=5)
            log = EventLog.of(app)

            async def received() -> list[TaskReceived]:
                return [e.event for e in await log.recent(50) if isinstance(e.event, TaskReceived)]

            return [e.args for e in await eventually(received, what="a received event")]

    assert await run(fast_app("memory://", events=True)) == ["'hi', times=2"]
    assert await run(fast_app("memory://", events=True, event_args_preview=0)) == [""]

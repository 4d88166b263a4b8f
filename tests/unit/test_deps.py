"""Dependency resolution details: Annotated markers and providers by annotation."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

import pytest

from conveyor import Conveyor, Depends, TaskStatus


def get_name() -> str:
    return "from get_name"


class Mailer:
    def __init__(self, sender: str = "constructed") -> None:
        self.sender = sender


async def test_annotated_depends_is_injected_and_not_an_argument() -> None:
    app = Conveyor("memory://", environ={})

    @app.task
    async def greet(
        user: str,
        name: Annotated[str, "doc", Depends(get_name)],
        mailer: Annotated[Mailer, Depends()],
    ) -> str:
        return f"{user}: {name} via {mailer.sender}"

    assert [p.name for p in greet.spec.arguments] == ["user"]
    assert await greet("ann") == "ann: from get_name via constructed"
    with pytest.raises(TypeError, match="greet"):
        greet.check_arguments(("ann", "extra"), {})


async def test_depends_without_a_callable_prefers_overrides_then_providers() -> None:
    app = Conveyor("memory://", environ={})

    @app.task
    async def sender(mailer: Mailer = Depends()) -> str:
        return mailer.sender

    assert await sender() == "constructed"
    app.dependency_providers[Mailer] = lambda: Mailer("provided")
    assert await sender() == "provided"
    app.dependency_overrides[Mailer] = lambda: Mailer("overridden")
    assert await sender() == "overridden"


async def test_a_dependency_that_catches_the_task_error_still_leaves_it_failed(
    app: Conveyor,
) -> None:
    """A session dependency that rolls back on error and does not re-raise: the task is
    still failed, with its own exception (it used to be SUCCEEDED with None)."""
    rolled_back: list[str] = []

    async def session() -> AsyncIterator[str]:
        try:
            yield "session"
        except Exception as exc:  # the common rollback pattern, swallowing the error
            rolled_back.append(type(exc).__name__)

    @app.task(name="writes")
    async def writes(db: str = Depends(session)) -> str:
        raise ValueError("constraint violated")

    async with app.worker():
        result = await (await writes.kiq()).wait_result(timeout=5)
    assert rolled_back == ["ValueError"]
    assert result.status is TaskStatus.FAILED
    assert result.error is not None and result.error.type == "ValueError"
    with pytest.raises(ValueError, match="constraint violated"):
        await writes()  # a direct call fails the same way

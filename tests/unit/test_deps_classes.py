"""Class dependencies (their __init__ depends on more), generic ones, and direct calls
that pass a dependency themselves, natively and through the taskiq compat layer."""

from __future__ import annotations

from typing import Annotated, Generic, TypeVar

import pytest

from conveyor import Context, Conveyor, Depends
from conveyor.compat.taskiq import InMemoryBroker, TaskiqDepends

T = TypeVar("T")
opened: list[str] = []


async def get_session() -> str:
    opened.append("session")
    return "session-1"


def get_settings() -> dict[str, str]:
    return {"table": "users"}


class UserDAO:
    """A DAO whose constructor depends on two more providers, as apps write them."""

    def __init__(
        self,
        session: Annotated[str, Depends(get_session)],
        settings: dict[str, str] = Depends(get_settings),
    ) -> None:
        self.session = session
        self.table = settings["table"]


class TaskiqDAO:
    def __init__(self, session: Annotated[str, TaskiqDepends(get_session)]) -> None:
        self.session = session


class User:
    def __init__(self) -> None:
        self.kind = "user"


class Repository(Generic[T]):
    """Generic over the model it depends on: ``Repository[User]`` gets a ``User``."""

    def __init__(self, model: T = Depends(), session: str = Depends(get_session)) -> None:
        self.model = model
        self.session = session


async def test_a_class_dependency_gets_its_own_dependencies() -> None:
    app = Conveyor("memory://", environ={})

    @app.task
    async def load(user_id: int, dao: Annotated[UserDAO, Depends()]) -> str:
        return f"{user_id} from {dao.table} via {dao.session}"

    assert [p.name for p in load.spec.arguments] == ["user_id"]
    assert await load(7) == "7 from users via session-1"
    async with app, app.worker():
        assert await (await load.kiq(8)).get(timeout=10) == "8 from users via session-1"


async def test_a_generic_class_dependency_fills_its_type_variables() -> None:
    app = Conveyor("memory://", environ={})

    @app.task
    async def kind(repo: Repository[User] = Depends()) -> str:
        return f"{repo.model.kind} via {repo.session}"

    assert await kind() == "user via session-1"


async def test_taskiq_style_class_and_generic_dependencies() -> None:
    broker = InMemoryBroker()

    @broker.task
    async def both(
        dao: Annotated[TaskiqDAO, TaskiqDepends()],
        repo: Repository[User] = TaskiqDepends(),
    ) -> str:
        return f"{dao.session}/{repo.model.kind}"

    assert await both() == "session-1/user"


async def test_a_direct_call_may_pass_a_dependency_by_position_or_name() -> None:
    app = Conveyor("memory://", environ={})
    opened.clear()

    @app.task
    async def save(item: str, session: str = Depends(get_session)) -> str:
        return f"{item} in {session}"

    assert await save("a", "fake-session") == "a in fake-session"
    assert await save("b", session="named-session") == "b in named-session"
    assert opened == [], "a dependency the caller passed was resolved anyway"
    assert await save("c") == "c in session-1"
    assert opened == ["session"]


async def test_a_direct_call_may_pass_the_context() -> None:
    app = Conveyor("memory://", environ={})

    @app.task
    async def whoami(ctx: Context = Depends()) -> str:
        return ctx.task_id

    ctx = Context(app, "t-1", "whoami", 1, "default", {})
    assert await whoami(ctx) == "t-1"
    assert await whoami(ctx=ctx) == "t-1"
    with pytest.raises(RuntimeError, match="Context is only available inside a task run"):
        await whoami()


def test_a_sync_task_called_directly_with_its_dependency_just_runs() -> None:
    app = Conveyor("memory://", environ={})

    @app.task
    def count(items: list[int], session: str = Depends(get_session)) -> str:
        return f"{len(items)} in {session}"

    assert count([1, 2], "given") == "2 in given"

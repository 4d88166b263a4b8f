"""What a workflow is made of: :class:`Signature` (a task call to make later), and the
three ways to combine them, :func:`chain`, :func:`group` and :func:`chord`.

>>> flow = chain(fetch.s(url), parse.s(), store.s())            # doctest: +SKIP
>>> handle = await flow.kiq()                                    # a WorkflowHandle
>>> g = await group(embed.s(c) for c in chunks).kiq()            # a GroupHandle
>>> vectors = await g.wait_results(timeout=60)                   # in member order
>>> await chord((embed.s(c) for c in chunks), build_index.s()).kiq()

The semantics are Celery's: a chain passes each result as the first argument of the next
call (``.si()`` makes a call that takes none); a chord's callback receives its members'
results as one list, in member order, as its first argument. A group inside a chain
receives the previous result in each of its members, and passes its list of results on.
Building a workflow sends nothing; ``kiq()`` does (``conveyor.workflow.start``).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Generic, TypeVar, overload

if TYPE_CHECKING:
    from conveyor.task import CallOptions, Task, TaskHandle
    from conveyor.workflow.handle import GroupHandle, WorkflowHandle

__all__ = ["Canvas", "Chain", "Chord", "Group", "Signature", "chain", "chord", "group"]

T = TypeVar("T")
U = TypeVar("U")
R = TypeVar("R")
R1 = TypeVar("R1")


class Canvas(Generic[T]):
    """A part of a workflow whose outcome is a ``T``: a :class:`Signature`, a
    :class:`Chain`, a :class:`Group` (a list) or a :class:`Chord`."""

    __slots__ = ()

    def __or__(self, other: Canvas[U]) -> Chain[U]:
        """``a | b`` is ``chain(a, b)``, as in Celery."""
        return Chain((self, other))


class Signature(Canvas[R]):
    """One task call, to make when its turn in a workflow comes: ``task.s(*args)``.

    In a chain it receives the previous result as its first argument, before ``args``;
    made with ``task.si(*args)`` it receives nothing. Its arguments are checked against
    the task when the workflow is sent, as ``kiq`` checks them.
    """

    __slots__ = ("args", "kwargs", "options", "receives", "task")

    def __init__(
        self,
        task: Task[Any, R],
        args: Sequence[Any],
        kwargs: Mapping[str, Any],
        options: CallOptions | None = None,
        *,
        receives: bool = True,
    ) -> None:
        self.task = task
        self.args = tuple(args)
        self.kwargs = dict(kwargs)
        self.options = options
        self.receives = receives

    def __repr__(self) -> str:
        made = "si" if not self.receives else "s"
        shown = [repr(a) for a in self.args] + [f"{k}={v!r}" for k, v in self.kwargs.items()]
        return f"{self.task.name}.{made}({', '.join(shown)})"

    async def kiq(self) -> TaskHandle[R]:
        """Send this call alone, as ``task.kiq(*args, **kwargs)`` would."""
        return await self.task.app.enqueue(self.task, self.args, self.kwargs, self.options)

    enqueue = kiq

    def kiq_sync(self) -> TaskHandle[R]:
        """:meth:`kiq` from synchronous code."""
        return self.task.app.enqueue_sync(self.task, self.args, self.kwargs, self.options)


class Chain(Canvas[R]):
    """Steps run one after the other, each receiving the previous one's result; the
    chain's result is the last step's. It stops at the first step that fails."""

    __slots__ = ("steps",)

    def __init__(self, steps: Iterable[Canvas[Any]]) -> None:
        flat: list[Canvas[Any]] = []
        for step in steps:
            _check_part(step, "chain()")
            flat += step.steps if isinstance(step, Chain) else [step]  # a | b | c: one chain
        if not flat:
            raise ValueError("chain() needs at least one step")
        self.steps: tuple[Canvas[Any], ...] = tuple(flat)

    def __repr__(self) -> str:
        return f"chain({', '.join(map(repr, self.steps))})"

    async def kiq(self) -> WorkflowHandle[R]:
        """Send the workflow: its first step is published now, each next one when the
        step before it succeeds."""
        from conveyor.workflow.start import start

        return await start(self)

    enqueue = kiq

    def kiq_sync(self) -> WorkflowHandle[R]:
        """:meth:`kiq` from synchronous code (a Django view, a script), through the app's
        sync portal."""
        from conveyor.workflow.start import start_sync

        return start_sync(self)


class Group(Canvas[list[R]]):
    """Members run in parallel; the group's result is the list of theirs, in member
    order. The members may come from a generator: the producer sends them in slices,
    never holding them all."""

    __slots__ = ("_members", "_taken")

    def __init__(self, members: Iterable[Canvas[R]]) -> None:
        self._members = members
        self._taken = False

    def __repr__(self) -> str:
        if isinstance(self._members, Sequence):
            return f"group({', '.join(map(repr, self._members))})"
        return "group(<iterator>)"

    def members(self) -> Iterator[Canvas[R]]:
        """The members, checked one by one as they are taken. Members given as an
        iterator can be taken once."""
        if not isinstance(self._members, Sequence | set | frozenset):
            if self._taken:
                raise RuntimeError(
                    "this group's members came from an iterator that was already used; "
                    "build the group again (or from a list) to send it twice"
                )
            self._taken = True
        for member in self._members:
            _check_part(member, "group()")
            yield member

    async def kiq(self) -> GroupHandle[R]:
        """Send the group: every member is published now. ``wait_results`` on the
        handle returns their results in member order."""
        from conveyor.workflow.start import start

        handle = await start(self)
        return handle  # type: ignore[return-value]  # start() makes a GroupHandle for a Group

    enqueue = kiq

    def kiq_sync(self) -> GroupHandle[R]:
        """:meth:`kiq` from synchronous code, through the app's sync portal."""
        from conveyor.workflow.start import start_sync

        handle = start_sync(self)
        return handle  # type: ignore[return-value]  # start() makes a GroupHandle for a Group


class Chord(Canvas[R]):
    """A group, then a callback that receives the members' results as one list, in
    member order, as its first argument. The callback runs once, when the last member
    has finished, and holds no worker slot while it waits.

    A member that fails (dead-lettered) fails the chord: the callback does not run, and
    the workflow's status says which member failed and why. With ``partial=True`` the
    callback runs anyway, and receives every member's :class:`~conveyor.Result` instead
    of its value (``result.is_err``, ``result.error``, ``result.return_value``).
    """

    __slots__ = ("body", "header", "partial")

    def __init__(self, header: Group[Any], body: Canvas[R], *, partial: bool = False) -> None:
        _check_part(body, "chord()")
        self.header = header
        self.body = body
        self.partial = partial

    def __repr__(self) -> str:
        return f"chord({self.header!r}, {self.body!r})"

    async def kiq(self) -> WorkflowHandle[R]:
        """Send the workflow: the members are published now, the callback when the
        last one has finished."""
        from conveyor.workflow.start import start

        return await start(self)

    enqueue = kiq

    def kiq_sync(self) -> WorkflowHandle[R]:
        """:meth:`kiq` from synchronous code, through the app's sync portal."""
        from conveyor.workflow.start import start_sync

        return start_sync(self)


@overload
def chain(a: Canvas[R], /) -> Chain[R]: ...
@overload
def chain(a: Canvas[Any], b: Canvas[R], /) -> Chain[R]: ...
@overload
def chain(a: Canvas[Any], b: Canvas[Any], c: Canvas[R], /) -> Chain[R]: ...
@overload
def chain(a: Canvas[Any], b: Canvas[Any], c: Canvas[Any], d: Canvas[R], /) -> Chain[R]: ...
@overload
def chain(
    a: Canvas[Any], b: Canvas[Any], c: Canvas[Any], d: Canvas[Any], e: Canvas[R], /
) -> Chain[R]: ...
@overload
def chain(*steps: Canvas[Any]) -> Chain[Any]: ...


def chain(*steps: Canvas[Any]) -> Chain[Any]:
    """Steps run one after the other, each receiving the previous step's result as its
    first argument; the result is the last step's.

    >>> await chain(fetch.s(url), parse.s(), store.s()).kiq()     # doctest: +SKIP
    """
    return Chain(steps)


def group(*members: Canvas[R] | Iterable[Canvas[R]]) -> Group[R]:
    """Members run in parallel; the result is their results, in member order. Give the
    members as arguments, or as one iterable (a generator is read in slices, never held
    whole).

    >>> g = await group(embed.s(c) for c in chunks).kiq()          # doctest: +SKIP
    >>> vectors = await g.wait_results(timeout=60)                 # doctest: +SKIP
    """
    if len(members) == 1 and not isinstance(members[0], Canvas):
        return Group(members[0])
    return Group(members)  # type: ignore[arg-type]  # each one is a Canvas (checked when taken)


def chord(
    header: Group[Any] | Iterable[Canvas[Any]], body: Canvas[R], *, partial: bool = False
) -> Chord[R]:
    """Run ``header``'s members in parallel, then ``body`` with their results as one
    list, in member order, as its first argument (see :class:`Chord` for failures and
    ``partial``).

    >>> await chord((embed.s(c) for c in chunks), build_index.s()).kiq()   # doctest: +SKIP
    """
    return Chord(header if isinstance(header, Group) else Group(header), body, partial=partial)


def _check_part(part: object, where: str) -> None:
    if not isinstance(part, Canvas):
        hint = " (a task: use task.s(...) or task.si(...))" if hasattr(part, "kiq") else ""
        raise TypeError(f"{where} takes signatures, chains, groups and chords, got {part!r}{hint}")

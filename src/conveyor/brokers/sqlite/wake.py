"""Cross-process wake-ups through a directory of Unix datagram sockets.

SQLite has no LISTEN/NOTIFY, and polling a file fast enough for millisecond latency burns
CPU. Instead, every process (and event loop) that is waiting binds one datagram socket in
a wake directory next to the database (``<db>.wake/queues/`` for fetchers,
``<db>.wake/results/`` for result waiters). A writer, after its COMMIT, sends one
datagram naming the topics it touched (queue names, or task ids for results) to every
socket there; the waiter's event loop wakes on the readable socket and re-runs its query.

Wake-ups are hints only. A waiter subscribes *before* its last look at the database (so a
commit it did not see is one whose datagram it will get), re-runs the query after every
wake-up, and also polls at a bounded interval, so a lost datagram costs latency, never
correctness. Sockets of dead processes refuse datagrams; the sender then deletes them.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import socket
import sys
import threading
from collections.abc import Iterable, Sequence
from pathlib import Path
from types import TracebackType
from weakref import WeakKeyDictionary

from conveyor.errors import ConfigurationError

__all__ = ["Subscription", "WakeDir"]

_MAX_DATAGRAM = 16 * 1024
# sockaddr_un.sun_path holds 108 bytes including the NUL; longer paths are bound through
# /proc/self/fd/<directory fd>/<name>, which Linux resolves like any other path.
_MAX_SUN_PATH = 107
_PROC_FD = sys.platform.startswith("linux")
# The kernel queues at most net.unix.max_dgram_qlen datagrams per socket (10 by default)
# and refuses the rest. A drain that reads this many may have missed some topics, so it
# wakes every subscriber instead of guessing.
_OVERFLOW = 8
# a catch-all subscription keeps at most this many topics until they are taken
_MAX_RECEIVED = 1000


def _pack(topics: Iterable[str]) -> list[bytes]:
    """NUL-separated topic lists, each datagram at most _MAX_DATAGRAM bytes."""
    datagrams: list[bytes] = []
    chunk: list[bytes] = []
    size = 0
    for topic in sorted(set(topics)):
        encoded = topic.encode("utf-8", "surrogateescape")
        if chunk and size + len(encoded) + 1 > _MAX_DATAGRAM:
            datagrams.append(b"\0".join(chunk))
            chunk, size = [], 0
        chunk.append(encoded)
        size += len(encoded) + 1
    if chunk:
        datagrams.append(b"\0".join(chunk))
    return datagrams


class WakeDir:
    """One wake namespace: a directory of sockets, each owned by a waiting event loop.

    :meth:`open` and :meth:`notify` run on the database thread; :meth:`subscribe` on an
    event loop.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._dirfd: int | None = None
        self._sender: socket.socket | None = None
        self._listeners: WeakKeyDictionary[asyncio.AbstractEventLoop, _Listener] = (
            WeakKeyDictionary()
        )
        self._lock = threading.Lock()

    def open(self) -> None:
        """Create the directory and the sending socket."""
        self.path.mkdir(parents=True, exist_ok=True)
        with self._lock:
            if self._dirfd is None:
                self._dirfd = os.open(self.path, os.O_RDONLY | os.O_DIRECTORY)
            if self._sender is None:
                self._sender = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
                self._sender.setblocking(False)

    def close(self) -> None:
        """Release the directory handle and the sending socket (listeners close themselves)."""
        with self._lock:
            if self._sender is not None:
                self._sender.close()
                self._sender = None
            if self._dirfd is not None:
                os.close(self._dirfd)
                self._dirfd = None

    def address(self, name: str) -> str:
        """The socket address of ``name`` in this directory."""
        full = os.path.join(self.path, name)
        if len(os.fsencode(full)) <= _MAX_SUN_PATH:
            return full
        if self._dirfd is None or not _PROC_FD:
            raise ConfigurationError(
                f"the wake-up directory {self.path} is too long a path for a Unix socket; "
                "use a shorter database path"
            )
        return f"/proc/self/fd/{self._dirfd}/{name}"

    def notify(self, topics: Iterable[str]) -> None:
        """Tell every waiting process that ``topics`` changed. Never blocks, never raises."""
        datagrams = _pack(topics)
        sender, dirfd = self._sender, self._dirfd
        if not datagrams or sender is None or dirfd is None:
            return
        try:
            names = os.listdir(dirfd)
        except OSError:
            return
        for name in names:
            try:
                address = self.address(name)
            except ConfigurationError:
                return
            for datagram in datagrams:
                try:
                    sender.sendto(datagram, address)
                except ConnectionRefusedError:  # its process died without cleaning up
                    with contextlib.suppress(OSError):
                        os.unlink(name, dir_fd=dirfd)
                    break
                except OSError:  # gone meanwhile, or its queue is full (it will wake anyway)
                    break

    def subscribe(self, topics: Sequence[str] | None) -> Subscription:
        """A registration for wake-ups about ``topics`` (None: every topic, collected for
        :meth:`Subscription.take`); use it as a context manager."""
        return Subscription(self, topics)

    def _listener(self, loop: asyncio.AbstractEventLoop) -> _Listener:
        with self._lock:
            listener = self._listeners.get(loop)
            if listener is None:
                listener = self._listeners[loop] = _Listener(self, loop)
            return listener


class Subscription:
    """A waiter's registration: enter it *before* re-checking the database, then wait.

    A plain (not async) context manager on purpose: entering binds the socket at once
    (microseconds), so "subscribed, then looked" holds without any await in between.
    """

    def __init__(self, wake: WakeDir, topics: Sequence[str] | None) -> None:
        self._wake = wake
        self._topics = [t.encode("utf-8", "surrogateescape") for t in topics or ()]
        self._event = asyncio.Event()
        self._listener: _Listener | None = None
        # every topic, when subscribed to all of them; None when subscribed to some
        self.received: set[bytes] | None = None if topics is not None else set()

    def __enter__(self) -> Subscription:
        listener = self._wake._listener(asyncio.get_running_loop())
        if self.received is not None:
            listener.add_catch_all(self)
        else:
            listener.add(self._topics, self._event)
        self._listener = listener
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._listener is not None:
            if self.received is not None:
                self._listener.discard_catch_all(self)
            else:
                self._listener.discard(self._topics, self._event)
            self._listener = None

    def clear(self) -> None:
        """Forget wake-ups received so far; call it right before re-checking."""
        self._event.clear()

    def poke(self) -> None:
        """Wake this subscription's waiter from its own event loop (no datagram)."""
        self._event.set()

    def take(self) -> list[str]:
        """The topics received since the last take (a subscription to every topic), and
        clear the wake-up."""
        self._event.clear()
        if not self.received:
            return []
        taken, self.received = self.received, set()
        return [t.decode("utf-8", "surrogateescape") for t in taken]

    def notice(self, topics: set[bytes]) -> None:
        """Called by the listener: ``topics`` arrived (only for a catch-all subscription).
        At most ``_MAX_RECEIVED`` are kept until taken; a wake-up is a hint anyway."""
        if self.received is not None and len(self.received) < _MAX_RECEIVED:
            self.received.update(topics)
        self._event.set()

    async def wait(self, timeout: float) -> bool:
        """Wait for a wake-up; False after ``timeout`` seconds without one."""
        if self._event.is_set():
            return True
        try:
            async with asyncio.timeout(max(timeout, 0.0)):
                await self._event.wait()
        except TimeoutError:
            return False
        return True


class _Listener:
    """The socket one event loop binds while any of its coroutines waits on the directory."""

    def __init__(self, wake: WakeDir, loop: asyncio.AbstractEventLoop) -> None:
        self._wake = wake
        self._loop = loop
        self._subscribers: dict[bytes, set[asyncio.Event]] = {}
        self._catch_all: set[Subscription] = set()
        self._sock: socket.socket | None = None
        self._path = ""

    def add(self, topics: Sequence[bytes], event: asyncio.Event) -> None:
        if self._sock is None:
            self._bind()
        for topic in topics:
            self._subscribers.setdefault(topic, set()).add(event)

    def discard(self, topics: Sequence[bytes], event: asyncio.Event) -> None:
        for topic in topics:
            events = self._subscribers.get(topic)
            if events is not None:
                events.discard(event)
                if not events:
                    del self._subscribers[topic]
        if not self._subscribers and not self._catch_all:
            self._unbind()

    def add_catch_all(self, subscription: Subscription) -> None:
        if self._sock is None:
            self._bind()
        self._catch_all.add(subscription)

    def discard_catch_all(self, subscription: Subscription) -> None:
        self._catch_all.discard(subscription)
        if not self._subscribers and not self._catch_all:
            self._unbind()

    def _bind(self) -> None:
        name = f"{os.getpid()}-{secrets.token_hex(8)}"
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            sock.setblocking(False)
            sock.bind(self._wake.address(name))
            self._loop.add_reader(sock.fileno(), self._drain)
        except BaseException:
            sock.close()
            with contextlib.suppress(OSError):
                os.unlink(self._wake.path / name)
            raise
        self._sock = sock
        self._path = os.path.join(self._wake.path, name)

    def _unbind(self) -> None:
        sock, self._sock = self._sock, None
        if sock is None:
            return
        if not self._loop.is_closed():
            self._loop.remove_reader(sock.fileno())
        sock.close()
        with contextlib.suppress(OSError):
            os.unlink(self._path)

    def _drain(self) -> None:
        sock = self._sock
        if sock is None:
            return
        topics: set[bytes] = set()
        received = 0
        while True:
            try:
                datagram = sock.recv(65536)
            except OSError:  # BlockingIOError: drained
                break
            received += 1
            topics.update(datagram.split(b"\0"))
        if received >= _OVERFLOW:
            woken = set().union(*self._subscribers.values())
        else:
            woken = set().union(*(self._subscribers.get(t, ()) for t in topics))
        for event in woken:
            event.set()
        topics.discard(b"")
        if received:
            for subscription in self._catch_all:
                subscription.notice(topics)

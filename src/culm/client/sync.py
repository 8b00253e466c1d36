"""``Client``: the blocking face of ``AsyncClient``, sharing its every call.

Each method here is the async one run through anyio's blocking portal, so the two clients
cannot drift apart: same arguments, same results, same errors, same reconnects.
"""

from __future__ import annotations

import functools
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from types import TracebackType
from typing import Any, Concatenate, ParamSpec, Self, TypeVar, cast

import httpx

from culm.client.aio import AsyncClient
from culm.client.people import BlockingPeopleCalls
from culm.client.portal import Portal
from culm.client.schedules import BlockingScheduleCalls

P = ParamSpec("P")
T = TypeVar("T")


def _blocking(
    method: Callable[Concatenate[AsyncClient, P], Awaitable[T]],
) -> Callable[Concatenate[Client, P], T]:
    @functools.wraps(method)
    def call(self: Client, /, *args: P.args, **kwargs: P.kwargs) -> T:
        return self._portal.call(functools.partial(method, self._async, *args, **kwargs))

    return call


def _blocking_iter(
    method: Callable[Concatenate[AsyncClient, P], AsyncIterator[T]],
) -> Callable[Concatenate[Client, P], Iterator[T]]:
    @functools.wraps(method)
    def call(self: Client, /, *args: P.args, **kwargs: P.kwargs) -> Iterator[T]:
        agen = method(self._async, *args, **kwargs)
        return self._portal.iterate(cast(Any, agen))

    return call


class Client(BlockingScheduleCalls, BlockingPeopleCalls):
    """A blocking connection to a culm server. Use as ``with Client() as client``.

    Takes the same arguments as ``AsyncClient`` and has the same methods, blocking;
    ``follow`` and ``follow_session`` are plain iterators.
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        api_key: str | None = None,
        timeout: float = 30.0,
        stream_timeout: float = 60.0,
        retries: int | None = None,
        backoff: float = 0.2,
        max_backoff: float = 2.0,
        reconnect_for: float = 60.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._async = AsyncClient(
            url,
            api_key=api_key,
            timeout=timeout,
            stream_timeout=stream_timeout,
            retries=retries,
            backoff=backoff,
            max_backoff=max_backoff,
            reconnect_for=reconnect_for,
            transport=transport,
        )
        self._portal = Portal()
        self._closed = False
        weakref.finalize(self, self._portal.stop)

    @property
    def url(self) -> str:
        return self._async.url

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the connections and stop the client's thread."""
        if self._closed:
            return
        self._closed = True
        try:
            self._portal.call(self._async.aclose)
        finally:
            self._portal.stop()

    agents = _blocking(AsyncClient.agents)
    create_session = _blocking(AsyncClient.create_session)
    get_session = _blocking(AsyncClient.get_session)
    list_sessions = _blocking(AsyncClient.list_sessions)
    delete_session = _blocking(AsyncClient.delete_session)
    messages = _blocking(AsyncClient.messages)
    start_run = _blocking(AsyncClient.start_run)
    get_run = _blocking(AsyncClient.get_run)
    list_runs = _blocking(AsyncClient.list_runs)
    wait = _blocking(AsyncClient.wait)
    cancel = _blocking(AsyncClient.cancel)
    children = _blocking(AsyncClient.children)
    tree = _blocking(AsyncClient.tree)
    events = _blocking(AsyncClient.events)
    session_events = _blocking(AsyncClient.session_events)
    follow = _blocking_iter(AsyncClient.follow)
    follow_session = _blocking_iter(AsyncClient.follow_session)

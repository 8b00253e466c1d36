"""The contract every bus passes. ``BusContract``: live fan-out inside a process, which
every bus does. ``NoticeContract``: notices between processes, for the buses that reach
other processes; a test module provides ``make_bus`` (a factory of opened buses on one
channel) and ``cut_off`` (drops the server side of a bus's connections)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from culm.bus import Bus, Notice, run_key, session_key
from culm.events import Event

MakeBus = Callable[[], Awaitable[Bus]]
CutOff = Callable[[Bus], Awaitable[None]]


def event(run: str, seq: int, session: str = "s1", pos: int = 0) -> Event:
    return Event(seq, run, session, "x", {"i": seq}, ts=1.0, pos=pos or seq)


class Heard:
    """Notices a bus handed to its handler, and a way to wait for one."""

    def __init__(self, bus: Bus) -> None:
        self.notices: list[Notice] = []
        self._new = asyncio.Event()
        bus.on_notice(self._hear)

    def _hear(self, notice: Notice) -> None:
        self.notices.append(notice)
        self._new.set()

    async def until(self, condition: Callable[[], bool], timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            left = deadline - time.monotonic()
            assert left > 0, f"not heard in time; heard {self.notices}"
            self._new.clear()
            try:
                async with asyncio.timeout(left):
                    await self._new.wait()
            except TimeoutError:
                pass

    @property
    def top(self) -> int:
        return max((n.log for n in self.notices), default=0)

    @property
    def cancels(self) -> set[str]:
        return {r for n in self.notices for r in n.cancel}


class BusContract:
    async def test_published_events_reach_their_run_and_session_subscribers(
        self, make_bus: MakeBus
    ) -> None:
        bus = await make_bus()
        with (
            bus.subscribe((run_key("r1"),), 100) as by_run,
            bus.subscribe((session_key("s2"),), 100) as by_session,
            bus.subscribe((run_key("other"),), 100) as bystander,
        ):
            batch = [event("r1", 1), event("r2", 1, "s2"), event("r1", 2)]
            bus.publish(batch)
            assert await by_run.next(1.0) == [batch[0], batch[2]]
            assert await by_session.next(1.0) == [batch[1]]
            assert await bystander.next(0.05) == []
            assert bus.subscriber_count == 3
        assert bus.subscriber_count == 0

    async def test_a_subscriber_that_falls_behind_is_told_to_read_the_log(
        self, make_bus: MakeBus
    ) -> None:
        bus = await make_bus()
        with bus.subscribe((run_key("r1"),), 3) as sub:
            bus.publish([event("r1", i) for i in range(1, 6)])
            assert sub.lagged
            assert await sub.next(0.1) == []

    async def test_notify_never_waits_and_the_bus_is_healthy(self, make_bus: MakeBus) -> None:
        bus = await make_bus()
        started = time.monotonic()
        for i in range(1, 10_001):
            bus.notify(Notice(log=i))
        assert time.monotonic() - started < 1.0
        assert bus.health() is None


class NoticeContract:
    async def test_a_notice_reaches_the_other_processes_not_its_sender(
        self, make_bus: MakeBus
    ) -> None:
        a, b = await make_bus(), await make_bus()
        heard_a, heard_b = Heard(a), Heard(b)
        a.notify(Notice(log=7, cancel={"run_1"}, work=True))
        await heard_b.until(lambda: heard_b.top == 7 and "run_1" in heard_b.cancels)
        assert any(n.work for n in heard_b.notices)
        b.notify(Notice(log=9))
        await heard_a.until(lambda: heard_a.top == 9)
        assert all(n.log != 7 for n in heard_a.notices)  # its own notice is not handed back

    async def test_notices_are_merged_not_sent_one_per_commit(self, make_bus: MakeBus) -> None:
        a, b = await make_bus(), await make_bus()
        heard = Heard(b)
        for i in range(1, 2_001):
            a.notify(Notice(log=i))
            if i % 100 == 0:
                await asyncio.sleep(0)  # commits come in bursts between awaits
        await heard.until(lambda: heard.top == 2_000)
        assert len(heard.notices) <= 40

    async def test_many_cancels_all_arrive(self, make_bus: MakeBus) -> None:
        a, b = await make_bus(), await make_bus()
        heard = Heard(b)
        wanted = {f"run_{i:04d}" for i in range(450)}
        a.notify(Notice(cancel=set(wanted)))
        await heard.until(lambda: heard.cancels == wanted)

    async def test_after_being_cut_off_it_says_so_and_hears_again(
        self, make_bus: MakeBus, cut_off: CutOff
    ) -> None:
        a, b = await make_bus(), await make_bus()
        heard = Heard(b)
        await cut_off(b)
        await heard.until(lambda: any(n.log < 0 for n in heard.notices))

        async def sent_and_heard() -> bool:
            a.notify(Notice(log=42))
            await asyncio.sleep(0.05)
            return heard.top == 42

        deadline = time.monotonic() + 15
        while not await sent_and_heard():
            assert time.monotonic() < deadline, "the bus never heard again"
        assert b.health() is None

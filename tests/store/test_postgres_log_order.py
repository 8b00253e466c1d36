"""Session streams stay lossless with many writer processes on PostgreSQL.

A follower resumes from the last position it saw (as a client does with Last-Event-ID).
That is only sound if positions are visible in order: if a transaction holding position
11 commits after one holding 12, a follower that read 12 resumes past 11 for ever. Here
several processes write to the same sessions at once while followers read in pages of
random size and reconnect at random; each must see every event of its sessions exactly
once, in order.
"""

from __future__ import annotations

import asyncio
import random
import sys
from collections.abc import AsyncIterator

import pytest

from culm.config import Settings
from culm.events import Event
from culm.store import Store, open_store
from tests.pg import pg_schema
from tests.store.contract import session

WRITERS = 4
RUNS_EACH = 6
BATCHES = 60


@pytest.fixture
async def pg_url() -> AsyncIterator[str]:
    async with pg_schema() as url:
        yield url


async def follow(store: Store, session_ids: list[str], stop: asyncio.Event) -> list[Event]:
    """Read the sessions' stream in random pages, resuming at the last position seen."""
    seen: list[Event] = []
    cursor = 0
    idle_after_stop = 0
    rng = random.Random()
    while idle_after_stop < 2:
        page = await store.read_session_events(session_ids, after=cursor, limit=rng.randint(1, 40))
        if page:
            seen.extend(page)
            cursor = page[-1].pos
        elif stop.is_set():
            idle_after_stop += 1  # one empty read after every writer is done: the end
        else:
            await asyncio.sleep(rng.random() / 200)
    return seen


async def test_followers_resuming_anywhere_see_every_event_once(pg_url: str) -> None:
    store = open_store(Settings(database_url=pg_url))
    await store.open()
    try:
        sessions = [session() for _ in range(3)]
        for s in sessions:
            await store.create_session(s)
        ids = [s.id for s in sessions]
        stop = asyncio.Event()
        followers = [
            asyncio.create_task(follow(store, ids, stop)),
            asyncio.create_task(follow(store, ids[:1], stop)),
            asyncio.create_task(follow(store, ids[1:], stop)),
        ]
        procs = [
            await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "tests.store.log_writer",
                pg_url,
                f"w{i}",
                ",".join(ids),
                str(RUNS_EACH),
                str(BATCHES),
                stdout=asyncio.subprocess.PIPE,
            )
            for i in range(WRITERS)
        ]
        outs = await asyncio.wait_for(asyncio.gather(*(p.communicate() for p in procs)), 90)
        assert [p.returncode for p in procs] == [0] * WRITERS
        assert all(out.strip() == b"done" for out, _ in outs)
        stop.set()
        results = await asyncio.wait_for(asyncio.gather(*followers), 30)

        every = await store.read_session_events(ids, limit=1_000_000)
        assert len(every) > WRITERS * RUNS_EACH * BATCHES // 2
        for seen, wanted in zip(results, [ids, ids[:1], ids[1:]], strict=True):
            expected = [e.pos for e in every if e.session_id in wanted]
            assert [e.pos for e in seen] == expected
        # and each run's own stream is whole: seq 1, 2, 3, ... with no gap
        by_run: dict[str, list[int]] = {}
        for event in every:
            by_run.setdefault(event.run_id, []).append(event.seq)
        assert len(by_run) == WRITERS * RUNS_EACH
        assert all(seqs == list(range(1, len(seqs) + 1)) for seqs in by_run.values())
    finally:
        await store.close()

"""A process that appends to the log of shared sessions as fast as it can.

Run as ``python -m tests.store.log_writer URL NAME SESSIONS RUNS BATCHES``: it starts
``RUNS`` runs spread over the given comma-separated sessions (which must exist) and writes
``BATCHES`` small batches for each, interleaved, through its own store. It prints one line,
``done``, when all is committed.
"""

from __future__ import annotations

import asyncio
import random
import sys

from culm.config import Settings
from culm.events import Event
from culm.models import RunState, Session
from culm.projection import advance
from culm.store import open_store
from culm.store.base import Fence
from tests.store.contract import pending


async def main(url: str, name: str, session_ids: list[str], n_runs: int, batches: int) -> None:
    store = open_store(Settings(database_url=url))
    await store.open()
    try:
        runs = []
        for i in range(n_runs):
            sid = session_ids[i % len(session_ids)]
            ses = Session(id=sid, tenant="t1", created_at=1.0, metadata={})
            run, queued = pending(ses)
            await store.create_run(run, queued, reject_if_busy=False, owner=name, lease_seconds=600)
            runs.append([run, run.state])
        for _ in range(batches):
            batch: list[Event] = []
            states: dict[str, RunState] = {}
            for entry in random.sample(runs, k=max(1, len(runs) // 2)):
                run, state = entry
                for _ in range(random.randint(1, 3)):
                    event = Event(state.last_seq + 1, run.id, run.session_id, "x", {"w": name})
                    state = advance(state, event)
                    batch.append(event)
                entry[1] = states[run.id] = state
            fences = {rid: Fence(name, 0) for rid in states}
            lost = await store.write_batch(batch, states, fences)
            assert not lost, lost
    finally:
        await store.close()
    print("done", flush=True)


if __name__ == "__main__":
    url, name, sessions, n_runs, batches = sys.argv[1:6]
    asyncio.run(main(url, name, sessions.split(","), int(n_runs), int(batches)))

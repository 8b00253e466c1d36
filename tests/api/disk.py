"""A switch that fills the server's disk, for the tests of a full disk over HTTP.

Added to the test server (``tests.api.serve``) when ``TEST_DISK_SWITCH`` is set, never to
culm's own app. ``POST /test/disk/full`` caps the SQLite file at the pages it has now
(SQLite's own ``max_page_count``, set on the writer's one connection): from then on every
write that needs a new page fails with SQLite's "database or disk is full", exactly as on a
full disk. ``POST /test/disk/free`` lifts the cap.
"""

from __future__ import annotations

from fastapi import FastAPI, Request, Response

from culm.store.sql import SqlStore

UNLIMITED = 1_073_741_823


def add_disk_switch(api: FastAPI) -> None:
    @api.post("/test/disk/{state}")
    async def disk(state: str, request: Request) -> Response:
        store = request.app.state.engine.store
        assert isinstance(store, SqlStore) and store._writer is not None
        async with store._writer.connect() as conn:
            if state == "full":
                pages = (await conn.exec_driver_sql("PRAGMA page_count")).scalar_one()
                await conn.exec_driver_sql(f"PRAGMA max_page_count={pages}")
            else:
                await conn.exec_driver_sql(f"PRAGMA max_page_count={UNLIMITED}")
        return Response(status_code=204)

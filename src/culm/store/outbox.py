"""The outbox queries for the SQL store: what the webhook dispatcher reads and writes.

``enqueue`` fills the outbox: one transaction inserts the deliveries of a stretch of the log
and moves the cursor past it with a compare-and-set, so a crash keeps both or neither and
two processes never fill the same stretch twice. ``step`` is the sending side's one write per
round: the outcomes of the attempts that ended since the last round, and the claims of the
next attempts, in one transaction, so deliveries cost the store's writer (which the runs'
group commits share) a few statements per round rather than per delivery.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from culm.events import Event, iso
from culm.store.schema import events, runs, webhook_attempts, webhook_cursor, webhook_deliveries
from culm.store.schema import webhook_endpoints as endpoints
from culm.store.webhook_records import (
    Delivery,
    DeliveryStatus,
    Endpoint,
    LoggedEvent,
    Settled,
    attempt_columns,
    delivery_columns,
    delivery_from_row,
    endpoint_from,
    endpoint_from_row,
)

_CURSOR = "events"


class _CursorMoved(Exception):
    """Another process enqueued this stretch of the log first."""


class OutboxQueries:
    """Mixed into ``WebhookStore``, which provides the store's connections."""

    def _write(self) -> AbstractAsyncContextManager[AsyncConnection]:
        raise NotImplementedError

    def _read(self) -> AbstractAsyncContextManager[AsyncConnection]:
        raise NotImplementedError

    # filling

    async def head(self) -> int:
        """The position of the last event in the log (0 when it is empty)."""
        async with self._read() as conn:
            return await head(conn)

    async def cursor(self) -> int:
        """Every event up to this position has been turned into its deliveries."""
        async with self._read() as conn:
            pos = (
                await conn.execute(
                    sa.select(webhook_cursor.c.pos).where(webhook_cursor.c.name == _CURSOR)
                )
            ).scalar_one_or_none()
        if pos is not None:
            return int(pos)
        async with self._write() as conn:  # a database whose row was removed by hand
            last = await head(conn)
            await conn.execute(
                _insert_ignore(conn, webhook_cursor), [{"name": _CURSOR, "pos": last}]
            )
        return await self.cursor()

    async def any_enabled_endpoint(self) -> bool:
        """Whether any endpoint, a tenant's or a run's, is enabled: with none, the log need
        not be read at all."""
        query = sa.select(sa.exists().where(endpoints.c.enabled))
        async with self._read() as conn:
            return bool((await conn.execute(query)).scalar())

    async def enabled_endpoints(self) -> list[Endpoint]:
        """Every enabled tenant endpoint (runs' own endpoints are looked up by run)."""
        query = endpoints.select().where(endpoints.c.enabled, endpoints.c.run_id.is_(None))
        async with self._read() as conn:
            return [endpoint_from_row(row) for row in (await conn.execute(query)).all()]

    async def run_endpoints(self, run_ids: Sequence[str]) -> list[Endpoint]:
        """The enabled endpoints of these runs."""
        if not run_ids:
            return []
        query = endpoints.select().where(endpoints.c.enabled, endpoints.c.run_id.in_(run_ids))
        async with self._read() as conn:
            return [endpoint_from_row(row) for row in (await conn.execute(query)).all()]

    async def read_log(
        self, after: int, upto: int, exact: Sequence[str], prefixes: Sequence[str]
    ) -> list[LoggedEvent]:
        """Events with ``after < pos <= upto`` whose type is one of ``exact`` or starts with
        one of ``prefixes``, in log order, each with its run's tenant."""
        kinds: list[sa.ColumnElement[bool]] = []
        if exact:
            kinds.append(events.c.type.in_(exact))
        for prefix in prefixes:
            pattern = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            kinds.append(events.c.type.like(pattern + "%", escape="\\"))
        if not kinds:
            return []
        query = (
            sa.select(
                events.c.pos,
                events.c.run_id,
                events.c.seq,
                events.c.session_id,
                events.c.type,
                events.c.ts,
                events.c.data,
                runs.c.parent_run_id,
                runs.c.tenant,
            )
            .select_from(events.join(runs, runs.c.id == events.c.run_id))
            .where(events.c.pos > after, events.c.pos <= upto, sa.or_(*kinds))
            .order_by(events.c.pos)
        )
        async with self._read() as conn:
            rows = (await conn.execute(query)).all()
        return [
            LoggedEvent(
                Event(
                    r.seq,
                    r.run_id,
                    r.session_id,
                    r.type,
                    orjson.loads(r.data),
                    r.ts,
                    r.pos,
                    r.parent_run_id,
                ),
                r.tenant,
            )
            for r in rows
        ]

    async def enqueue(self, was: int, to: int, deliveries: Sequence[Delivery]) -> bool:
        """Insert ``deliveries`` and move the cursor from ``was`` to ``to`` in one
        transaction; False (and nothing written) when the cursor was no longer at ``was``."""
        c = webhook_cursor.c
        try:
            async with self._write() as conn:
                moved = await conn.execute(
                    webhook_cursor.update().where(c.name == _CURSOR, c.pos == was).values(pos=to)
                )
                if moved.rowcount != 1:
                    raise _CursorMoved
                if deliveries:
                    rows = [delivery_columns(d) for d in deliveries]
                    await conn.execute(_insert_ignore(conn, webhook_deliveries), rows)
        except _CursorMoved:
            return False
        return True

    # sending

    async def due(self, now: float, limit: int) -> list[tuple[str, str]]:
        """``(delivery id, endpoint id)`` of pending deliveries whose time has come, to
        enabled endpoints, oldest due first."""
        d = webhook_deliveries.c
        query = (
            sa.select(d.id, d.endpoint_id)
            .select_from(webhook_deliveries.join(endpoints, endpoints.c.id == d.endpoint_id))
            # a literal, so SQLite can use the partial index on pending deliveries
            .where(d.status == sa.literal_column("'pending'"), d.next_attempt_at <= now)
            .where(endpoints.c.enabled)
            .order_by(d.next_attempt_at)
            .limit(limit)
        )
        async with self._read() as conn:
            return [(row.id, row.endpoint_id) for row in (await conn.execute(query)).all()]

    async def step(
        self,
        settled: Sequence[Settled],
        claim: Sequence[str],
        *,
        now: float,
        until: float,
        disable_after: tuple[int, float],
    ) -> tuple[list[tuple[Delivery, Endpoint]], list[Endpoint]]:
        """In one transaction, write the outcomes of ended attempts (disabling endpoints
        whose failure streak has lasted ``disable_after``: attempts, seconds) and claim the
        deliveries ``claim`` that are still due: their next attempt moves to ``until``, so
        no other process (nor this one after a crash) attempts them before then.

        Returns the deliveries claimed, with their endpoints, and the endpoints disabled.
        """
        d = webhook_deliveries.c
        async with self._write() as conn:
            disabled = await _settle(conn, settled, disable_after) if settled else []
            taken: list[str] = []
            if claim:
                result = await conn.execute(
                    webhook_deliveries.update()
                    .where(
                        d.id.in_(claim),
                        d.status == DeliveryStatus.PENDING.value,
                        d.next_attempt_at <= now,
                    )
                    .values(next_attempt_at=until)
                    .returning(d.id)
                )
                taken = list(result.scalars())
        if not taken:
            return [], disabled
        query = (
            sa.select(webhook_deliveries, *[c.label(f"e_{c.name}") for c in endpoints.c])
            .select_from(webhook_deliveries.join(endpoints, endpoints.c.id == d.endpoint_id))
            .where(d.id.in_(taken))
            .order_by(d.next_attempt_at, d.id)
        )
        async with self._read() as conn:
            rows = (await conn.execute(query)).all()
        out = []
        for row in rows:
            mapping = row._mapping
            endpoint = endpoint_from({c.name: mapping[f"e_{c.name}"] for c in endpoints.c})
            out.append((delivery_from_row(row), endpoint))
        return out, disabled

    async def release(self, delivery_ids: Sequence[str], now: float) -> None:
        """Give back claims of attempts that were cut short, due again at ``now``."""
        if not delivery_ids:
            return
        d = webhook_deliveries.c
        async with self._write() as conn:
            await conn.execute(
                webhook_deliveries.update()
                .where(
                    d.id.in_(delivery_ids),
                    d.status == DeliveryStatus.PENDING.value,
                    d.next_attempt_at > now,
                )
                .values(next_attempt_at=now)
            )

    async def purge(self, before: float) -> int:
        """Delete finished deliveries created before ``before`` (with their attempts), and
        runs' endpoints created before then that have nothing pending. Returns how many
        deliveries went."""
        d = webhook_deliveries.c
        old = sa.select(d.id).where(d.created_at < before, d.status != DeliveryStatus.PENDING.value)
        pending = sa.select(d.endpoint_id).where(d.status == DeliveryStatus.PENDING.value)
        async with self._write() as conn:
            await conn.execute(
                webhook_attempts.delete().where(webhook_attempts.c.delivery_id.in_(old))
            )
            gone = (await conn.execute(webhook_deliveries.delete().where(d.id.in_(old)))).rowcount
            stale = (
                (
                    await conn.execute(
                        sa.select(endpoints.c.id).where(
                            endpoints.c.run_id.is_not(None),
                            endpoints.c.created_at < before,
                            endpoints.c.id.not_in(pending),
                        )
                    )
                )
                .scalars()
                .all()
            )
            if stale:
                await delete_endpoints(conn, list(stale))
            return int(gone)


async def _settle(
    conn: AsyncConnection, settled: Sequence[Settled], disable_after: tuple[int, float]
) -> list[Endpoint]:
    """Write outcomes: a few statements for the whole batch, whatever its size."""
    d = webhook_deliveries.c
    e = endpoints.c
    ids = [s.attempt.delivery_id for s in settled]
    known = set((await conn.execute(sa.select(d.id).where(d.id.in_(ids)))).scalars())
    settled = [s for s in settled if s.attempt.delivery_id in known]  # not deleted meanwhile
    if not settled:
        return []
    await conn.execute(
        webhook_deliveries.update()
        .where(d.id == sa.bindparam("delivery_id"))
        .values(
            status=sa.bindparam("new_status"),
            attempts=d.attempts + 1,
            next_attempt_at=sa.bindparam("next_at"),
            last_attempt_at=sa.bindparam("at"),
            last_status_code=sa.bindparam("code"),
            last_error=sa.bindparam("err"),
            delivered_at=sa.bindparam("delivered"),
        ),
        [
            {
                "delivery_id": s.attempt.delivery_id,
                "new_status": s.status.value,
                "next_at": s.next_attempt_at,
                "at": s.attempt.at,
                "code": s.attempt.status_code,
                "err": s.attempt.error,
                "delivered": s.attempt.at if s.status is DeliveryStatus.DELIVERED else None,
            }
            for s in settled
        ],
    )
    await conn.execute(webhook_attempts.insert(), [attempt_columns(s.attempt) for s in settled])
    # each endpoint's failure streak, from its outcomes in the order they came
    streaks: dict[str, list[Settled]] = {}
    for s in sorted(settled, key=lambda s: s.attempt.at):
        streaks.setdefault(s.endpoint_id, []).append(s)
    failing = []
    for endpoint_id, outcomes in streaks.items():
        last_ok = max(
            (i for i, s in enumerate(outcomes) if s.status is DeliveryStatus.DELIVERED),
            default=None,
        )
        failed = outcomes if last_ok is None else outcomes[last_ok + 1 :]
        values: dict[str, Any] = {}
        if last_ok is not None:
            values |= {
                "consecutive_failures": len(failed),
                "failing_since": failed[0].attempt.at if failed else None,
                "last_success_at": outcomes[last_ok].attempt.at,
            }
        elif failed:
            values |= {
                "consecutive_failures": e.consecutive_failures + len(failed),
                "failing_since": sa.func.coalesce(e.failing_since, failed[0].attempt.at),
            }
        if failed:
            values["last_failure_at"] = failed[-1].attempt.at
            failing.append((endpoint_id, failed[-1]))
        await conn.execute(endpoints.update().where(e.id == endpoint_id).values(**values))
    disabled = []
    attempts, seconds = disable_after
    for endpoint_id, last in failing:
        row = (await conn.execute(endpoints.select().where(e.id == endpoint_id))).first()
        if row is None:
            continue
        endpoint = endpoint_from_row(row)
        now = last.attempt.at
        since = endpoint.failing_since if endpoint.failing_since is not None else now
        if not (
            endpoint.enabled
            and endpoint.consecutive_failures >= attempts
            and now - since >= seconds
        ):
            continue
        what = last.attempt.error or f"HTTP {last.attempt.status_code}"
        reason = (
            f"disabled after {endpoint.consecutive_failures} failed attempts in a row "
            f"since {iso(since)} (the last: {what}); enable it to deliver again"
        )
        await conn.execute(
            endpoints.update()
            .where(e.id == endpoint_id)
            .values(enabled=False, disabled_reason=reason, disabled_at=now)
        )
        endpoint.enabled = False
        endpoint.disabled_reason = reason
        endpoint.disabled_at = now
        disabled.append(endpoint)
    return disabled


async def head(conn: AsyncConnection) -> int:
    """The position of the last event in the log, on ``conn``."""
    return int((await conn.execute(sa.select(sa.func.max(events.c.pos)))).scalar_one() or 0)


def _insert_ignore(conn: AsyncConnection, table: sa.Table) -> Any:
    """An insert that skips rows whose key is already there."""
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    return dialect.insert(table).on_conflict_do_nothing()


async def delete_endpoints(conn: AsyncConnection, ids: Sequence[str]) -> None:
    """Delete endpoints with their deliveries and the deliveries' attempts."""
    d = webhook_deliveries.c
    theirs = sa.select(d.id).where(d.endpoint_id.in_(ids))
    await conn.execute(webhook_attempts.delete().where(webhook_attempts.c.delivery_id.in_(theirs)))
    await conn.execute(webhook_deliveries.delete().where(d.endpoint_id.in_(ids)))
    await conn.execute(endpoints.delete().where(endpoints.c.id.in_(ids)))

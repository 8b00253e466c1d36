"""Real processes on PostgreSQL: API processes that execute nothing, two ``culm worker``
processes, SSE clients on an API process. Runs spread over both workers and every client
sees every event once, in order; a worker killed with -9 loses nothing it showed and its
runs end within the lease; a worker sent SIGTERM drains; a run started through one API
process is followed through a second and cancelled through a third."""

from __future__ import annotations

import asyncio
import contextlib
import re
import signal
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from tests.api.helpers import eventually, finished, start
from tests.api.sse import messages
from tests.client.serving import child_env, free_port
from tests.cluster.processes import KILL, ROOT, TERM, cluster, wait_exit


async def stream(client: httpx.AsyncClient, run_id: str) -> list[dict[str, Any]]:
    """Every event of the run's SSE stream, to its end."""
    seen: list[dict[str, Any]] = []
    async with client.stream("GET", f"/v1/runs/{run_id}/events") as response:
        assert response.status_code == 200
        async for message in messages(response):
            if message.comment is None:
                seen.append(message.json())
    return seen


def whole(events: list[dict[str, Any]]) -> None:
    """Seq 1, 2, 3, ... with no gap or repeat, and exactly one terminal event, last."""
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    ends = [e for e in events if e["type"] in TERMINAL]
    assert len(ends) == 1 and ends[0] is events[-1], [e["type"] for e in events[-3:]]


TERMINAL = {"run.completed", "run.failed", "run.cancelled", "run.interrupted"}


async def owners(url: str) -> dict[str | None, int]:
    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch("SELECT worker_id, count(*) AS n FROM runs GROUP BY worker_id")
    finally:
        await conn.close()
    return {row["worker_id"]: row["n"] for row in rows}


LEASE = 2.0
"""The lease of the kill tests' processes, in seconds."""


class TestCluster:
    @pytest.mark.timeout(300)  # 200 runs through four processes on a shared 2-core machine
    async def test_runs_spread_over_workers_and_every_client_sees_every_event(
        self, tmp_path: Path
    ) -> None:
        async with cluster(tmp_path, CULM_ROLE="api") as c:
            api = c.api()
            c.worker(concurrency=50)
            c.worker(concurrency=50)
            gate = asyncio.Semaphore(20)
            async with httpx.AsyncClient(base_url=api.url, timeout=60) as client:

                async def one(i: int) -> list[dict[str, Any]]:
                    async with gate:
                        run = await start(client, "ticker", {"n": 5, "delay": 0.01})
                        return await stream(client, run["id"])

                streams = await asyncio.wait_for(asyncio.gather(*(one(i) for i in range(200))), 240)
            for events in streams:
                whole(events)
                types = ["run.queued", "run.started", *["test.tick"] * 5, "run.completed"]
                assert [e["type"] for e in events] == types
            by_worker = await owners(c.url)
            assert len(by_worker) == 2 and sum(by_worker.values()) == 200, by_worker

    async def test_kill_9_one_worker_and_sigterm_the_other(self, tmp_path: Path) -> None:
        async with cluster(tmp_path, CULM_ROLE="api", CULM_LEASE_SECONDS=str(LEASE)) as c:
            api = c.api()
            doomed = c.worker(concurrency=3)
            drained = c.worker(concurrency=3, CULM_DRAIN_SECONDS="3")
            async with httpx.AsyncClient(base_url=api.url, timeout=60) as client:
                long = [await start(client, "ticker", {"n": 2000, "delay": 0.01}) for _ in range(6)]

                async def both_busy() -> bool:
                    return len(await owners(c.url)) == 2

                await eventually(both_busy, timeout=20)
                followers = [asyncio.create_task(stream(client, r["id"])) for r in long]
                await asyncio.sleep(0.5)  # the followers are attached and receiving
                doomed.signal(KILL)
                killed = time.time()
                dead_runs = {
                    r["id"] for r in long if (await _owner(c.url, r["id"])) != _worker_id(drained)
                }
                for run_id in dead_runs:
                    ended = await finished(client, run_id, timeout=20)
                    assert ended["status"] == "interrupted"
                    # the README: within 1.5 leases of the last renewal, which preceded the
                    # kill (a lease runs out, and every process looks every half lease)
                    late = _epoch(ended["completed_at"]) - killed
                    assert late < 1.5 * LEASE + 0.5, late

                # the other one drains: stops claiming, lets what it runs go on for 3 s
                short = await start(client, "ticker", {"n": 3, "delay": 0.01})
                drained.signal(TERM)
                termed = time.monotonic()
                assert wait_exit(drained, timeout=15) == 0
                # its drain deadline (3 s), then the runs' cancel grace (1 s) at most
                assert 3 <= time.monotonic() - termed < 3 + 1 + 2
                log = drained.log.read_text()
                assert "draining" in log and "stopped" in log
                for r in long:
                    ended = await finished(client, r["id"], timeout=20)
                    assert ended["status"] == "interrupted"
                streams = await asyncio.wait_for(asyncio.gather(*followers), 30)
                for events in streams:
                    whole(events)
                # both workers were full, and then gone: a run queued meanwhile waits
                got = await client.get(f"/v1/runs/{short['id']}")
                assert got.json()["status"] == "pending"

    async def test_runs_handed_back_or_left_by_a_dead_worker_are_resumed_by_another(
        self, tmp_path: Path
    ) -> None:
        """A resumable agent's runs: one worker drains on SIGTERM and hands its runs back
        at its deadline, another is killed with -9; the third resumes them all, and each
        stream shows every step once, one ``run.resumed``, then ``run.completed``."""
        n, gate = 10, tmp_path / "gate"
        async with cluster(tmp_path, CULM_ROLE="api", CULM_LEASE_SECONDS=str(LEASE)) as c:
            api = c.api()
            doomed = c.worker(concurrency=2)
            drained = c.worker(concurrency=2, CULM_DRAIN_SECONDS="1")
            async with httpx.AsyncClient(base_url=api.url, timeout=60) as client:
                agent_input = {"n": n, "delay": 0.02, "gate": str(gate)}
                runs = [await start(client, "stepper", agent_input) for _ in range(4)]
                ids = [r["id"] for r in runs]

                async def all_stepped() -> bool:  # every run waits at the gate
                    got = [await client.get(f"/v1/runs/{i}/events?format=json") for i in ids]
                    return all(len(g.json()["data"]) == 2 + n for g in got)

                await eventually(all_stepped, timeout=30)
                followers = [asyncio.create_task(stream(client, i)) for i in ids]
                survivor = c.worker(concurrency=10)
                first = {await _owner(c.url, i) for i in ids}
                assert first == {_worker_id(doomed), _worker_id(drained)}
                doomed.signal(KILL)
                drained.signal(TERM)
                termed = time.monotonic()
                assert wait_exit(drained, timeout=15) == 0
                # it waited out its drain deadline, then handed its runs back at once
                assert 1 <= time.monotonic() - termed < 4, drained.log.read_text()
                assert "did not end in time" in drained.log.read_text()

                async def all_taken_over() -> bool:
                    return {await _owner(c.url, i) for i in ids} == {_worker_id(survivor)}

                await eventually(all_taken_over, timeout=15)
                gate.touch()
                for run_id in ids:
                    ended = await finished(client, run_id, timeout=30)
                    assert (ended["status"], ended["output"]) == ("completed", 2 * n)
                streams = await asyncio.wait_for(asyncio.gather(*followers), 30)
            for events in streams:
                whole(events)
                steps = [e["data"]["name"] for e in events if e["type"] == "step.completed"]
                assert steps == [f"tick {i}" for i in range(2 * n)]  # each once, in order
                types = [e["type"] for e in events]
                assert types.count("run.resumed") == 1
                resumed = next(e for e in events if e["type"] == "run.resumed")
                assert resumed["data"]["attempt"] == 1
                assert types[-1] == "run.completed"

    async def test_a_cancel_asked_as_its_worker_dies_ends_the_run_cancelled(
        self, tmp_path: Path
    ) -> None:
        """The cancel is stored while the worker's lease still runs (its process is
        stopped: alive, as a worker on another machine that stopped answering looks);
        whoever takes the run over once the lease ends ends it ``cancelled`` as asked,
        neither interrupted nor resumed, with one terminal event."""
        async with cluster(tmp_path, CULM_ROLE="api", CULM_LEASE_SECONDS=str(LEASE)) as c:
            api = c.api()
            doomed = c.worker()
            async with httpx.AsyncClient(base_url=api.url, timeout=60) as client:
                # slow runs: the worker is stopped between two of its transactions, not
                # inside one whose locks would hold everyone else's writes until it dies
                runs = [
                    await start(client, "ticker", {"n": 2000, "delay": 0.5}),
                    await start(client, "stepper", {"n": 2000, "delay": 0.5}),
                ]
                ids = [r["id"] for r in runs]

                async def all_running() -> bool:
                    got = [(await client.get(f"/v1/runs/{i}")).json() for i in ids]
                    return all(g["status"] == "running" for g in got)

                await eventually(all_running, timeout=20)
                followers = [asyncio.create_task(stream(client, i)) for i in ids]
                await asyncio.sleep(0.3)  # the followers are attached
                doomed.signal(signal.SIGSTOP)  # killed at the end, when the cluster stops
                killed = time.time()
                for run_id in ids:
                    asked = await client.post(
                        f"/v1/runs/{run_id}/cancel", json={"reason": "as it died"}
                    )
                    assert asked.status_code == 202
                    assert asked.json()["status"] == "running"  # stored: its lease still runs
                for run_id in ids:
                    ended = await finished(client, run_id, timeout=20)
                    assert ended["status"] == "cancelled", ended
                    late = _epoch(ended["completed_at"]) - killed
                    assert late < 1.5 * LEASE + 0.5, late
                streams = await asyncio.wait_for(asyncio.gather(*followers), 30)
                survivor = c.worker()
                await asyncio.sleep(LEASE)  # a worker arriving later changes nothing
                for run_id, events in zip(ids, streams, strict=True):
                    whole(events)
                    assert events[-1]["type"] == "run.cancelled"
                    assert events[-1]["data"]["reason"] == "as it died"
                    assert "run.resumed" not in [e["type"] for e in events]
                    page = await client.get(f"/v1/runs/{run_id}/events?format=json&after=0")
                    assert [e["seq"] for e in page.json()["data"]] == [e["seq"] for e in events]
                assert survivor.process.poll() is None

    async def test_a_worker_serves_its_metrics_and_health(self, tmp_path: Path) -> None:
        """``--metrics-port``: what this worker claimed and executes, also while it drains."""
        async with cluster(tmp_path, CULM_ROLE="api") as c:
            api = c.api()
            worker = c.worker(4, "--metrics-port", "0", CULM_DRAIN_SECONDS="3")
            found = re.search(r"metrics on (http://\S+)/metrics", worker.log.read_text())
            assert found is not None, worker.log.read_text()
            async with (
                httpx.AsyncClient(base_url=api.url, timeout=30) as client,
                httpx.AsyncClient(base_url=found.group(1), timeout=10) as probe,
            ):
                health = await probe.get("/healthz")
                assert health.json() == {"status": "ok", "database": "ok", "bus": "ok"}
                for i in range(3):
                    await finished(client, (await start(client, "echo", f"#{i}"))["id"])
                held = await start(client, "waiter")
                await eventually(lambda: _running(client, held["id"]), timeout=15)
                samples = _samples((await probe.get("/metrics")).text)
                assert samples["culm_runs_claimed_total"] == 4
                assert samples["culm_executing_runs"] == 1
                assert samples["culm_draining"] == 0
                # run.started and run.completed of each (the API process wrote run.queued)
                assert samples["culm_events_appended_total"] >= 3 * 2 + 1
                worker.signal(TERM)
                await asyncio.sleep(1)  # draining: it still answers
                samples = _samples((await probe.get("/metrics")).text)
                assert (samples["culm_draining"], samples["culm_executing_runs"]) == (1, 1)
                assert (await probe.get("/nope")).status_code == 404
                assert wait_exit(worker, timeout=15) == 0
                with pytest.raises(httpx.TransportError):
                    await probe.get("/healthz")

    async def test_culm_serve_role_api_executes_nothing(self, tmp_path: Path) -> None:
        """The flag itself, on the real command: its runs wait for a worker."""
        async with cluster(tmp_path) as c:
            port = free_port()
            env = child_env(CULM_BUS_URL=c.env["CULM_BUS_URL"], CULM_IDLE_POLL_SECONDS="1")
            command = ["serve", "tests.agents:app", "--role", "api", "--port", str(port)]
            log = tmp_path / "serve.log"
            server = _culm([*command, "--database-url", c.url], env, log)
            try:
                url = f"http://127.0.0.1:{port}"
                async with httpx.AsyncClient(base_url=url, timeout=30) as client:

                    async def healthy() -> bool:
                        assert server.poll() is None, log.read_text()
                        with contextlib.suppress(httpx.TransportError):
                            return (await client.get("/healthz")).status_code == 200
                        return False

                    await eventually(healthy, timeout=30)
                    run = await start(client, "echo", "queued")
                    await asyncio.sleep(1.5)  # past a claim loop's look, had it one
                    assert (await client.get(f"/v1/runs/{run['id']}")).json()["status"] == (
                        "pending"
                    )
                    worker = c.worker()
                    ended = await finished(client, run["id"], timeout=20)
                    assert (ended["status"], ended["output"]) == ("completed", "queued")
                    assert await _owner(c.url, run["id"]) == _worker_id(worker)
            finally:
                server.terminate()
                server.wait(timeout=15)

    @pytest.mark.parametrize("bus", ["postgresql", "redis"])
    async def test_start_on_a_follow_on_b_cancel_on_c(self, tmp_path: Path, bus: str) -> None:
        env = {"CULM_ROLE": "api"}
        if bus == "redis":
            env["CULM_BUS_URL"] = f"redis://127.0.0.1:6379/0?channel={tmp_path.name}"
        async with cluster(tmp_path, **env) as c:
            a, b, third = c.api(), c.api(), c.api()
            c.worker()
            async with (
                httpx.AsyncClient(base_url=a.url, timeout=30) as on_a,
                httpx.AsyncClient(base_url=b.url, timeout=30) as on_b,
                httpx.AsyncClient(base_url=third.url, timeout=30) as on_c,
            ):
                run = await start(on_a, "waiter")
                follower = asyncio.create_task(stream(on_b, run["id"]))

                async def running() -> bool:
                    got = await on_b.get(f"/v1/runs/{run['id']}")
                    return bool(got.json()["status"] == "running")

                await eventually(running, timeout=15)
                asked = time.monotonic()
                response = await on_c.post(
                    f"/v1/runs/{run['id']}/cancel", json={"reason": "from c"}
                )
                assert response.status_code == 202
                ended = await finished(on_a, run["id"], timeout=10)
                latency = time.monotonic() - asked
                assert ended["status"] == "cancelled"
                assert latency < 3, latency  # pushed on the bus, not found by a poll
                events = await asyncio.wait_for(follower, 10)
                whole(events)
                assert events[-1]["type"] == "run.cancelled"
                assert events[-1]["data"]["reason"] == "from c"


async def _owner(url: str, run_id: str) -> str | None:
    conn = await asyncpg.connect(url)
    try:
        owner: str | None = await conn.fetchval("SELECT worker_id FROM runs WHERE id=$1", run_id)
        return owner
    finally:
        await conn.close()


def _epoch(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp()


def _worker_id(worker: Any) -> str:
    line = next(x for x in worker.log.read_text().splitlines() if " ready:" in x)
    return line.split("culm worker: ", 1)[1].split(" ready:", 1)[0]


async def _running(client: httpx.AsyncClient, run_id: str) -> bool:
    return bool((await client.get(f"/v1/runs/{run_id}")).json()["status"] == "running")


def _samples(text: str) -> dict[str, float]:
    """Prometheus text as {name: value} (samples without labels)."""
    found = re.finditer(r"^([a-z_]+) (\S+)$", text, re.MULTILINE)
    return {m.group(1): float(m.group(2)) for m in found}


def _culm(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """``culm ARGS`` in a process of its own, its output to ``log``."""
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "culm.cli", *args],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=ROOT,
        )

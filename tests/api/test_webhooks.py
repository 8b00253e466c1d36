"""Webhooks over a real server and a real receiver: signed deliveries that survive failures,
retries, a killed server, and that never reach where they must not."""

from __future__ import annotations

import os
import signal
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.api.conftest import Server, start_server
from tests.api.helpers import assert_error, eventually, finished, start
from tests.webhooks.receiver import HANG, OK, Answer, Receiver, receiving

TENANTS = 40
KEYS = {f"hook-key-{i}": f"hook-tenant-{i}" for i in range(TENANTS)}
FAST = {
    "CULM_WEBHOOK_ALLOW_PRIVATE": "true",
    "CULM_WEBHOOK_TIMEOUT": "1",
    "CULM_WEBHOOK_RETRY_BASE": "0.1",
    "CULM_WEBHOOK_POLL_SECONDS": "0.1",
    "CULM_WEBHOOK_DISABLE_AFTER_FAILURES": "5",
    "CULM_WEBHOOK_DISABLE_AFTER_SECONDS": "0",
    "CULM_WEBHOOK_MAX_ENDPOINTS": "3",
}
_keys = iter(KEYS)  # one tenant per use: no test sees another's endpoints or runs


@pytest.fixture(scope="module")
def hook_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A server that may deliver to loopback (where the receiver listens), retrying fast."""
    keys = ",".join(f"{key}={tenant}" for key, tenant in KEYS.items())
    running = start_server(tmp_path_factory.mktemp("hooks"), CULM_API_KEYS=keys, **FAST)
    yield running
    running.stop()


@pytest.fixture
async def api(hook_server: Server) -> AsyncIterator[httpx.AsyncClient]:
    """A client of its own tenant, so no test sees another's endpoints or runs."""
    headers = {"Authorization": f"Bearer {next(_keys)}"}
    async with httpx.AsyncClient(base_url=hook_server.url, headers=headers, timeout=30) as http:
        yield http


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    async with receiving() as running:
        yield running


async def create(api: httpx.AsyncClient, url: str, events: list[str], **body: Any) -> Any:
    response = await api.post("/v1/webhooks", json={"url": url, "events": events, **body})
    assert response.status_code == 201, response.text
    return response.json()


async def ledger(api: httpx.AsyncClient, endpoint_id: str) -> list[dict[str, Any]]:
    response = await api.get(f"/v1/webhooks/{endpoint_id}/deliveries")
    assert response.status_code == 200, response.text
    data: list[dict[str, Any]] = response.json()["data"]
    return data


async def delivered(api: httpx.AsyncClient, endpoint_id: str, count: int = 1) -> list[Any]:
    """The endpoint's deliveries once ``count`` of them are delivered."""

    async def check() -> bool:
        found = await ledger(api, endpoint_id)
        return sum(d["status"] == "delivered" for d in found) >= count

    await eventually(check, timeout=20)
    return await ledger(api, endpoint_id)


class TestDelivery:
    async def test_failures_are_retried_with_one_id_and_valid_signatures(
        self, api: httpx.AsyncClient, receiver: Receiver
    ) -> None:
        """A receiver that answers 500, then 429 with Retry-After, then times out, then
        accepts, gets four posts of one event: one webhook-id, each signed (checked by the
        standardwebhooks package), the body the event's JSON; the ledger tells all four."""
        receiver.script("flaky", Answer(500), Answer(429, {"Retry-After": "1"}), HANG, then=OK)
        endpoint = await create(api, receiver.url("flaky"), ["run.completed"])
        receiver.expect("flaky", endpoint["secret"])
        run = await start(api, "echo", "hello")
        await finished(api, run["id"])

        posts = await receiver.wait_for("flaky", 4)
        assert [p.answer for p in posts] == [
            Answer(500),
            Answer(429, {"Retry-After": "1"}),
            HANG,
            OK,
        ]
        assert len({p.id for p in posts}) == 1
        assert all(p.verified for p in posts)
        assert posts[2].at - posts[1].at >= 0.95, "Retry-After: 1 was not honoured"
        body = posts[0].json()
        assert body["type"] == "run.completed" and body["run_id"] == run["id"]
        assert body["data"] == {"output": "hello"}
        assert all(p.body == posts[0].body for p in posts)
        assert all(p.headers["content-type"] == "application/json" for p in posts)

        [delivery] = await delivered(api, endpoint["id"])
        assert delivery["id"] == posts[0].id
        assert delivery["attempts"] == 4 and delivery["last_status_code"] == 200
        detail = (
            await api.get(f"/v1/webhooks/{endpoint['id']}/deliveries/{delivery['id']}")
        ).json()
        log = detail["attempt_log"]
        assert [a["status_code"] for a in log] == [500, 429, None, 200]
        assert "timed out" in log[2]["error"]
        assert log[2]["latency_ms"] >= 900
        assert all(a["latency_ms"] > 0 for a in log)
        assert detail["payload"].encode() == posts[0].body

    async def test_only_the_events_asked_for_are_delivered(
        self, api: httpx.AsyncClient, receiver: Receiver
    ) -> None:
        """An endpoint for ``run.failed`` and ``test.*`` gets the failure and the agent's own
        events, not the completion of another run."""
        endpoint = await create(api, receiver.url("some"), ["run.failed", "test.*"])
        receiver.expect("some", endpoint["secret"])
        ok = await start(api, "echo", "fine")
        await finished(api, ok["id"])
        bad = await start(api, "crash", "boom")
        await finished(api, bad["id"])
        posts = await receiver.wait_for("some", 2)
        assert [(p.json()["type"], p.json()["run_id"]) for p in posts] == [
            ("test.before_crash", bad["id"]),
            ("run.failed", bad["id"]),
        ]
        assert all(p.verified for p in posts)
        assert {d["run_id"] for d in await ledger(api, endpoint["id"])} == {bad["id"]}

    async def test_a_run_of_another_tenant_is_not_delivered(
        self, hook_server: Server, api: httpx.AsyncClient, receiver: Receiver
    ) -> None:
        endpoint = await create(api, receiver.url("mine"), ["run.completed"])
        other_key = next(_keys)
        async with httpx.AsyncClient(
            base_url=hook_server.url, headers={"Authorization": f"Bearer {other_key}"}
        ) as other:
            theirs = await start(other, "echo", "theirs")
            await finished(other, theirs["id"])
            assert_error(await other.get(f"/v1/webhooks/{endpoint['id']}"), 404, "not_found")
        mine = await start(api, "echo", "mine")
        await finished(api, mine["id"])
        [post] = await receiver.wait_for("mine", 1)
        assert post.json()["run_id"] == mine["id"]
        assert [d["run_id"] for d in await delivered(api, endpoint["id"])] == [mine["id"]]


class TestRunWebhook:
    async def test_a_run_posts_its_terminal_event_to_its_own_webhook(
        self, api: httpx.AsyncClient, receiver: Receiver
    ) -> None:
        """``webhook`` on start: the answer holds the endpoint and its secret (this once),
        and the run's end arrives signed with it; the endpoint is not one of the tenant's."""
        response = await api.post(
            "/v1/runs", json={"agent": "echo", "input": "x", "webhook": receiver.url("run")}
        )
        assert response.status_code == 201, response.text
        run = response.json()
        hook = run["webhook"]
        assert hook["run_id"] == run["id"] and hook["secret"].startswith("whsec_")
        receiver.expect("run", hook["secret"])
        [post] = await receiver.wait_for("run", 1)
        assert post.verified
        assert post.json()["type"] == "run.completed" and post.json()["run_id"] == run["id"]
        assert (await api.get("/v1/webhooks")).json()["data"] == []
        got = (await api.get(f"/v1/webhooks/{hook['id']}")).json()
        assert "secret" not in got
        assert (await api.get(f"/v1/runs/{run['id']}")).json().get("webhook") is None

    async def test_a_failed_run_on_a_session_with_a_given_secret(
        self, api: httpx.AsyncClient, receiver: Receiver
    ) -> None:
        session = (await api.post("/v1/sessions", json={})).json()
        secret = "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
        response = await api.post(
            f"/v1/sessions/{session['id']}/runs",
            json={"agent": "crash", "webhook": {"url": receiver.url("s"), "secret": secret}},
        )
        assert response.status_code == 201, response.text
        receiver.expect("s", secret)
        [post] = await receiver.wait_for("s", 1)
        assert post.verified and post.json()["type"] == "run.failed"

    async def test_a_refused_start_leaves_no_webhook_behind(
        self, api: httpx.AsyncClient, receiver: Receiver
    ) -> None:
        response = await api.post(
            "/v1/runs", json={"agent": "echo", "input": 5, "webhook": receiver.url("never")}
        )
        assert_error(response, 422, "invalid_input")
        response = await api.post(
            "/v1/runs", json={"agent": "echo", "input": "x", "webhook": "ftp://example.com/"}
        )
        assert_error(response, 422, "webhook_url_refused")
        assert (await api.get("/v1/runs")).json()["data"] == []


class TestEndpoints:
    async def test_the_secret_is_shown_once(
        self, api: httpx.AsyncClient, receiver: Receiver
    ) -> None:
        secret = "whsec_" + "C2FVsBQIhrscChlQIMV+b5sSYspob7oD"
        endpoint = await create(api, receiver.url("x"), ["run.completed"], secret=secret)
        assert endpoint["secret"] == secret
        generated = await create(api, receiver.url("y"), ["run.*"])
        assert generated["secret"].startswith("whsec_")
        for shown in (
            await api.get(f"/v1/webhooks/{endpoint['id']}"),
            await api.get("/v1/webhooks"),
            await api.post(f"/v1/webhooks/{endpoint['id']}/disable"),
            await api.post(f"/v1/webhooks/{endpoint['id']}/enable"),
        ):
            assert shown.status_code == 200, shown.text
            assert "secret" not in shown.text
            assert secret not in shown.text and generated["secret"] not in shown.text

    async def test_bad_requests_store_nothing(self, api: httpx.AsyncClient) -> None:
        url = "https://1.1.1.1/hook"
        cases = [
            ({"url": url, "events": []}, "invalid_input"),
            ({"url": url, "events": ["run completed"]}, "invalid_input"),
            ({"url": url, "events": ["*"]}, "invalid_input"),
            ({"url": url, "events": ["run.completed"], "secret": "hunter2"}, "invalid_input"),
            (
                {"url": url, "events": ["run.completed"], "secret": "whsec_c2hvcnQ="},
                "invalid_input",
            ),
            ({"url": url, "events": ["run.completed"], "secret": "whsec_!!!"}, "invalid_input"),
            ({"url": "not a url", "events": ["run.completed"]}, "webhook_url_refused"),
            ({"url": "ftp://1.1.1.1/", "events": ["run.completed"]}, "webhook_url_refused"),
            ({"url": "https://u:p@1.1.1.1/", "events": ["run.completed"]}, "webhook_url_refused"),
            (
                {"url": "https://no-such-host.invalid/", "events": ["run.completed"]},
                "webhook_url_refused",
            ),
            ({"url": url, "events": ["run.completed"], "extra": 1}, "invalid_request"),
            ({"url": url * 600, "events": ["run.completed"]}, "invalid_request"),
        ]
        for body, code in cases:
            assert_error(await api.post("/v1/webhooks", json=body), 422, code)
        assert (await api.get("/v1/webhooks")).json()["data"] == []

    async def test_a_tenant_has_a_bounded_number_of_endpoints(
        self, api: httpx.AsyncClient, receiver: Receiver
    ) -> None:
        made = [await create(api, receiver.url(f"n{i}"), ["run.completed"]) for i in range(3)]
        assert_error(
            await api.post(
                "/v1/webhooks", json={"url": receiver.url("n3"), "events": ["run.failed"]}
            ),
            409,
            "conflict",
        )
        listed = (await api.get("/v1/webhooks", params={"limit": 2})).json()
        assert [e["id"] for e in listed["data"]] == [made[2]["id"], made[1]["id"]]
        rest = (await api.get("/v1/webhooks", params={"cursor": listed["next_cursor"]})).json()
        assert [e["id"] for e in rest["data"]] == [made[0]["id"]]
        assert (await api.delete(f"/v1/webhooks/{made[0]['id']}")).status_code == 204
        assert_error(await api.get(f"/v1/webhooks/{made[0]['id']}"), 404, "not_found")
        await create(api, receiver.url("n3"), ["run.failed"])


class TestFailingEndpoints:
    async def test_an_endpoint_that_keeps_failing_is_disabled_and_says_so(
        self, api: httpx.AsyncClient, receiver: Receiver
    ) -> None:
        """Five failed attempts in a row (the threshold here) disable the endpoint, with the
        reason; nothing more is attempted until it is enabled, then the delivery goes on."""
        receiver.script("down", then=Answer(503))
        endpoint = await create(api, receiver.url("down"), ["run.completed"])
        run = await start(api, "echo", "x")
        await finished(api, run["id"])

        async def disabled() -> bool:
            return not (await api.get(f"/v1/webhooks/{endpoint['id']}")).json()["enabled"]

        await eventually(disabled, timeout=20)
        got = (await api.get(f"/v1/webhooks/{endpoint['id']}")).json()
        assert got["consecutive_failures"] == 5
        assert "5 failed attempts in a row" in got["disabled_reason"]
        assert "HTTP 503" in got["disabled_reason"]
        [delivery] = await ledger(api, endpoint["id"])
        assert delivery["status"] == "pending" and delivery["attempts"] == 5
        assert len(receiver.at("down")) == 5

        # redelivery waits for the endpoint to be enabled
        url = f"/v1/webhooks/{endpoint['id']}/deliveries/{delivery['id']}/redeliver"
        assert_error(await api.post(url), 409, "conflict")
        receiver.script("down", then=OK)
        enabled = (await api.post(f"/v1/webhooks/{endpoint['id']}/enable")).json()
        assert enabled["enabled"] and enabled["disabled_reason"] is None
        [delivery] = await delivered(api, endpoint["id"])
        assert delivery["attempts"] == 6
        assert len({p.id for p in receiver.at("down")}) == 1
        assert (await api.get(f"/v1/webhooks/{endpoint['id']}")).json()["consecutive_failures"] == 0

    async def test_an_answer_retrying_cannot_fix_fails_the_delivery_at_once(
        self, api: httpx.AsyncClient, receiver: Receiver
    ) -> None:
        receiver.script("gone", then=Answer(410))
        endpoint = await create(api, receiver.url("gone"), ["run.completed"])
        run = await start(api, "echo", "x")
        await finished(api, run["id"])

        async def failed() -> bool:
            return [d["status"] for d in await ledger(api, endpoint["id"])] == ["failed"]

        await eventually(failed)
        [delivery] = await ledger(api, endpoint["id"])
        assert delivery["attempts"] == 1 and delivery["last_status_code"] == 410
        listed = await api.get(
            f"/v1/webhooks/{endpoint['id']}/deliveries", params={"status": "failed"}
        )
        assert [d["id"] for d in listed.json()["data"]] == [delivery["id"]]

    async def test_redeliver_sends_the_same_message_again(
        self, api: httpx.AsyncClient, receiver: Receiver
    ) -> None:
        endpoint = await create(api, receiver.url("again"), ["run.completed"])
        receiver.expect("again", endpoint["secret"])
        run = await start(api, "echo", "x")
        await finished(api, run["id"])
        [delivery] = await delivered(api, endpoint["id"])
        url = f"/v1/webhooks/{endpoint['id']}/deliveries/{delivery['id']}/redeliver"
        response = await api.post(url)
        assert response.status_code == 202, response.text
        first, second = await receiver.wait_for("again", 2)
        assert first.id == second.id == delivery["id"] and first.body == second.body
        assert second.verified

        async def twice() -> bool:
            found = await ledger(api, endpoint["id"])
            return found[0]["status"] == "delivered" and found[0]["attempts"] == 2

        await eventually(twice)
        missing = f"/v1/webhooks/{endpoint['id']}/deliveries/msg_nope/redeliver"
        assert_error(await api.post(missing), 404, "not_found")


class TestRefusedAddresses:
    """Without ``webhook_allow_private`` a webhook cannot reach the server's own network."""

    @pytest.mark.parametrize(
        "url",
        [
            "http://127.0.0.1:8000/hook",
            "http://localhost/hook",
            "http://[::1]/hook",
            "http://10.1.2.3/hook",
            "http://192.168.0.1/hook",
            "http://172.16.0.1/hook",
            "http://169.254.169.254/latest/meta-data",
            "http://100.64.0.1/hook",
            "http://0.0.0.0/hook",
            "http://[::ffff:127.0.0.1]/hook",
            "http://[fd00::1]/hook",
            "http://[fe80::1]/hook",
        ],
    )
    async def test_loopback_and_private_addresses_are_refused(
        self, client: httpx.AsyncClient, url: str
    ) -> None:
        response = await client.post("/v1/webhooks", json={"url": url, "events": ["run.completed"]})
        error = assert_error(response, 422, "webhook_url_refused")
        assert "not a public address" in error["message"]
        response = await client.post(
            "/v1/runs", json={"agent": "echo", "input": "x", "webhook": url}
        )
        assert_error(response, 422, "webhook_url_refused")
        assert (await client.get("/v1/webhooks")).json()["data"] == []


class TestRestart:
    async def test_an_event_committed_before_a_kill_is_delivered_after_the_restart(
        self, tmp_path: Path, receiver: Receiver
    ) -> None:
        """The server is killed (SIGKILL) after the run's end is in the log but before the
        dispatcher has looked at it; started again on the same database, it delivers it."""
        env = {**FAST, "CULM_WEBHOOK_POLL_SECONDS": "3600"}
        first = start_server(tmp_path, **env)
        try:
            async with httpx.AsyncClient(base_url=first.url, timeout=30) as api:
                endpoint = await create(api, receiver.url("late"), ["run.completed"])
                receiver.expect("late", endpoint["secret"])
                run = await start(api, "echo", "x")
                await finished(api, run["id"])
                assert await ledger(api, endpoint["id"]) == []
        finally:
            kill(first)
        assert receiver.at("late") == []
        second = start_server(tmp_path, **FAST)
        try:
            [post] = await receiver.wait_for("late", 1)
            assert post.verified and post.json()["run_id"] == run["id"]
            async with httpx.AsyncClient(base_url=second.url, timeout=30) as api:
                [delivery] = await delivered(api, endpoint["id"])
                assert delivery["id"] == post.id
        finally:
            second.stop()

    async def test_a_delivery_cut_short_by_a_kill_is_sent_again_with_the_same_id(
        self, tmp_path: Path, receiver: Receiver
    ) -> None:
        """The server is killed while its receiver holds the first attempt open; after the
        restart the attempt's claim lapses and the same webhook-id is posted again."""
        receiver.script("held", HANG, then=OK)
        first = start_server(tmp_path, **{**FAST, "CULM_WEBHOOK_TIMEOUT": "3"})
        try:
            async with httpx.AsyncClient(base_url=first.url, timeout=30) as api:
                endpoint = await create(api, receiver.url("held"), ["run.completed"])
                receiver.expect("held", endpoint["secret"])
                run = await start(api, "echo", "x")
                await finished(api, run["id"])
                [held] = await receiver.wait_for("held", 1)
        finally:
            kill(first)
        second = start_server(tmp_path, **FAST)
        try:
            # the claim lasts the killed server's timeout plus a margin: 8 s here
            _, again = await receiver.wait_for("held", 2, timeout=30)
            assert again.id == held.id and again.body == held.body and again.verified
            async with httpx.AsyncClient(base_url=second.url, timeout=30) as api:
                [delivery] = await delivered(api, endpoint["id"])
                assert delivery["id"] == held.id and delivery["attempts"] == 1
        finally:
            second.stop()

    async def test_a_stop_gives_back_the_attempts_it_cut_short(
        self, tmp_path: Path, receiver: Receiver
    ) -> None:
        """A graceful stop (SIGTERM) during an attempt that could last a minute: the
        restarted server posts the same webhook-id again at once, not after the claim."""
        receiver.script("cut", HANG, then=OK)
        first = start_server(tmp_path, **{**FAST, "CULM_WEBHOOK_TIMEOUT": "60"})
        try:
            async with httpx.AsyncClient(base_url=first.url, timeout=30) as api:
                endpoint = await create(api, receiver.url("cut"), ["run.completed"])
                run = await start(api, "echo", "x")
                await finished(api, run["id"])
                [held] = await receiver.wait_for("cut", 1)
        finally:
            first.stop()
        second = start_server(tmp_path, **FAST)
        try:
            _, again = await receiver.wait_for("cut", 2, timeout=20)
            assert again.id == held.id
            async with httpx.AsyncClient(base_url=second.url, timeout=30) as api:
                [delivery] = await delivered(api, endpoint["id"])
                assert delivery["id"] == held.id
        finally:
            second.stop()


def kill(server: Server) -> None:
    os.kill(server.process.pid, signal.SIGKILL)
    server.process.wait(timeout=10)
    if server.process.stdout is not None:
        server.process.stdout.close()

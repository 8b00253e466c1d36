"""The dashboard in a real browser against a real server: what a person sees and does."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
from playwright.sync_api import Page, Route, expect

from tests.api.conftest import Server
from tests.dashboard.helpers import (
    CACHED_SEQ,
    NEXT_EVENT,
    RECEIVED_ON_LEAVING,
    finished,
    last_seq,
    start,
    until,
)
from tests.dashboard.proxy import proxy

STATIC = Path(__file__).resolve().parents[2] / "src" / "culm" / "dashboard" / "static"


class TestServing:
    """The server ships the page; the page needs nothing from anywhere else."""

    def test_page_at_root_and_files_under_dashboard(self, http: httpx.Client) -> None:
        page = http.get("/")
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
        assert "script-src 'self'" in page.headers["content-security-policy"]
        script = http.get("/dashboard/app.js")
        assert script.status_code == 200
        assert "javascript" in script.headers["content-type"]
        missing = http.get("/dashboard/nothing.js")
        assert missing.status_code == 404
        assert missing.json()["error"]["code"] == "not_found"

    def test_files_are_revalidated_by_etag(self, http: httpx.Client) -> None:
        first = http.get("/dashboard/timeline.js")
        assert first.headers["cache-control"] == "no-cache"
        again = http.get("/dashboard/timeline.js", headers={"If-None-Match": first.headers["etag"]})
        assert again.status_code == 304
        assert again.content == b""

    def test_the_runs_page_modules_are_preloaded(self, http: httpx.Client) -> None:
        # fetched at once instead of discovered import by import; the other pages' modules
        # load when they are first shown
        html = http.get("/").text
        preloaded = set(
            re.findall(r'<link rel="modulepreload" href="dashboard/([a-z]+\.js)">', html)
        )
        needed = {"runs.js"}
        while True:
            more = {
                name
                for module in needed
                for name in re.findall(r'from "\./([a-z]+\.js)";', (STATIC / module).read_text())
            }
            if more <= needed:
                break
            needed |= more
        assert needed <= preloaded, needed - preloaded

    def test_with_keys_the_page_loads_and_the_limits_need_one(
        self, keyed_dash_server: Server
    ) -> None:
        with httpx.Client(base_url=keyed_dash_server.url) as http:
            assert http.get("/").status_code == 200  # it must load to ask for a key
            assert http.get("/dashboard/app.js").status_code == 200
            refused = http.get("/dashboard/api/limits")
            assert refused.status_code == 401
            assert refused.json()["error"]["code"] == "unauthenticated"
            limits = http.get("/dashboard/api/limits", headers={"X-API-Key": "key-b"}).json()
            # where the page's "API docs" link goes once the tab has a key
            assert http.get("/docs", params={"api_key": "key-b"}).status_code == 200
        assert limits["data"]["talker"] == {"max_rounds": 8, "token_budget": 20_000}
        assert limits["data"]["helper"] == {"max_rounds": 4, "token_budget": 20_000}
        assert limits["data"]["echo"] == {"max_rounds": None, "token_budget": None}

    def test_docs_link_to_it(self, http: httpx.Client) -> None:
        description = http.get("/openapi.json").json()["info"]["description"]
        assert "[dashboard](/)" in description

    def test_no_file_loads_anything_from_elsewhere(self) -> None:
        for path in STATIC.iterdir():
            text = re.sub(r'xmlns="[^"]*"', "", path.read_text())  # a name, not a load
            assert not re.search(r"(https?:)?//[a-z0-9.-]+\.[a-z]{2,}/", text), path.name


class TestRunPage:
    """A run's page: start it from the form, watch it live, cancel it, reload it."""

    def test_start_from_the_form_and_watch_events_arrive(
        self, page: Page, dash_server: Server, http: httpx.Client
    ) -> None:
        page.goto(f"{dash_server.url}/#/start")
        page.select_option("#agent", "talker")
        # the form is made from the agent's input schema
        page.get_by_label("topic").fill("rain in Paris")
        page.get_by_label("rounds").fill("2")
        page.get_by_label("words").fill("40")
        page.get_by_label("delay").fill("0.05")
        page.get_by_label("Fail Tool").check()
        expect(page.get_by_label("Mood")).to_be_visible()
        page.click("#start-run")
        page.wait_for_url(re.compile(r"#/runs/run_"))
        run_id = page.url.rsplit("/", 1)[1]
        # the events arrive while the run is running
        expect(page.locator(".run-title .badge")).to_have_text("running", timeout=10_000)
        seen = until(lambda: last_seq(page) > 5 and last_seq(page), what="first events")
        until(lambda: last_seq(page) > seen + 5, what="more events while running")
        assert http.get(f"/v1/runs/{run_id}").json()["status"] == "running"
        expect(page.locator(".section.round").first).to_contain_text("Round 1")
        run = finished(http, run_id)
        expect(page.locator(".run-title .badge")).to_have_text("completed", timeout=10_000)
        until(lambda: last_seq(page) == run["last_seq"], what="every event drawn")
        assert run["input"]["topic"] == "rain in Paris"
        # deltas joined into the round's text, the failed tool call in red
        text = page.locator(".section.round").nth(1).locator(".msg").inner_text()
        assert text.split() == [f"word{i}" if i % 5 != 4 else f"Paris{i}" for i in range(40)]
        failed = page.locator("details.tool.failed")
        expect(failed).to_have_count(1)
        expect(failed).to_contain_text("lookup timed out")
        colour = failed.locator(".tool-name").evaluate("el => getComputedStyle(el).color")
        red, green, blue = map(int, re.findall(r"\d+", colour)[:3])
        assert red > 150 and green < 100 and blue < 100, colour
        # folded: arguments and result show once opened
        done = page.locator("details.tool.done").first
        expect(done.locator("pre")).to_have_count(0)
        done.locator("summary").click()
        expect(done.locator("pre").nth(0)).to_contain_text('"query": "rain in Paris"')
        expect(done.locator("pre").nth(1)).to_contain_text('"found": 1')
        expect(page.locator(".bar-text")).to_contain_text("of 20,000 tokens")

    def test_cancel_with_a_reason_from_the_keyboard(
        self, page: Page, dash_server: Server, http: httpx.Client
    ) -> None:
        run = start(http, "lingerer", {"rounds": 1, "words": 3, "delay": 0})
        page.goto(f"{dash_server.url}/#/runs/{run['id']}")
        expect(page.locator(".run-title .badge")).to_have_text("running", timeout=10_000)
        page.get_by_role("button", name="Cancel…").focus()
        page.keyboard.press("Enter")
        expect(page.locator("dialog.cancel-dialog")).to_be_visible()
        page.keyboard.type("not needed any more")
        page.get_by_role("button", name="Cancel run").focus()
        page.keyboard.press("Enter")
        expect(page.locator(".run-title .badge")).to_have_text("cancelled", timeout=10_000)
        expect(page.locator(".ev.life.cancelled")).to_contain_text("not needed any more")
        expect(page.get_by_role("button", name="Cancel…")).to_be_hidden()
        ended = finished(http, run["id"])
        assert ended["status"] == "cancelled"
        assert "not needed any more" in ended["error"]

    def test_reload_mid_run_resumes_by_seq(
        self, page: Page, dash_server: Server, http: httpx.Client
    ) -> None:
        run = start(http, "talker", {"rounds": 2, "words": 60, "delay": 0.06})
        asked: list[int] = []

        def on_request(request: object) -> None:
            url = getattr(request, "url", "")
            if url.endswith(f"/v1/runs/{run['id']}/events"):
                asked.append(int(getattr(request, "headers", {}).get("last-event-id", "-1")))

        page.on("request", on_request)
        # the last event the page received before it was left (read as it is left)
        page.add_init_script(RECEIVED_ON_LEAVING)
        page.goto(f"{dash_server.url}/#/runs/{run['id']}")
        until(lambda: last_seq(page) >= 20, what="20 events drawn")
        # what the page has drawn is kept in the browser before the reload
        cached = until(
            lambda: (n := page.evaluate(CACHED_SEQ, run["id"])) >= 20 and n, what="cached"
        )
        before = page.locator(".section").first.inner_text()
        assert http.get(f"/v1/runs/{run['id']}").json()["status"] == "running"
        # left the moment an event has come in: it cannot have been written yet
        page.evaluate(NEXT_EVENT)
        page.reload()
        # at once the same timeline, then the stream resumes after what the browser had
        until(lambda: last_seq(page) >= cached, what="the cached timeline drawn again")
        assert page.locator(".section").first.inner_text() == before
        # (a Playwright call in the check lets the request events reach this thread)
        until(lambda: last_seq(page) >= 0 and len(asked) >= 2, what="a second stream")
        received = int(page.evaluate("sessionStorage.getItem('test.received')"))
        assert asked[0] == 0
        # nothing fetched twice: the stream goes on right after the last event received,
        # even one that came in the moment before the reload
        assert asked[1] == received >= cached, (asked, received)
        ended = finished(http, run["id"])
        until(lambda: last_seq(page) == ended["last_seq"], what="every event drawn")
        expect(page.locator(".run-title .badge")).to_have_text("completed")
        seqs = page.eval_on_selector_all(
            "#timeline .block > [data-seq]", "els => els.map(e => e.dataset.seq)"
        )
        rows = [s for s in seqs if s]
        assert len(rows) == len(set(rows)), "an event drawn twice"
        # the same timeline as a browser that saw it all in one go
        reloaded = page.locator("#timeline").inner_text()
        fresh = page.context.browser.new_context()  # type: ignore[union-attr]
        try:
            other = fresh.new_page()
            other.goto(f"{dash_server.url}/#/runs/{run['id']}")
            until(lambda: last_seq(other) == ended["last_seq"], what="fresh page drawn")
            # the timeline draws in frames after the header knows the last seq: wait for it
            until(
                lambda: other.locator("#timeline").inner_text() == reloaded,
                what="the fresh page's timeline equal to the reloaded one",
            )
        finally:
            fresh.close()

    def test_a_restarted_round_strikes_the_discarded_text(
        self, page: Page, dash_server: Server, http: httpx.Client
    ) -> None:
        run = finished(http, start(http, "restarter")["id"])
        page.goto(f"{dash_server.url}/#/runs/{run['id']}")
        until(lambda: last_seq(page) == run["last_seq"], what="every event drawn")
        expect(page.locator("del.discarded")).to_have_text("first attempt text ")
        expect(page.locator(".section.round .msg").last).to_have_text("second attempt ")
        rounds = page.locator(".section.round > summary .title")
        expect(rounds).to_have_text(["Round 1", "Round 1, made again"])
        expect(page.locator(".ev.restarted")).to_contain_text("round.restarted")

    def test_children_link_and_tree(
        self, page: Page, dash_server: Server, http: httpx.Client
    ) -> None:
        run = finished(http, start(http, "talker", {"rounds": 1, "children": 2, "delay": 0})["id"])
        page.goto(f"{dash_server.url}/#/runs/{run['id']}")
        children = page.locator(".ev.child a")
        expect(children).to_have_count(2)
        expect(page.locator(".tree li li")).to_have_count(2)
        expect(page.locator(".ev.child .badge").first).to_have_text("completed")
        children.first.click()
        page.wait_for_url(re.compile(r"#/runs/run_"))
        expect(page.locator(".run-title .agent")).to_have_text("echo")
        expect(page.locator(".run-side")).to_contain_text("Parent")

    def test_failure_in_red_and_start_again(
        self, page: Page, dash_server: Server, http: httpx.Client
    ) -> None:
        run = finished(http, start(http, "crash", "it broke")["id"])
        page.goto(f"{dash_server.url}/#/runs/{run['id']}")
        failed = page.locator(".ev.life.failed")
        expect(failed).to_contain_text("it broke")
        colour = failed.evaluate("el => getComputedStyle(el.querySelector('.type')).color")
        red, green, blue = map(int, re.findall(r"\d+", colour)[:3])
        assert red > 150 and green < 100 and blue < 100, colour
        page.get_by_role("button", name="Start again").click()
        page.wait_for_url(lambda url: run["id"] not in url and "#/runs/run_" in url)
        again = http.get(f"/v1/runs/{page.url.rsplit('/', 1)[1]}").json()
        assert (again["agent"], again["input"]) == ("crash", "it broke")


def give_a_wrong_key(page: Page) -> None:
    """Answer the page's question for a key with one the server refuses."""
    expect(page.locator("#key-dialog")).to_be_visible()
    page.fill("#key-input", "wrong")
    page.keyboard.press("Enter")
    expect(page.locator("#key-note")).to_contain_text("not valid")


class TestTenants:
    """With API keys the page asks for one, keeps it for the tab, and shows only its
    tenant's runs."""

    def test_a_tenant_sees_only_its_own_runs(self, page: Page, keyed_dash_server: Server) -> None:
        url = keyed_dash_server.url
        with (
            httpx.Client(base_url=url, headers={"X-API-Key": "key-a"}) as a,
            httpx.Client(base_url=url, headers={"X-API-Key": "key-b"}) as b,
        ):
            mine = start(a, "echo", "a's run")
            theirs = start(b, "echo", "b's run")
        page.goto(f"{url}/#/runs")
        dialog = page.locator("#key-dialog")
        give_a_wrong_key(page)
        page.fill("#key-input", "key-a")
        page.keyboard.press("Enter")
        expect(dialog).to_be_hidden()
        expect(page.locator(f'tr[data-run-id="{mine["id"]}"]')).to_have_count(1)
        expect(page.locator("#docs-link")).to_have_attribute("href", "docs?api_key=key-a")
        expect(page.locator(f'tr[data-run-id="{theirs["id"]}"]')).to_have_count(0)
        page.goto(f"{url}/#/runs/{mine['id']}")
        expect(page.locator(".run-title .badge")).to_have_text("completed")
        until(lambda: page.evaluate(CACHED_SEQ, mine["id"]) > 0, what="the run kept in the browser")
        page.goto(f"{url}/#/runs/{theirs['id']}")
        expect(page.locator("h1")).to_have_text("Run not found")
        page.reload()  # the key is kept for the tab
        expect(page.locator("h1")).to_have_text("Run not found")
        expect(dialog).to_be_hidden()
        # another tab of the same browser asks again, and another tenant's key does not
        # show the run this browser keeps for the first
        other = page.context.new_page()
        other.goto(f"{url}/#/runs/{mine['id']}")
        expect(other.locator("#key-dialog")).to_be_visible()
        other.fill("#key-input", "key-b")
        other.keyboard.press("Enter")
        expect(other.locator("h1")).to_have_text("Run not found")
        expect(other.locator("#timeline")).to_have_count(0)

    def test_a_refusal_of_an_older_key_does_not_ask_again(
        self, page: Page, keyed_dash_server: Server
    ) -> None:
        # the runs list sent with a wrong key is answered only after the right key was
        # given: the page tries it again with the right key instead of asking once more
        url = keyed_dash_server.url
        with httpx.Client(base_url=url, headers={"X-API-Key": "key-a"}) as a:
            mine = start(a, "echo", "a's run")
        held: list[Route] = []

        def hold_the_wrong_key(route: Route) -> None:
            wrong = route.request.headers.get("authorization") == "Bearer wrong"
            if wrong and not held:
                held.append(route)
            else:
                route.continue_()

        page.route(re.compile(r".*/v1/runs\?.*"), hold_the_wrong_key)
        page.goto(f"{url}/#/runs")
        dialog = page.locator("#key-dialog")
        give_a_wrong_key(page)
        # the route handler runs while Playwright is called, so wait through it
        until(
            lambda: page.wait_for_timeout(50) or held, what="the runs list sent with the wrong key"
        )
        page.fill("#key-input", "key-a")
        page.keyboard.press("Enter")
        expect(dialog).to_be_hidden()
        held[0].continue_()
        expect(page.locator(f'tr[data-run-id="{mine["id"]}"]')).to_have_count(1)
        expect(dialog).to_be_hidden()


class TestSchedules:
    """Schedules: cadence, next fire, counters; pause, resume, trigger; the ledger."""

    def test_trigger_pause_resume_and_the_ledger(
        self, page: Page, dash_server: Server, http: httpx.Client
    ) -> None:
        made = http.post(
            "/v1/schedules",
            json={"agent": "echo", "input": "tick", "every": 3600, "name": "hourly"},
        )
        assert made.status_code == 201, made.text
        schedule = made.json()
        page.goto(f"{dash_server.url}/#/schedules")
        row = page.locator(f'tr[data-schedule-id="{schedule["id"]}"]')
        expect(row).to_contain_text("every 1 h")
        expect(row).to_contain_text(re.compile(r"in (59 min|1 h 0 min)"))
        expect(row.locator(".badge")).to_have_text("active")
        row.get_by_role("button", name="Trigger now").click()
        fired = page.locator(".notice a")
        expect(fired).to_have_text(re.compile("run_"))
        expect(row).to_contain_text("1 started")
        row.get_by_role("button", name="Pause").click()
        expect(row.locator(".badge")).to_have_text("paused")
        row.get_by_role("link", name="hourly").click()
        ledger = page.locator("tbody tr")
        expect(ledger).to_have_count(1)
        expect(ledger.first).to_contain_text("(manual)")
        expect(ledger.first.locator(".badge").last).to_have_text("completed")
        page.get_by_role("button", name="Resume").click()
        expect(page.locator("h1 .badge")).to_have_text("active")
        ledger.first.locator("a").click()
        expect(page.locator(".run-title .agent")).to_have_text("echo")
        expect(page.locator(".run-side")).to_contain_text("Schedule")


class TestSessions:
    """A session's page: its runs and its conversation, tool calls and results folded."""

    def test_conversation_with_tool_calls(
        self, page: Page, dash_server: Server, http: httpx.Client
    ) -> None:
        run = finished(http, start(http, "helper", "Weather in Paris?")["id"])
        assert run["status"] == "completed", run
        page.goto(f"{dash_server.url}/#/sessions")
        page.locator(f'a[href="#/sessions/{run["session_id"]}"]').click()
        expect(page.locator(f'tr[data-run-id="{run["id"]}"] .badge')).to_have_text("completed")
        messages = page.locator(".conversation .message")
        expect(messages).to_have_count(4)  # user, assistant's call, tool result, answer
        expect(messages.nth(0)).to_contain_text("Weather in Paris?")
        call = messages.nth(1).locator("details.tool")
        expect(call).to_contain_text("lookup")
        call.locator("summary").click()
        expect(call.locator("pre")).to_contain_text('"query": "weather in Paris"')
        expect(messages.nth(2)).to_contain_text("found weather in Paris")
        expect(messages.nth(3)).to_contain_text("It is sunny in Paris.")


class TestBrokenConnection:
    """A run page whose connection breaks goes on from the last event it received."""

    def test_the_stream_resumes_after_the_connection_breaks(
        self, page: Page, dash_server: Server, http: httpx.Client
    ) -> None:
        run = start(http, "talker", {"rounds": 2, "words": 60, "delay": 0.05})
        events = f"/v1/runs/{run['id']}/events"
        with proxy(dash_server.url) as network:
            page.goto(f"http://127.0.0.1:{network.port}/#/runs/{run['id']}")
            until(lambda: last_seq(page) >= 10, what="10 events drawn")
            with page.expect_request(
                lambda r: r.url.endswith(events) and r.headers.get("last-event-id") != "0"
            ) as again:
                network.cut()
                seen = last_seq(page)
            resumed = int(again.value.headers["last-event-id"])
            ended = finished(http, run["id"])
            until(lambda: last_seq(page) == ended["last_seq"], what="every event drawn")
        assert seen <= resumed < ended["last_seq"]
        rows = page.eval_on_selector_all(
            "#timeline .block > [data-seq]", "els => els.map(e => e.dataset.seq)"
        )
        assert len(rows) == len(set(rows)), "an event drawn twice"
        text = page.locator(".section.round").nth(1).locator(".msg").inner_text()
        assert text.split() == [f"word{i}" if i % 5 != 4 else f"weather{i}" for i in range(60)]

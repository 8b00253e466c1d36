"""What the runs table and a run page show of runs while they go on: every column, every
filter, the live state at the top of a run page and its tree of children, all without a
reload."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
from playwright.sync_api import Locator, Page, expect

from tests.api.conftest import Server
from tests.dashboard.helpers import finished, start, until

COLUMNS = [
    "Status", "Run", "Agent", "Trigger", "Session", "Round", "Last tool",
    "Last event", "Tokens", "Started", "Ended",
]  # fmt: skip
TIME = re.compile(r"\d")  # a time of day or a date, as the browser's locale writes it
AGO = re.compile(r"^\d+ (s|min) ago$")


def cells(row: Locator) -> dict[str, str]:
    """A runs table row's cells by column name."""
    texts = row.locator("td").all_inner_texts()
    assert len(texts) == len(COLUMNS), texts
    return dict(zip(COLUMNS, (t.strip() for t in texts), strict=True))


def shown(page: Page) -> list[str]:
    """The ids of the runs the table shows, top to bottom."""
    return page.eval_on_selector_all("tr[data-run-id]", "rows => rows.map(r => r.dataset.runId)")


def loaded(page: Page) -> None:
    expect(page.locator("table.runs")).to_have_attribute("data-loaded", "true")


class TestRunsTable:
    """The runs table follows the server without a reload."""

    def test_a_run_started_over_http_appears_and_changes_status(
        self, page: Page, dash_server: Server, http: httpx.Client
    ) -> None:
        page.goto(f"{dash_server.url}/#/runs")
        expect(page.locator("table.runs")).to_have_attribute("data-loaded", "true")
        run = start(http, "waiter")
        row = page.locator(f'tr[data-run-id="{run["id"]}"]')
        expect(row.locator(".badge")).to_have_text("running", timeout=10_000)
        http.post(f"/v1/runs/{run['id']}/cancel", json={"reason": "test"})
        expect(row.locator(".badge")).to_have_text("cancelled", timeout=10_000)

    def test_filters_and_the_stall_flag(
        self, page: Page, dash_server: Server, http: httpx.Client
    ) -> None:
        waiting = start(http, "waiter")
        echoed = finished(http, start(http, "echo", "hi")["id"])
        page.goto(f"{dash_server.url}/#/settings")
        page.get_by_label(re.compile("stalled after")).fill("1")
        page.get_by_role("button", name="Save").click()
        page.goto(f"{dash_server.url}/#/runs?agent=waiter&status=running")
        row = page.locator(f'tr[data-run-id="{waiting["id"]}"]')
        expect(row).to_have_class(re.compile("stalled"), timeout=10_000)
        expect(row.locator(".stall")).to_be_visible()
        expect(page.locator(f'tr[data-run-id="{echoed["id"]}"]')).to_have_count(0)
        assert page.locator("tr[data-run-id]").count() >= 1
        for agent in page.locator("tr[data-run-id] td:nth-child(3)").all_inner_texts():
            assert agent == "waiter"
        http.post(f"/v1/runs/{waiting['id']}/cancel")

    def test_a_queued_run_that_starts_appears_below_the_top_row(
        self, page: Page, dash_server: Server, http: httpx.Client
    ) -> None:
        busy = start(http, "waiter")
        queued = start(http, "waiter", session_id=busy["session_id"], if_busy="enqueue")
        assert queued["status"] == "pending", queued
        newer = start(http, "waiter")  # running, and its id sorts above the queued run's
        page.goto(f"{dash_server.url}/#/runs?agent=waiter&status=running")
        loaded(page)
        expect(page.locator(f'tr[data-run-id="{newer["id"]}"]')).to_have_count(1)
        expect(page.locator(f'tr[data-run-id="{queued["id"]}"]')).to_have_count(0)
        # the busy run ends: the queued one starts, and now belongs in this table
        http.post(f"/v1/runs/{busy['id']}/cancel")
        row = page.locator(f'tr[data-run-id="{queued["id"]}"]')
        expect(row.locator(".badge")).to_have_text("running")
        ids = shown(page)
        assert ids.index(newer["id"]) < ids.index(queued["id"]), "out of order"
        assert ids == sorted(ids, reverse=True)
        for run in (queued, newer):
            http.post(f"/v1/runs/{run['id']}/cancel")


class TestRunsTableColumns:
    """Each row says where a run is: round of max rounds, last tool and its phase, tokens of
    the budget, how long since its last event, when it started and ended."""

    def test_a_finished_and_a_live_run(
        self, page: Page, dash_server: Server, http: httpx.Client
    ) -> None:
        done = finished(http, start(http, "talker", {"rounds": 2, "words": 3, "delay": 0})["id"])
        live = start(http, "lingerer", {"rounds": 1, "words": 3, "delay": 0})
        until(
            lambda: http.get(f"/v1/runs/{live['id']}").json()["last_tool_phase"] == "finished",
            what="the live run's tool call done",
        )
        page.goto(f"{dash_server.url}/#/runs")
        loaded(page)
        ended = cells(page.locator(f'tr[data-run-id="{done["id"]}"]'))
        # each round: 40 tokens and 2 a word (agents.py), of the agents' 20,000 budget
        assert done["usage"]["total_tokens"] == 2 * (40 + 3 * 2)
        assert ended["Status"] == "completed"
        assert ended["Agent"] == "talker"
        assert ended["Trigger"] == "http"
        assert ended["Round"] == "2 / 8"
        assert ended["Last tool"] == "lookup ✓"
        assert ended["Tokens"] == "92 / 20,000"
        assert ended["Last event"] == ""  # an ended run's silence is its "Ended" time
        assert TIME.search(ended["Started"]) and TIME.search(ended["Ended"]), ended
        assert done["session_id"][:10] in ended["Session"]
        row = page.locator(f'tr[data-run-id="{live["id"]}"]')
        running = cells(row)
        assert running["Status"].startswith("running")
        assert running["Agent"] == "lingerer"
        assert running["Round"] == "1 / 8"
        assert running["Last tool"] == "lookup ✓"
        assert running["Tokens"] == "46 / 20,000"
        assert TIME.search(running["Started"]), running
        assert running["Ended"] == ""
        assert AGO.match(running["Last event"]), running
        # the age goes on counting while the run says nothing
        first = int(running["Last event"].split()[0])
        age = row.locator("td.age")
        expect(age).to_have_text(re.compile(rf"^({first + 2}|{first + 3}|{first + 4}) s ago$"))
        http.post(f"/v1/runs/{live['id']}/cancel")
        expect(row.locator(".badge")).to_have_text("cancelled")
        expect(age).to_have_text("")
        expect(row.locator("td").nth(COLUMNS.index("Ended"))).to_have_text(TIME)


class TestRunsTableFilters:
    """The trigger and session filters show only the runs they name."""

    def test_by_trigger(self, page: Page, dash_server: Server, http: httpx.Client) -> None:
        parent = finished(
            http, start(http, "talker", {"rounds": 1, "words": 1, "delay": 0, "children": 2})["id"]
        )
        children = [c["id"] for c in http.get(f"/v1/runs/{parent['id']}/tree").json()["children"]]
        assert len(children) == 2
        page.goto(f"{dash_server.url}/#/runs")
        loaded(page)
        expect(page.locator(f'tr[data-run-id="{parent["id"]}"]')).to_have_count(1)
        page.get_by_label("Trigger").select_option("spawn")
        page.wait_for_url(re.compile(r"#/runs\?trigger=spawn$"))
        loaded(page)
        for child in children:
            expect(page.locator(f'tr[data-run-id="{child}"]')).to_have_count(1)
        expect(page.locator(f'tr[data-run-id="{parent["id"]}"]')).to_have_count(0)
        triggers = page.locator("tr[data-run-id] td:nth-child(4)").all_inner_texts()
        assert triggers and set(triggers) == {"spawn"}, triggers

    def test_by_session(self, page: Page, dash_server: Server, http: httpx.Client) -> None:
        first = finished(http, start(http, "echo", "one")["id"])
        second = finished(http, start(http, "echo", "two", session_id=first["session_id"])["id"])
        elsewhere = finished(http, start(http, "echo", "three")["id"])
        page.goto(f"{dash_server.url}/#/runs")
        loaded(page)
        expect(page.locator(f'tr[data-run-id="{elsewhere["id"]}"]')).to_have_count(1)
        page.get_by_label("Session").fill(first["session_id"])
        page.get_by_label("Session").press("Enter")
        page.wait_for_url(re.compile(rf"session_id={first['session_id']}$"))
        loaded(page)
        expect(page.locator("tr[data-run-id]")).to_have_count(2)
        assert shown(page) == [second["id"], first["id"]]
        expect(page.get_by_label("Session")).to_have_value(first["session_id"])


class TestRunPageLive:
    """A run page's header says where the run is, and its tree of children grows and
    changes, while the page stays open."""

    def test_the_state_line_and_the_tree_of_children(
        self, page: Page, dash_server: Server, http: httpx.Client, gates: Path
    ) -> None:
        talk = {"rounds": 1, "words": 3, "delay": 0, "children": 2, "child": "waiter"}
        run = start(http, "lingerer", {**talk, "gate": f"tree-{id(page)}"})
        page.goto(f"{dash_server.url}/#/runs/{run['id']}")
        state = page.locator(".state-line")
        expect(page.locator(".run-title .badge")).to_have_text("running")
        # its tool call waits at the gate: no child yet
        expect(state).to_contain_text("round 1 of 8 · tool lookup (running) · last event")
        expect(state).to_have_text(re.compile(r"last event \d+ s ago"))
        tree = page.locator(".tree")
        expect(tree).to_contain_text("No child runs.")
        (gates / f"tree-{id(page)}").touch()
        expect(state).to_contain_text("round 1 of 8 · tool lookup (done)")
        children = tree.locator("li li")
        expect(children).to_have_count(2)
        expect(children.locator(".badge")).to_have_text(["running", "running"])
        ids = [c["id"] for c in http.get(f"/v1/runs/{run['id']}/tree").json()["children"]]
        http.post(f"/v1/runs/{ids[0]}/cancel")
        expect(children.locator(".badge")).to_have_text(["cancelled", "running"])
        expect(page.locator(".run-title .badge")).to_have_text("running")
        http.post(f"/v1/runs/{run['id']}/cancel")
        expect(page.locator(".run-title .badge")).to_have_text("cancelled")
        expect(children.locator(".badge")).to_have_text(["cancelled", "cancelled"])

    def test_a_silent_run_is_marked_stalled(
        self, page: Page, dash_server: Server, http: httpx.Client
    ) -> None:
        run = start(http, "waiter")
        page.goto(f"{dash_server.url}/#/settings")
        page.get_by_label(re.compile("stalled after")).fill("2")
        page.get_by_role("button", name="Save").click()
        page.goto(f"{dash_server.url}/#/runs/{run['id']}")
        stall = page.locator(".state-line .stall")
        expect(stall).to_have_text("stalled")
        http.post(f"/v1/runs/{run['id']}/cancel")
        expect(page.locator(".run-title .badge")).to_have_text("cancelled")
        expect(stall).to_have_count(0)


class TestStartFormOnABusySession:
    """The start form on a session that has an active run: refused by default, with a link
    to that run; or queued after it."""

    def test_refused_then_queued(self, page: Page, dash_server: Server, http: httpx.Client) -> None:
        busy = start(http, "waiter")
        session = busy["session_id"]
        page.goto(f"{dash_server.url}/#/start")
        page.select_option("#agent", "echo")
        page.locator(".input-form textarea").fill("after the busy one")
        page.select_option("#session-mode", "existing")
        page.locator("#session-id").fill(session)
        expect(page.get_by_label("When the session is busy")).to_have_value("reject")
        page.click("#start-run")
        refused = page.locator(".notice.error")
        expect(refused).to_contain_text(f"already has an active run {busy['id']}")
        expect(refused.locator("a")).to_have_attribute("href", f"#/runs/{busy['id']}")
        assert page.url.endswith("#/start")
        runs = http.get("/v1/runs", params={"session_id": session}).json()["data"]
        assert [run["id"] for run in runs] == [busy["id"]]
        page.get_by_label("When the session is busy").select_option("enqueue")
        page.click("#start-run")
        page.wait_for_url(re.compile(r"#/runs/run_"))
        queued = page.url.rsplit("/", 1)[1]
        assert queued != busy["id"]
        expect(page.locator(".run-title .badge")).to_have_text("pending")
        http.post(f"/v1/runs/{busy['id']}/cancel")
        expect(page.locator(".run-title .badge")).to_have_text("completed")
        ended = finished(http, queued)
        assert (ended["session_id"], ended["output"]) == (session, "after the busy one")

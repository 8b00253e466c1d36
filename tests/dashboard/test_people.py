"""People in the loop on the dashboard: the runs waiting for someone, approving and refusing
a tool call, answering a question, sending a message to a running model agent."""

from __future__ import annotations

import re
import uuid
from pathlib import Path

import httpx
from playwright.sync_api import Locator, Page, Request, expect

from tests.api.conftest import Server
from tests.dashboard.helpers import finished, start

BADGE = ".run-title .badge"


def panel(page: Page) -> Locator:
    return page.locator(".ask-panel")


class TestApprovals:
    def test_listed_as_waiting_then_refused_with_a_reason(
        self, page: Page, dash_server: Server, http: httpx.Client
    ) -> None:
        run = start(http, "mailer", "bob@example.com")
        page.goto(f"{dash_server.url}/#/runs")
        # the nav shows that someone is needed, and leads to the runs that wait
        expect(page.locator("#waiting-count")).to_be_visible()
        page.get_by_role("link", name="Waiting for you").click()
        expect(page.locator("h1")).to_have_text("Waiting for you")
        expect(page.get_by_label("Status")).to_have_value("waiting")
        row = page.locator(f'tr[data-run-id="{run["id"]}"]')
        expect(row.locator(".badge")).to_have_text("waiting")
        expect(row.locator("td.asks")).to_contain_text("approve send_email")
        expect(row.locator("td.asks")).to_contain_text('"to":"bob@example.com"')

        row.get_by_role("link").first.click()
        ask = panel(page)
        expect(ask.get_by_role("heading")).to_have_text("Approve this tool call?")
        expect(ask.locator(".tool-name")).to_have_text("send_email")
        expect(ask.get_by_label(re.compile("^Arguments"))).to_have_value(
            re.compile(r'"to": "bob@example.com",\s*"body": "hello"')
        )
        expect(page.locator(".ev.asked")).to_contain_text("asks to approve send_email")
        ask.get_by_label("Reason").fill("not to bob")
        ask.get_by_role("button", name="Refuse").click()

        # the run goes on: the panel goes, the timeline says what the person decided
        expect(ask).to_have_count(0)
        expect(page.locator(BADGE)).to_have_text("completed")
        expect(page.locator(".ev.answered.refused")).to_contain_text("refused: not to bob")
        call = page.locator("details.tool.refused")
        expect(call).to_contain_text("send_email")
        expect(call.locator(".phase")).to_have_text("refused: not to bob")
        expect(page.locator(".outcome")).to_contain_text("a person refused this call: not to bob")

    def test_edited_arguments_must_be_a_json_object(
        self, page: Page, dash_server: Server, http: httpx.Client
    ) -> None:
        run = start(http, "mailer", "ann@example.com")
        sent: list[str] = []

        def on_request(request: Request) -> None:
            if request.url.endswith("/input"):
                sent.append(request.post_data or "")

        page.on("request", on_request)
        page.goto(f"{dash_server.url}/#/runs/{run['id']}")
        ask = panel(page)
        arguments = ask.get_by_label(re.compile("^Arguments"))
        arguments.fill('{"to": "ann@example.com", "body": ')
        ask.get_by_role("button", name="Approve").click()
        expect(ask.get_by_role("alert")).to_contain_text("not valid JSON")
        arguments.fill('["not", "an", "object"]')
        ask.get_by_role("button", name="Approve").click()
        expect(ask.get_by_role("alert")).to_have_text("The arguments must be a JSON object.")
        expect(page.locator(BADGE)).to_have_text("waiting")
        assert sent == [], "nothing is sent while the arguments are wrong"

        arguments.fill('{"to": "ann@example.com", "body": "hello Ann"}')
        ask.get_by_role("button", name="Approve").click()
        expect(page.locator(BADGE)).to_have_text("completed")
        answer = page.locator(".ev.answered.approved")
        expect(answer).to_contain_text("approved")
        expect(answer).to_contain_text("with edited arguments")
        expect(page.locator("details.tool.done")).to_contain_text("send_email")
        expect(page.locator(".outcome")).to_contain_text("sent to ann@example.com: hello Ann")
        assert len(sent) == 1 and '"body":"hello Ann"' in sent[0], sent


class TestQuestions:
    def test_a_bad_answer_is_refused_and_a_good_one_goes_on(
        self, page: Page, dash_server: Server, http: httpx.Client
    ) -> None:
        run = start(http, "asker", {"item": "cups"})
        page.goto(f"{dash_server.url}/#/runs/{run['id']}")
        ask = panel(page)
        expect(ask.get_by_role("heading")).to_have_text("This run asks you")
        answer = ask.get_by_label("How many cups, and for whom?")
        expect(answer).to_be_visible()
        expect(page.locator(".ev.asked")).to_contain_text("How many cups, and for whom?")

        # from the keyboard: type, Tab to the button, Enter
        answer.fill('{"count": "two"}')
        answer.focus()
        page.keyboard.press("Tab")
        page.keyboard.press("Enter")
        error = ask.get_by_role("alert")
        expect(error).to_contain_text("does not fit the question's schema")
        expect(error).to_contain_text("'name' is a required property")
        # the form stays, as it was, and the run keeps waiting
        expect(answer).to_have_value('{"count": "two"}')
        expect(page.locator(BADGE)).to_have_text("waiting")
        assert http.get(f"/v1/runs/{run['id']}").json()["status"] == "waiting"

        answer.fill('{"count": 2, "name": "Ann"}')
        ask.get_by_role("button", name="Answer").click()
        # the next question: one of a few values, chosen from a list
        colour = panel(page).get_by_label("Which colour?")
        expect(colour).to_be_visible()
        assert colour.evaluate("el => el.tagName") == "SELECT"
        colour.select_option(label="green")
        panel(page).get_by_role("button", name="Answer").click()

        expect(page.locator(BADGE)).to_have_text("completed")
        expect(panel(page)).to_have_count(0)
        answers = page.locator(".ev.answered")
        expect(answers).to_have_count(2)
        expect(answers.nth(0)).to_contain_text('answered{"count":2,"name":"Ann"}')
        expect(answers.nth(1)).to_contain_text('answered"green"')
        ended = finished(http, run["id"])
        assert ended["output"] == {
            "item": "cups",
            "how": {"count": 2, "name": "Ann"},
            "colour": "green",
        }


class TestMessages:
    def test_a_message_sent_to_a_running_model_agent(
        self, page: Page, dash_server: Server, http: httpx.Client, gates: Path
    ) -> None:
        gate = f"gate-{uuid.uuid4().hex}"
        run = start(http, "steered", gate)
        page.goto(f"{dash_server.url}/#/runs/{run['id']}")
        expect(page.locator("details.tool.running")).to_contain_text("wait_for_gate")
        box = page.locator("form.say")
        text = box.get_by_label("Send a message")
        # an empty message is refused by the server, which says why
        text.fill("   ")
        box.get_by_role("button", name="Send").click()
        expect(box.get_by_role("alert")).to_contain_text("must be non-empty text")

        text.fill("go north instead")
        box.get_by_role("button", name="Send").click()
        expect(box.get_by_role("status")).to_contain_text("Sent")
        expect(box.locator(".say-error")).to_be_empty()
        expect(text).to_have_value("")
        (gates / gate).touch()

        # taken in at the next round, as a message of its own
        second = page.locator(".section.round").nth(1)
        expect(second.locator(".title")).to_have_text("Round 2")
        expect(second.locator(".msg.user")).to_contain_text("go north instead")
        expect(page.locator(BADGE)).to_have_text("completed")
        expect(page.locator(".outcome")).to_contain_text("You said: go north instead")
        expect(box).to_be_hidden()  # an ended run takes no message

    def test_no_message_box_for_a_function_agent(
        self, page: Page, dash_server: Server, http: httpx.Client
    ) -> None:
        run = start(http, "waiter")
        page.goto(f"{dash_server.url}/#/runs/{run['id']}")
        expect(page.locator(BADGE)).to_have_text("running")
        expect(page.get_by_role("button", name="Cancel…")).to_be_visible()
        expect(page.locator("form.say")).to_have_count(0)
        http.post(f"/v1/runs/{run['id']}/cancel")

    def test_start_form_steers_the_busy_session(
        self, page: Page, dash_server: Server, http: httpx.Client, gates: Path
    ) -> None:
        gate = f"gate-{uuid.uuid4().hex}"
        first = start(http, "steered", gate)
        page.goto(f"{dash_server.url}/#/runs/{first['id']}")
        expect(page.locator("details.tool.running")).to_contain_text("wait_for_gate")
        page.goto(f"{dash_server.url}/#/start")
        page.select_option("#agent", "steered")
        page.get_by_label("edit the input as JSON").check()
        page.get_by_label("Input (JSON)").fill('"also this"')
        page.select_option("#session-mode", "existing")
        page.locator("#session-id").fill(first["session_id"])
        page.get_by_label("When the session is busy").select_option("steer")
        page.click("#start-run")
        # the answer is the active run, which took the input as a message
        page.wait_for_url(re.compile(f"#/runs/{first['id']}$"))
        expect(page.locator(BADGE)).to_have_text("running")
        (gates / gate).touch()
        expect(page.locator(".msg.user")).to_contain_text("also this")
        expect(page.locator(".outcome")).to_contain_text("You said: also this")

"""The page's modules on their own, in the browser: the stream parser, the form made from a
JSON Schema, the timeline's handling of voided text."""

from __future__ import annotations

import httpx
from playwright.sync_api import Page, expect

from tests.api.conftest import Server
from tests.dashboard.helpers import finished, last_seq, start, until

PARSE = """async () => {
  const { parse } = await import("/dashboard/sse.js");
  const event = (seq, text) => `id: ${seq}\\nevent: message.delta\\ndata: ` +
    JSON.stringify({ seq, type: "message.delta", data: { text } }) + "\\n\\n";
  const whole = ": ping\\n\\n" + event(1, "a") + event(2, "two\\nlines") + event(3, "c");
  const seen = [];
  let rest = "";
  for (let i = 0; i < whole.length; i += 7) {  // chunks that cut lines anywhere
    const [events, left] = parse(rest + whole.slice(i, i + 7));
    rest = left;
    seen.push(...events.map((e) => [e.seq, e.data.text]));
  }
  return [seen, rest];
}"""

FORM = """async () => {
  const { schemaForm } = await import("/dashboard/schemaform.js");
  const schema = {
    $defs: { Place: { type: "object", properties: {
      city: { type: "string", maxLength: 40 },
      zip: { anyOf: [{ type: "integer" }, { type: "null" }], default: null },
    }, required: ["city"] } },
    type: "object",
    properties: {
      place: { $ref: "#/$defs/Place" },
      unit: { enum: ["c", "f"], default: "c" },
      days: { type: "integer", default: 3 },
      detailed: { type: "boolean", default: false },
      tags: { type: "array", items: { type: "string" } },
    },
    required: ["place"],
  };
  const form = schemaForm(schema);
  document.body.append(form.element);
  const inputs = form.element.querySelectorAll("input, select, textarea");
  const kinds = [...inputs].map((el) => `${el.tagName.toLowerCase()}:${el.type}`);
  form.element.querySelector("input[type=text]").value = "Paris";
  form.element.querySelector("textarea").value = '["sun", "wind"]';
  const value = form.value();
  form.element.querySelector("textarea").value = "[not json";
  let error = null;
  try { form.value(); } catch (err) { error = err.message; }
  form.element.remove();
  return { kinds, value, error };
}"""


def test_the_stream_parser_joins_chunks_cut_anywhere(page: Page, dash_server: Server) -> None:
    page.goto(f"{dash_server.url}/#/settings")
    seen, rest = page.evaluate(PARSE)
    assert seen == [[1, "a"], [2, "two\nlines"], [3, "c"]]
    assert rest == ""


def test_a_form_from_a_json_schema(page: Page, dash_server: Server) -> None:
    page.goto(f"{dash_server.url}/#/settings")
    made = page.evaluate(FORM)
    assert made["kinds"] == [
        "input:text",  # place.city
        "input:number",  # place.zip, nullable
        "select:select-one",  # unit
        "input:number",  # days
        "input:checkbox",  # detailed
        "textarea:textarea",  # tags: JSON
    ]
    assert made["value"] == {
        "place": {"city": "Paris"},
        "unit": "c",
        "days": 3,
        "detailed": False,
        "tags": ["sun", "wind"],
    }
    assert "not valid JSON" in made["error"]


def test_text_voided_by_a_retried_stream_is_struck(
    page: Page, dash_server: Server, http: httpx.Client
) -> None:
    run = finished(http, start(http, "retrier")["id"])
    page.goto(f"{dash_server.url}/#/runs/{run['id']}")
    until(lambda: last_seq(page) == run["last_seq"], what="every event drawn")
    expect(page.locator("del.discarded")).to_have_text("broken stream ")
    expect(page.locator(".section.round .msg").last).to_have_text("whole answer")

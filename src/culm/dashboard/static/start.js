// Start a run: pick an agent, fill the form made from its input schema, choose the session
// (new or existing) and what to do when that session is busy.

import { api } from "./api.js";
import { schemaForm } from "./schemaform.js";
import { h, pretty, shortId, when } from "./util.js";

export async function startView(main, _params, signal, query) {
  const [agents, sessions] = await Promise.all([
    api("/v1/agents", { signal }),
    api("/v1/sessions", { query: { limit: 50 }, signal }).catch(() => ({ data: [] })),
  ]);
  let initial;
  try {
    initial = query.has("input") ? JSON.parse(query.get("input")) : undefined;
  } catch {
    initial = undefined;
  }
  const chosen = query.get("agent") ?? agents.data[0]?.name ?? "";
  const agentSelect = h("select", { id: "agent", name: "agent" },
    agents.data.map((a) => h("option", { value: a.name, selected: a.name === chosen }, a.name)));
  const description = h("p", { class: "muted description" });
  const formSlot = h("div", { class: "input-form" });
  const rawToggle = h("input", { type: "checkbox", id: "raw-json" });
  const sessionMode = h("select", { id: "session-mode" },
    h("option", { value: "new" }, "a new session"),
    h("option", { value: "existing", selected: query.has("session") }, "an existing session"));
  const sessionInput = h("input", { id: "session-id", list: "start-sessions", placeholder: "ses_…", value: query.get("session") ?? "", size: 34 });
  const sessionList = h("datalist", { id: "start-sessions" },
    sessions.data.map((s) => h("option", { value: s.id }, `${when(s.created_at)} ${pretty(s.metadata, 0)}`)));
  const sessionWrap = h("span", { hidden: !query.has("session") }, sessionInput, sessionList);
  const busy = h("select", { id: "if-busy" },
    h("option", { value: "reject" }, "refuse (409)"),
    h("option", { value: "enqueue" }, "wait its turn"),
    h("option", { value: "interrupt" }, "cancel the active run"),
    h("option", { value: "steer" }, "send the input to the active run as a message"));
  const error = h("p", { class: "notice error", role: "alert", hidden: true });
  let form = null;

  function build(value) {
    const agent = agents.data.find((a) => a.name === agentSelect.value);
    description.textContent = agent?.description ?? "";
    if (rawToggle.checked) {
      const area = h("textarea", { id: "raw-input", rows: 8, class: "json", spellcheck: false });
      area.value = JSON.stringify(value ?? null, null, 2);
      form = {
        element: h("div", { class: "field" }, h("label", { for: "raw-input" }, "Input (JSON)"), area),
        value: () => JSON.parse(area.value || "null"),
      };
    } else {
      form = schemaForm(agent?.input_schema ?? {}, value);
    }
    formSlot.replaceChildren(form.element);
  }
  agentSelect.addEventListener("change", () => build(undefined));
  rawToggle.addEventListener("change", () => {
    let value;
    try {
      value = form.value();
    } catch {
      value = undefined;
    }
    build(value);
  });
  sessionMode.addEventListener("change", () => {
    sessionWrap.hidden = sessionMode.value !== "existing";
  });

  async function submit(event) {
    event.preventDefault();
    error.hidden = true;
    let input;
    try {
      input = form.value();
    } catch (err) {
      error.textContent = err.message;
      error.hidden = false;
      return;
    }
    const body = { agent: agentSelect.value, input, if_busy: busy.value };
    if (sessionMode.value === "existing") {
      if (!sessionInput.value.trim()) {
        error.textContent = "Name the session, or choose a new one.";
        error.hidden = false;
        return;
      }
      body.session_id = sessionInput.value.trim();
    }
    try {
      // with "steer" on a busy session the answer is the active run, which took the input
      const run = await api("/v1/runs", { method: "POST", body });
      location.hash = `#/runs/${run.id}`;
    } catch (err) {
      const active = err.body?.active_run_id;
      error.replaceChildren(err.message, active ? h("a", { href: `#/runs/${active}` }, ` (see ${shortId(active)})`) : "");
      error.hidden = false;
    }
  }

  main.append(
    h("h1", null, "Start a run"),
    h("form", { class: "start", onsubmit: submit },
      h("div", { class: "field" }, h("label", { for: "agent" }, "Agent"), agentSelect, description),
      formSlot,
      h("div", { class: "field check" }, rawToggle, h("label", { for: "raw-json" }, "edit the input as JSON")),
      h("div", { class: "field" }, h("label", { for: "session-mode" }, "Run on"), sessionMode, sessionWrap),
      h("div", { class: "field" }, h("label", { for: "if-busy" }, "When the session is busy"), busy),
      error,
      h("div", { class: "actions" }, h("button", { type: "submit", class: "primary", id: "start-run" }, "Start"))));
  build(initial);
}

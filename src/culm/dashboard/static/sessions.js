// Sessions: the list, and one session's runs and conversation (messages, tool calls and
// their results), kept live while the page is open.

import { api, ApiError } from "./api.js";
import { RunsTable } from "./runs.js";
import { settings } from "./settings.js";
import { clip, every, h, pretty, shortId, when } from "./util.js";

export async function sessionsView(main, _params, signal) {
  const body = h("tbody");
  const more = h("button", { type: "button", hidden: true }, "Load older sessions");
  let cursor = null;
  async function load() {
    const page = await api("/v1/sessions", { query: { limit: 50, cursor }, signal });
    cursor = page.next_cursor;
    more.hidden = !cursor;
    for (const s of page.data) {
      body.append(h("tr", null,
        h("td", null, h("a", { href: `#/sessions/${s.id}`, class: "mono" }, shortId(s.id))),
        h("td", null, when(s.created_at)),
        h("td", null, s.parent_id ? h("a", { href: `#/sessions/${s.parent_id}`, class: "mono" }, shortId(s.parent_id)) : ""),
        h("td", null, h("code", null, clip(pretty(s.metadata, 0), 120)))));
    }
  }
  more.addEventListener("click", load);
  main.append(h("h1", null, "Sessions"),
    h("div", { class: "table-wrap" }, h("table", null,
      h("thead", null, h("tr", null, ["Session", "Created", "Parent", "Metadata"].map((n) => h("th", { scope: "col" }, n)))),
      body)),
    more);
  await load();
}

export async function sessionView(main, { id }, signal) {
  let session;
  try {
    session = await api(`/v1/sessions/${encodeURIComponent(id)}`, { signal });
  } catch (err) {
    if (err instanceof ApiError && err.status === 404) {
      main.append(h("h1", null, "Session not found"), h("p", null, `No session ${id} for this key.`));
      return;
    }
    throw err;
  }
  const runs = new RunsTable({ session_id: session.id }, signal);
  const conversation = h("ol", { class: "conversation" });
  main.append(
    h("div", { class: "page-head" },
      h("h1", null, "Session ", h("code", null, session.id)),
      h("a", { class: "button-like primary", href: `#/start?session=${session.id}` }, "Start a run here")),
    h("dl", { class: "facts inline" },
      h("dt", null, "Created"), h("dd", null, when(session.created_at)),
      session.parent_id ? [h("dt", null, "Parent"), h("dd", null, h("a", { href: `#/sessions/${session.parent_id}` }, shortId(session.parent_id)))] : "",
      h("dt", null, "Metadata"), h("dd", null, h("code", null, pretty(session.metadata, 0)))),
    h("h2", null, "Runs"), runs.element,
    h("h2", null, "Conversation"), conversation);
  let after = 0;
  const calls = new Map();
  async function more() {
    for (;;) {
      const page = await api(`/v1/sessions/${session.id}/messages`, { query: { after, limit: 1000 }, signal });
      for (const m of page.data) {
        conversation.append(message(m, calls));
        after = m.id;
      }
      if (page.data.length < 1000) break;
    }
    if (!conversation.children.length) conversation.replaceChildren(h("li", { class: "muted empty" }, "No messages yet."));
    else conversation.querySelector(".empty")?.remove();
  }
  await Promise.all([runs.start(), more()]);
  every(() => Math.max(settings().pollSeconds, 2), more, signal);
}

function message(m, calls) {
  const role = m.role;
  const li = h("li", { class: `message role-${role}`, dataset: { id: m.id } },
    h("div", { class: "who" }, h("span", { class: "role" }, role),
      m.run_id ? h("a", { href: `#/runs/${m.run_id}`, class: "mono" }, shortId(m.run_id)) : "",
      h("span", null, when(m.created_at))));
  const content = typeof m.content === "string" ? m.content : m.content === null || m.content === undefined ? "" : pretty(m.content);
  if (role === "tool") {
    const call = calls.get(m.tool_call_id);
    li.append(h("details", { class: "tool done" },
      h("summary", null, "result of ", h("span", { class: "tool-name" }, call?.function?.name ?? call?.name ?? m.name ?? "tool"),
        " ", h("code", { class: "preview" }, clip(content, 100))),
      h("pre", null, content)));
    return li;
  }
  if (content) li.append(h("div", { class: "msg" }, content));
  for (const call of m.tool_calls ?? []) {
    calls.set(call.id, call);
    const fn = call.function ?? call;
    li.append(h("details", { class: "tool" },
      h("summary", null, "calls ", h("span", { class: "tool-name" }, fn.name), " ", h("code", { class: "preview" }, clip(String(fn.arguments ?? ""), 100))),
      h("pre", null, prettyArgs(fn.arguments))));
  }
  return li;
}

function prettyArgs(args) {
  if (typeof args !== "string") return pretty(args);
  try {
    return JSON.stringify(JSON.parse(args), null, 2);
  } catch {
    return args;
  }
}

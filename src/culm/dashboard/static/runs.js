// The runs table: newest first, filtered, kept live by polling.
//
// Each poll asks for little: the newest page (new runs appear at the top), the runs that are
// still pending or running (their state moves), and one by one the shown runs that were
// active but are in neither answer any more (they have just ended). A run in these answers
// that has no row yet goes in at its place by id, wherever that is: ids sort by creation,
// not by when a run comes to match the filter (a queued run that starts, with "running"). Runs that ended long
// ago are never asked for again. Only the cells whose value changed are rewritten.
//
// A run waiting for a person counts as active (it goes on once answered); the table of the
// runs "waiting for you" has a column saying what each asks.

import { api } from "./api.js";
import { limits } from "./limits.js";
import { settings } from "./settings.js";
import {
  ago, asks, badge, clear, every, h, isActive, ms, num, shortId, tokens, when,
} from "./util.js";

const PAGE = 50;
const NEWEST = 20;
const ACTIVE = ["running", "pending", "waiting"];
const PHASES = { begin: "…", finished: "✓", error: "✗" };

export class RunsTable {
  /** ``filter``: the /v1/runs query (status, agent, trigger, session_id, schedule_id). */
  constructor(filter, signal) {
    this.filter = filter;
    this.signal = signal;
    this.asking = filter.status === "waiting"; // show what each run asks
    this.rows = new Map(); // id -> {tr, run, key}
    this.cursor = null;
    this.limits = {};
    this.body = h("tbody");
    this.more = h("button", { type: "button", hidden: true, onclick: () => this.loadMore() }, "Load older runs");
    this.empty = h("p", { class: "muted", hidden: true }, "No runs.");
    this.element = h("div", { class: "table-wrap" },
      h("table", { class: "runs" },
        h("caption", { class: "visually-hidden" }, "Runs, newest first"),
        h("thead", null, h("tr", null,
          ["Status", "Run", "Agent", ...(this.asking ? ["Asks"] : []), "Trigger", "Session", "Round", "Last tool",
            "Last event", "Tokens", "Started", "Ended"]
            .map((name) => h("th", { scope: "col" }, name)))),
        this.body),
      this.empty,
      this.more);
  }

  async start() {
    const [known, first] = await Promise.all([
      limits(),
      api("/v1/runs", { query: { ...this.filter, limit: PAGE }, signal: this.signal }),
    ]);
    this.limits = known;
    this.cursor = first.next_cursor;
    for (const run of first.data) this.body.append(this.row(run));
    this.more.hidden = !this.cursor;
    this.empty.hidden = this.rows.size > 0;
    this.body.closest("table").dataset.loaded = "true";
    performance.mark("culm:runs-rendered");
    every(() => settings().pollSeconds, () => this.poll(), this.signal);
    every(() => 1, () => this.tick(), this.signal);
  }

  async loadMore() {
    const page = await api("/v1/runs", { query: { ...this.filter, limit: PAGE, cursor: this.cursor }, signal: this.signal });
    this.cursor = page.next_cursor;
    for (const run of page.data) if (!this.rows.has(run.id)) this.body.append(this.row(run));
    this.more.hidden = !this.cursor;
  }

  async poll() {
    const query = { ...this.filter };
    const asks = [api("/v1/runs", { query: { ...query, limit: NEWEST }, signal: this.signal })];
    const statuses = query.status ? ACTIVE.filter((s) => s === query.status) : ACTIVE;
    for (const status of statuses) {
      asks.push(api("/v1/runs", { query: { ...query, status, limit: 1000 }, signal: this.signal }));
    }
    const [newest, ...active] = await Promise.all(asks);
    const seen = new Set();
    // new runs: those newer than the newest shown, oldest first so each goes on top
    const top = this.body.firstElementChild?.dataset.runId ?? "";
    let fresh = newest.data.filter((run) => run.id > top);
    if (fresh.length === NEWEST && top) {
      // more came than one page holds: ask for all of them, up to a page
      const page = await api("/v1/runs", { query: { ...query, limit: PAGE }, signal: this.signal });
      fresh = page.data.filter((run) => run.id > top);
    }
    for (const run of fresh.reverse()) {
      if (!this.rows.has(run.id)) this.body.prepend(this.row(run));
    }
    for (const run of [...newest.data, ...active.flatMap((page) => page.data)]) {
      seen.add(run.id);
      if (this.rows.has(run.id)) this.update(run);
      else this.place(run);
    }
    // shown as active, but no longer among the active runs: it ended, or moved on
    const gone = [...this.rows.values()].filter((r) => isActive(r.run.status) && !seen.has(r.run.id));
    await Promise.all(gone.slice(0, 50).map(async (r) => {
      try {
        this.update(await api(`/v1/runs/${r.run.id}`, { signal: this.signal }));
      } catch (err) {
        if (err.status === 404) this.remove(r.run.id);
        else throw err;
      }
    }));
    this.empty.hidden = this.rows.size > 0;
  }

  /**
   * Insert a run that has no row yet at its place by id: one older than the top row that has
   * only now come to match the filter (a queued run that started, a run committed after a
   * newer one). One older than every shown row waits for "Load older runs", unless there are
   * none: the table then shows all there is.
   */
  place(run) {
    let before = null;
    for (const tr of this.body.children) {
      if (tr.dataset.runId < run.id) {
        before = tr;
        break;
      }
    }
    if (!before && this.cursor) return;
    this.body.insertBefore(this.row(run), before);
  }

  remove(id) {
    const row = this.rows.get(id);
    if (!row) return;
    row.tr.remove();
    this.rows.delete(id);
  }

  row(run) {
    const tr = h("tr", { dataset: { runId: run.id } });
    const row = { tr, run, key: "" };
    this.rows.set(run.id, row);
    this.fill(row, run);
    return tr;
  }

  update(run) {
    const row = this.rows.get(run.id);
    if (!row) return;
    this.fill(row, run);
  }

  fill(row, run) {
    const key = `${run.status}|${run.waiting?.call_id}|${run.last_seq}|${run.round}|${run.last_tool}|${run.last_tool_phase}|${tokens(run.usage)}`;
    row.run = run;
    if (key === row.key) return;
    row.key = key;
    const lim = this.limits[run.agent] ?? {};
    const used = tokens(run.usage);
    const cells = [
      h("td", { class: "status" }, badge(run.status), h("span", { class: "stall", hidden: true }, "stalled")),
      h("td", null, h("a", { href: `#/runs/${run.id}`, class: "mono" }, shortId(run.id))),
      h("td", null, run.agent),
      this.asking ? h("td", { class: "asks" }, asks(run.waiting)) : null,
      h("td", null, run.trigger),
      h("td", null, h("a", { href: `#/sessions/${run.session_id}`, class: "mono" }, shortId(run.session_id))),
      h("td", { class: "num" }, lim.max_rounds ? `${run.round} / ${lim.max_rounds}` : run.round || ""),
      h("td", null, run.last_tool ? `${run.last_tool} ${PHASES[run.last_tool_phase] ?? ""}` : ""),
      h("td", { class: "age" }),
      h("td", { class: "num" }, used === null ? "" : lim.token_budget ? `${num(used)} / ${num(lim.token_budget)}` : num(used)),
      h("td", null, when(run.started_at)),
      h("td", null, when(run.completed_at)),
    ];
    row.tr.replaceChildren(...cells.filter(Boolean));
    if (run.status === "waiting") row.tr.title = `waits for a person: ${asks(run.waiting)}`;
    else row.tr.removeAttribute("title");
    row.tr.className = `s-${run.status}`;
    this.age(row, Date.now());
  }

  age(row, now) {
    const run = row.run;
    const last = run.last_event_at ?? run.started_at ?? run.created_at;
    const cell = row.tr.querySelector(".age");
    // only a live run's silence means something; an ended run's is its "Ended" time
    cell.textContent = isActive(run.status) ? ago(last, now) : "";
    const stalled = run.status === "running" && now - ms(last) > settings().stallSeconds * 1000;
    row.tr.classList.toggle("stalled", stalled);
    row.tr.querySelector(".stall").hidden = !stalled;
  }

  tick() {
    const now = Date.now();
    for (const row of this.rows.values()) if (isActive(row.run.status)) this.age(row, now);
  }
}

export async function runsView(main, _params, signal, query) {
  const filter = {};
  for (const name of ["status", "agent", "trigger", "session_id", "schedule_id"]) {
    if (query.get(name)) filter[name] = query.get(name);
  }
  const table = new RunsTable(filter, signal);
  const choose = (name, label, options) => h("label", null, label,
    h("select", { name, onchange: apply },
      h("option", { value: "" }, "any"),
      options.map((value) => h("option", { value, selected: filter[name] === value }, value))));
  const session = h("input", { name: "session_id", value: filter.session_id ?? "", placeholder: "ses_…", size: 18, list: "recent-sessions" });
  const sessions = h("datalist", { id: "recent-sessions" });
  const form = h("form", { class: "filters", onsubmit: (e) => { e.preventDefault(); apply(); } },
    choose("status", "Status", ["pending", "running", "waiting", "completed", "failed", "cancelled", "interrupted"]),
    choose("agent", "Agent", filter.agent ? [filter.agent] : []),
    choose("trigger", "Trigger", ["http", "spawn", "schedule", "python"]),
    h("label", null, "Session", session, sessions),
    filter.schedule_id ? h("span", { class: "chip" }, `schedule ${shortId(filter.schedule_id)}`) : "",
    h("button", { type: "submit" }, "Filter"),
    Object.keys(filter).length ? h("a", { href: "#/runs" }, "clear") : "");

  function apply() {
    const next = new URLSearchParams();
    for (const el of form.elements) if (el.name && el.value) next.set(el.name, el.value.trim());
    if (filter.schedule_id) next.set("schedule_id", filter.schedule_id);
    location.hash = `#/runs${next.size ? `?${next}` : ""}`;
  }

  const waiting = filter.status === "waiting";
  main.append(
    h("div", { class: "page-head" },
      h("h1", null, waiting ? "Waiting for you" : "Runs"),
      h("a", { class: "button-like primary", href: "#/start" }, "Start a run")),
    waiting ? h("p", { class: "muted" }, "These runs stopped until a person answers what they ask: open one to answer.") : "",
    form,
    table.element);
  // the runs first: the filters' choices come after them
  await table.start();
  api("/v1/agents", { signal }).then((agents) => {
    const select = form.elements.agent;
    for (const { name } of agents.data) {
      if (name !== filter.agent) select.append(h("option", { value: name }, name));
    }
  }).catch(() => {});
  api("/v1/sessions", { query: { limit: 50 }, signal }).then((page) => {
    clear(sessions).append(...page.data.map((s) => h("option", { value: s.id })));
  }).catch(() => {});
}

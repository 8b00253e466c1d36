// Schedules: cadence, next fire time, state and counters; pause, resume, trigger now; one
// schedule's ledger of firings with links to the runs they started.

import { api, ApiError } from "./api.js";
import { settings } from "./settings.js";
import { badge, clear, every, h, num, pretty, relative, shortId, when } from "./util.js";

export function cadence(s) {
  if (s.cron) return `cron ${s.cron} (${s.timezone})`;
  if (s.every) return `every ${seconds(s.every)}`;
  if (s.at) return `once at ${when(s.at)}`;
  return "";
}

function seconds(n) {
  if (n % 86400 === 0) return `${n / 86400} d`;
  if (n % 3600 === 0) return `${n / 3600} h`;
  if (n % 60 === 0) return `${n / 60} min`;
  return `${n} s`;
}

function stateOf(s) {
  if (s.paused) return "paused";
  return s.next_fire_at ? "active" : "finished";
}

function counts(c) {
  return `${num(c.started)} started · ${num(c.completed)} completed · ${num(c.failed)} failed · ${num(c.skipped_overlap)} skipped · ${num(c.missed)} missed`
    + (c.failed_to_start ? ` · ${num(c.failed_to_start)} failed to start` : "")
    + (c.consecutive_failures ? ` · ${num(c.consecutive_failures)} failures in a row` : "");
}

function buttons(s, onChange, say) {
  const act = (verb) => async () => {
    try {
      const answer = await api(`/v1/schedules/${s.id}/${verb}`, { method: "POST" });
      if (verb === "trigger") {
        say(answer.run_id ? h("span", null, "Fired: ", h("a", { href: `#/runs/${answer.run_id}` }, shortId(answer.run_id))) : `Fired: ${answer.outcome}`);
      }
      await onChange();
    } catch (err) {
      say(err.message, true);
    }
  };
  return h("span", { class: "row-actions" },
    s.paused
      ? h("button", { type: "button", onclick: act("resume") }, "Resume")
      : h("button", { type: "button", onclick: act("pause") }, "Pause"),
    h("button", { type: "button", onclick: act("trigger") }, "Trigger now"));
}

function notice() {
  const el = h("p", { class: "notice", role: "status", hidden: true });
  const say = (content, error = false) => {
    el.replaceChildren(content);
    el.hidden = false;
    el.classList.toggle("error", error);
  };
  return [el, say];
}

export async function schedulesView(main, _params, signal) {
  const body = h("tbody");
  const [note, say] = notice();
  const empty = h("p", { class: "muted", hidden: true }, "No schedules. Create them with the API or `culm schedules add`.");
  async function load() {
    const page = await api("/v1/schedules", { query: { limit: 200 }, signal });
    clear(body).append(...page.data.map((s) => h("tr", { dataset: { scheduleId: s.id } },
      h("td", null, h("a", { href: `#/schedules/${s.id}` }, s.name ?? shortId(s.id))),
      h("td", null, s.agent),
      h("td", null, cadence(s)),
      h("td", null, s.next_fire_at ? h("span", { title: when(s.next_fire_at) }, relative(s.next_fire_at)) : "—"),
      h("td", null, badge(stateOf(s))),
      h("td", { class: "counts" }, counts(s.counts)),
      h("td", null, buttons(s, load, say)))));
    empty.hidden = page.data.length > 0;
  }
  main.append(h("h1", null, "Schedules"), note,
    h("div", { class: "table-wrap" }, h("table", null,
      h("thead", null, h("tr", null, ["Schedule", "Agent", "Cadence", "Next fire", "State", "Counters", ""].map((n) => h("th", { scope: "col" }, n)))),
      body)), empty);
  await load();
  every(() => Math.max(settings().pollSeconds, 2), load, signal);
}

export async function scheduleView(main, { id }, signal) {
  let schedule;
  try {
    schedule = await api(`/v1/schedules/${encodeURIComponent(id)}`, { signal });
  } catch (err) {
    if (err instanceof ApiError && err.status === 404) {
      main.append(h("h1", null, "Schedule not found"));
      return;
    }
    throw err;
  }
  const [note, say] = notice();
  const head = h("div");
  const ledger = h("tbody");
  async function load() {
    const [s, firings] = await Promise.all([
      api(`/v1/schedules/${id}`, { signal }),
      api(`/v1/schedules/${id}/firings`, { query: { limit: 100 }, signal }),
    ]);
    schedule = s;
    head.replaceChildren(
      h("div", { class: "page-head" },
        h("h1", null, s.name ?? "Schedule", " ", h("code", null, s.id), " ", badge(stateOf(s))),
        buttons(s, load, say)),
      h("dl", { class: "facts inline" },
        h("dt", null, "Agent"), h("dd", null, s.agent),
        h("dt", null, "Cadence"), h("dd", null, cadence(s)),
        h("dt", null, "Next fire"), h("dd", null, s.next_fire_at ? `${when(s.next_fire_at)} (${relative(s.next_fire_at)})` : "none left"),
        h("dt", null, "Overlap"), h("dd", null, s.overlap),
        h("dt", null, "Misfire"), h("dd", null, s.misfire),
        h("dt", null, "Session"), h("dd", null, s.session_id ? h("a", { href: `#/sessions/${s.session_id}` }, shortId(s.session_id)) : s.session),
        h("dt", null, "Input"), h("dd", null, h("code", null, pretty(s.input, 0))),
        h("dt", null, "Counters"), h("dd", null, counts(s.counts))),
      h("p", null, h("a", { href: `#/runs?schedule_id=${s.id}` }, "All runs of this schedule")));
    clear(ledger).append(...firings.data.map((f) => h("tr", null,
      h("td", null, when(f.scheduled_at)),
      h("td", null, when(f.fired_at)),
      h("td", null, badge(f.outcome), f.manual ? " (manual)" : "", f.count > 1 ? ` ×${f.count}` : ""),
      h("td", null, f.run_id ? h("a", { href: `#/runs/${f.run_id}`, class: "mono" }, shortId(f.run_id)) : ""),
      h("td", null, f.run_status ? badge(f.run_status) : ""),
      h("td", null, f.detail ?? ""))));
  }
  main.append(head, note, h("h2", null, "Ledger"),
    h("div", { class: "table-wrap" }, h("table", null,
      h("thead", null, h("tr", null, ["Scheduled for", "Fired", "Outcome", "Run", "Run status", "Detail"].map((n) => h("th", { scope: "col" }, n)))),
      ledger)));
  await load();
  every(() => Math.max(settings().pollSeconds, 2), load, signal);
}

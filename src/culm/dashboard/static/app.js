// The page's shell: navigation by the URL's hash (#/runs, #/runs/ID, #/start, #/sessions,
// #/schedules, #/settings), the theme, and the API key of this tab.

import { api, apiKey, forgetKey } from "./api.js";
import { applyTheme, save, settings } from "./settings.js";
import { every, h } from "./util.js";

// each page's module is loaded when first shown (the runs page's is preloaded by index.html)
const view = (module, name) => async (...args) => (await import(module))[name](...args);

const ROUTES = [
  [/^runs$/, view("./runs.js", "runsView"), "runs"],
  [/^runs\/(?<id>[^/]+)$/, view("./run.js", "runView"), "runs"],
  [/^start$/, view("./start.js", "startView"), "start"],
  [/^sessions$/, view("./sessions.js", "sessionsView"), "sessions"],
  [/^sessions\/(?<id>[^/]+)$/, view("./sessions.js", "sessionView"), "sessions"],
  [/^schedules$/, view("./schedules.js", "schedulesView"), "schedules"],
  [/^schedules\/(?<id>[^/]+)$/, view("./schedules.js", "scheduleView"), "schedules"],
  [/^settings$/, settingsView, "settings"],
];

let current = null;

async function route() {
  const hash = location.hash.replace(/^#\/?/, "") || "runs";
  const [path, search = ""] = hash.split("?");
  const query = new URLSearchParams(search);
  current?.abort();
  const controller = (current = new AbortController());
  const main = document.getElementById("main");
  const old = main.querySelector("dialog[open]");
  old?.close();
  main.replaceChildren();
  main.setAttribute("aria-busy", "true");
  const match = ROUTES.map(([re, view, nav]) => [path.match(re), view, nav]).find(([m]) => m);
  // the runs that wait for a person have their own entry
  const nav = path === "runs" && query.get("status") === "waiting" ? "waiting" : match?.[2];
  for (const link of document.querySelectorAll("nav a")) {
    link.toggleAttribute("aria-current", link.dataset.nav === nav);
    if (link.dataset.nav === nav) link.setAttribute("aria-current", "page");
  }
  if (!match) {
    main.append(h("h1", null, "Not found"), h("p", null, h("a", { href: "#/runs" }, "Runs")));
    main.removeAttribute("aria-busy");
    return;
  }
  const [m, view] = match;
  const params = Object.fromEntries(Object.entries(m.groups ?? {}).map(([k, v]) => [k, decodeURIComponent(v)]));
  document.title = `${match[2] === "runs" && params.id ? params.id : match[2]} · culm`;
  try {
    await view(main, params, controller.signal, query);
  } catch (err) {
    if (controller.signal.aborted || err?.name === "AbortError") return;
    main.append(h("p", { class: "notice error", role: "alert" }, `Could not load this page: ${err.message}`));
    console.error(err);
  } finally {
    if (!controller.signal.aborted) main.removeAttribute("aria-busy");
  }
}

async function settingsView(main) {
  const s = settings();
  const stall = h("input", { id: "stall", type: "number", min: 1, step: 1, value: String(s.stallSeconds) });
  const poll = h("input", { id: "poll", type: "number", min: 0.5, max: 60, step: 0.5, value: String(s.pollSeconds) });
  const theme = h("select", { id: "theme-choice" },
    ["auto", "light", "dark"].map((t) => h("option", { value: t, selected: s.theme === t }, t)));
  const saved = h("span", { class: "muted", role: "status" });
  const form = h("form", { class: "settings", onsubmit: (e) => {
    e.preventDefault();
    save({ stallSeconds: Number(stall.value) || 60, pollSeconds: Number(poll.value) || 2, theme: theme.value });
    saved.textContent = "Saved.";
  } },
  h("div", { class: "field" }, h("label", { for: "stall" }, "A running run is flagged as stalled after this many seconds without an event"), stall),
  h("div", { class: "field" }, h("label", { for: "poll" }, "Refresh tables every (seconds)"), poll),
  h("div", { class: "field" }, h("label", { for: "theme-choice" }, "Theme"), theme),
  h("div", { class: "actions" }, h("button", { type: "submit", class: "primary" }, "Save"), saved));
  const cleared = h("span", { class: "muted", role: "status" });
  main.append(h("h1", null, "Settings"), form,
    h("h2", null, "This browser"),
    h("p", null, apiKey() ? "This tab has an API key. " : "This tab has no API key. ",
      apiKey() ? h("button", { type: "button", onclick: () => { forgetKey(); location.reload(); } }, "Forget the key") : ""),
    h("p", null, "Run pages keep the events they received in this browser, so a reload asks only for what is new. ",
      h("button", { type: "button", onclick: async () => {
        await (await import("./cache.js")).clearAll();
        cleared.textContent = "Emptied.";
      } }, "Empty that cache"), " ", cleared));
}

// how many runs wait for a person, beside "Waiting for you", on every page
async function countWaiting() {
  const page = await api("/v1/runs", { query: { status: "waiting", limit: 100 } });
  const n = page.data.length;
  const count = document.getElementById("waiting-count");
  count.hidden = n === 0;
  count.textContent = n >= 100 ? "99+" : String(n);
  document.getElementById("waiting-link").setAttribute("aria-label", `Waiting for you: ${n >= 100 ? "100 or more" : n} runs`);
}

function toggleTheme() {
  const dark = document.documentElement.dataset.theme === "dark"
    || (!document.documentElement.dataset.theme && matchMedia("(prefers-color-scheme: dark)").matches);
  save({ theme: dark ? "light" : "dark" });
}

// the API's own pages take the key in their address (a link cannot send a header)
function docsLink() {
  const key = apiKey();
  document.getElementById("docs-link").href = key ? `docs?api_key=${encodeURIComponent(key)}` : "docs";
}

applyTheme();
docsLink();
document.addEventListener("culm:key", docsLink);
document.getElementById("theme-toggle").addEventListener("click", toggleTheme);
document.getElementById("key-dialog").addEventListener("cancel", (e) => e.preventDefault());
addEventListener("hashchange", route);
route();
countWaiting().catch(() => {});
every(() => Math.max(settings().pollSeconds, 2), countWaiting, new AbortController().signal);

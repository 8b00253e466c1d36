// A run's page: its live state at the top, its timeline, its tree of children, cancel and
// start again; what it asks when it waits for a person, and a box to send a running model
// agent a message. The timeline is drawn from the events this browser already has (cache.js),
// then from the stream after the last of them.

import { api, ApiError } from "./api.js";
import * as cache from "./cache.js";
import { limits } from "./limits.js";
import { askPanel, messageBox } from "./people.js";
import { settings } from "./settings.js";
import { follow } from "./sse.js";
import { Timeline } from "./timeline.js";
import {
  ago, badge, clear, duration, every, h, isActive, ms, num, pretty, shortId, tokens, when,
} from "./util.js";

const PHASES = { begin: "running", finished: "done", error: "failed" };

/** What an event changes in the run's live state (as the server's projection does). */
function advance(state, event) {
  const { type, data = {} } = event;
  state.last_seq = event.seq;
  state.last_event_at = event.ts;
  // a stream joined after the run.resumed that took it up: its next event says it runs
  if (state.status === "pending" && type !== "run.queued" && type !== "input.received") {
    state.status = "running";
  }
  if (type === "run.started") {
    state.status = "running";
    state.started_at = event.ts;
  } else if (type === "run.resumed") {
    state.status = "running"; // after a crash, or taken up again once answered
  } else if (type === "round.started") {
    state.round = data.round ?? state.round + 1;
  } else if (type === "tool.started" || type === "tool.completed" || type === "tool.failed") {
    state.last_tool = data.name ?? state.last_tool;
    state.last_tool_phase = { "tool.started": "begin", "tool.completed": "finished" }[type] ?? "error";
  } else if (type === "budget.updated") {
    state.usage = data.usage ?? state.usage;
  } else if (type === "run.waiting") {
    state.status = "waiting";
    state.waiting = { ...data, seq: event.seq };
  } else if (type === "input.received") {
    state.status = "pending"; // until a process takes it up again
    state.waiting = null;
  } else if (type === "run.completed" || type === "run.failed" || type === "run.cancelled"
      || type === "run.interrupted") {
    state.status = type.slice(4);
    state.completed_at = event.ts;
    state.waiting = null;
    if (type === "run.completed") state.output = data.output;
    else state.error = data.error;
  }
}

export async function runView(main, { id }, signal) {
  let run;
  try {
    run = await api(`/v1/runs/${encodeURIComponent(id)}`, { signal });
  } catch (err) {
    if (err instanceof ApiError && err.status === 404) {
      main.append(h("h1", null, "Run not found"), h("p", null, `No run ${id} for this key.`));
      return;
    }
    throw err;
  }
  const [known, agents] = await Promise.all([limits(), api("/v1/agents", { signal }).catch(() => ({ data: [] }))]);
  const agentLimits = known[run.agent] ?? {};
  // only a model agent's run takes messages while it runs
  const talks = agents.data.some((a) => a.name === run.agent && a.kind === "model");
  const state = { ...run };
  let budget = null; // {used, left} from the latest budget.updated
  let connection = "loading";

  // layout

  const title = h("h1", null, h("span", { class: "agent" }, run.agent), " ", h("code", { class: "run-id" }, run.id));
  const statusBadge = h("span", { class: "badge" });
  const stateLine = h("div", { class: "state-line", "aria-live": "polite" });
  const bar = h("div", { class: "bar", role: "progressbar", "aria-label": "tokens used of the budget" }, h("div", { class: "fill" }));
  const barText = h("span", { class: "bar-text" });
  const cancelButton = h("button", { class: "danger", type: "button", onclick: () => askCancel() }, "Cancel…");
  const againButton = h("button", { type: "button", onclick: () => startAgain() }, "Start again");
  const editLink = h("a", { class: "button-like", href: startHref(run) }, "Edit input…");
  const message = h("p", { class: "notice", hidden: true, role: "status" });
  const askSlot = h("div", { class: "ask-slot" });
  const sayBox = talks ? messageBox(run.id) : null;
  const followBox = h("input", { type: "checkbox", id: "follow", checked: true });
  const streamState = h("span", { class: "muted stream-state" });
  const timelineEl = h("div", { class: "timeline", id: "timeline", dataset: { lastSeq: "0" } });
  const treeEl = h("div", { class: "tree" });
  const details = h("dl", { class: "facts" });
  const outcome = h("div", { class: "outcome" });

  const dialog = cancelDialog(async (reason) => {
    try {
      await api(`/v1/runs/${encodeURIComponent(run.id)}/cancel`, { method: "POST", body: { reason: reason || null } });
      say("Cancel requested: the run stops at its next safe point.");
    } catch (err) {
      say(err.message, true);
    }
  });

  main.append(
    h("header", { class: "run-head" },
      h("div", { class: "run-title" }, title, statusBadge),
      stateLine,
      h("div", { class: "budget" }, bar, barText),
      h("div", { class: "actions" }, cancelButton, againButton, editLink),
      message,
      askSlot,
      sayBox),
    h("div", { class: "run-layout" },
      h("section", { class: "run-main", "aria-label": "Timeline" },
        h("div", { class: "timeline-bar" },
          h("h2", null, "Timeline"),
          h("label", { class: "follow" }, followBox, " follow live"),
          streamState),
        timelineEl),
      h("aside", { class: "run-side" },
        h("h2", null, "Run"), details,
        outcome,
        h("h2", null, "Tree"), treeEl)),
    dialog,
  );

  function say(text, error = false) {
    message.hidden = !text;
    message.textContent = text;
    message.classList.toggle("error", error);
  }

  async function startAgain() {
    try {
      const fresh = await api("/v1/runs", { method: "POST", body: { agent: run.agent, input: run.input } });
      location.hash = `#/runs/${fresh.id}`;
    } catch (err) {
      say(err.message, true);
    }
  }

  function askCancel() {
    dialog.querySelector("textarea").value = "";
    dialog.showModal();
  }

  // live state

  function drawState() {
    const now = Date.now();
    statusBadge.className = `badge s-${state.status}`;
    statusBadge.textContent = state.status;
    const maxRounds = agentLimits.max_rounds;
    const parts = [`round ${state.round}${maxRounds ? ` of ${maxRounds}` : ""}`];
    if (state.last_tool) {
      parts.push(`tool ${state.last_tool} (${PHASES[state.last_tool_phase] ?? state.last_tool_phase})`);
    }
    if (state.last_event_at) parts.push(`last event ${ago(state.last_event_at, now)}`);
    const stalled = state.status === "running"
      && now - (ms(state.last_event_at) ?? ms(state.started_at) ?? now) > settings().stallSeconds * 1000;
    stateLine.replaceChildren(parts.join(" · "), stalled ? h("span", { class: "stall" }, " stalled") : "");
    const used = tokens(state.usage) ?? budget?.used ?? null;
    const total = budget && budget.left !== null && budget.left !== undefined
      ? budget.used + budget.left : agentLimits.token_budget ?? null;
    const share = used !== null && total ? Math.min(1, used / total) : 0;
    bar.firstChild.style.width = `${(share * 100).toFixed(1)}%`;
    bar.classList.toggle("high", share > 0.9);
    bar.setAttribute("aria-valuenow", String(Math.round(share * 100)));
    bar.parentElement.hidden = used === null && !total;
    barText.textContent = used === null ? "no tokens used"
      : total ? `${num(used)} of ${num(total)} tokens` : `${num(used)} tokens`;
    const active = isActive(state.status);
    cancelButton.hidden = !active;
    if (sayBox) sayBox.hidden = !active;
    drawAsk();
    streamState.textContent = connection === "live" ? "● live" : connection === "reconnecting" ? "reconnecting…" : "";
    details.replaceChildren(
      ...fact("Agent", h("a", { href: `#/runs?agent=${encodeURIComponent(run.agent)}` }, run.agent)),
      ...fact("Session", h("a", { href: `#/sessions/${run.session_id}` }, shortId(run.session_id))),
      ...fact("Trigger", run.trigger),
      ...(run.parent_run_id ? fact("Parent", h("a", { href: `#/runs/${run.parent_run_id}` }, shortId(run.parent_run_id))) : []),
      ...(run.schedule_id ? fact("Schedule", h("a", { href: `#/schedules/${run.schedule_id}` }, shortId(run.schedule_id))) : []),
      ...fact("Created", when(run.created_at)),
      ...fact("Started", when(state.started_at)),
      ...fact(active ? "Running for" : "Ended", active
        ? duration(now - (ms(state.started_at) ?? now)) : when(state.completed_at)),
      ...fact("Events", num(state.last_seq)),
    );
  }

  // what the run asks, while it waits: drawn once per call it waits on
  let asked = null; // the call_id the panel is for
  const answered = new Set(); // calls answered from this page (their panel stays away)
  function drawAsk() {
    const waiting = state.status === "waiting" ? state.waiting : null;
    const id = waiting && !answered.has(waiting.call_id) ? waiting.call_id : null;
    if (id === asked) return;
    asked = id;
    askSlot.replaceChildren(id ? askPanel(run.id, waiting, () => {
      // the run goes on: the stream shows what follows
      answered.add(id);
      drawAsk();
    }) : "");
  }

  function drawOutcome() {
    clear(outcome);
    outcome.append(h("h2", null, "Input"), h("pre", { class: "json" }, pretty(run.input)));
    if (state.status === "completed") {
      outcome.append(h("h2", null, "Output"), h("pre", { class: "json" }, pretty(state.output)));
    } else if (state.error) {
      outcome.append(h("h2", null, "Error"), h("pre", { class: "error-text" }, state.error));
    }
  }

  // the tree of children

  let treeAsked = 0;
  async function drawTree() {
    treeAsked = Date.now();
    const tree = await api(`/v1/runs/${encodeURIComponent(run.id)}/tree`, { signal });
    treeEl.replaceChildren(tree.children.length ? h("ul", null, node(tree, run.id)) : h("p", { class: "muted" }, "No child runs."));
  }

  // the timeline

  const timeline = new Timeline(timelineEl, {
    onRendered: (seq) => {
      timelineEl.setAttribute("aria-busy", timeline.backlog ? "true" : "false");
      if (seq >= state.last_seq && !isActive(state.status)) performance.mark("culm:timeline-complete");
    },
  });
  // a live run is followed at its end; an ended one is read from the top
  followBox.checked = timeline.follow = isActive(run.status);
  followBox.addEventListener("change", () => {
    timeline.follow = followBox.checked;
  });
  // a person who scrolls up, or works inside the timeline, is reading: stop following
  const unfollow = () => {
    followBox.checked = false;
    timeline.follow = false;
  };
  addEventListener("wheel", (event) => event.deltaY < 0 && unfollow(), { signal, passive: true });
  addEventListener("keydown", (event) => {
    if (["PageUp", "Home", "ArrowUp"].includes(event.key) && !event.target.closest?.("input, textarea, select")) unfollow();
  }, { signal });
  timelineEl.addEventListener("focusin", unfollow);

  drawState();
  drawOutcome();
  drawTree().catch(() => {});

  const cached = await cache.load(run.id, run.last_seq);
  let after = 0;
  for (const batch of cached) {
    after = batch.at(-1).seq;
    received(batch, false);
  }
  if (cached.length) {
    drawState();
    if (!isActive(state.status)) drawOutcome();
  }
  every(() => 1, () => {
    drawState();
    if (isActive(state.status) && Date.now() - treeAsked > 5000) return drawTree();
    return null;
  }, signal);

  function received(events, fresh) {
    let children = false;
    for (const event of events) {
      if (event.type === "budget.updated") {
        budget = { used: tokens(event.data.usage) ?? 0, left: event.data.budget_left };
      }
      if (event.type.startsWith("child.")) children = true;
      if (event.seq > state.last_seq) advance(state, event); // the run record already has the rest
    }
    timeline.push(events);
    if (events.length) timelineEl.dataset.receivedSeq = String(events.at(-1).seq); // drawn later
    if (!fresh) return; // drawn once for all of them
    cache.store(run.id, events);
    drawState();
    if (children) drawTree().catch(() => {});
    if (!isActive(state.status)) drawOutcome();
  }

  if (after >= run.last_seq && !isActive(run.status)) {
    connection = "ended";
    drawState();
    return; // everything is here already
  }
  connection = "connecting";
  follow(run.id, {
    after,
    signal,
    onBatch: (events) => received(events, true),
    onStatus: (status) => {
      connection = status;
      drawState();
      if (status === "ended") {
        api(`/v1/runs/${encodeURIComponent(run.id)}`, { signal }).then((fresh) => {
          Object.assign(state, fresh);
          drawState();
          drawOutcome();
        }).catch(() => {});
      }
    },
  }).catch((err) => {
    if (err?.name !== "AbortError") say(err.message, true);
  });
}

function fact(name, value) {
  return [h("dt", null, name), h("dd", null, value)];
}

function node(tree, current) {
  const label = tree.id === current
    ? h("strong", null, tree.agent)
    : h("a", { href: `#/runs/${tree.id}` }, tree.agent);
  const used = tokens(tree.tree_usage);
  return h("li", null,
    label, " ", badge(tree.status),
    tree.round ? h("span", { class: "muted" }, ` round ${tree.round}`) : "",
    used !== null ? h("span", { class: "muted" }, ` · ${num(used)} tokens`) : "",
    tree.children.length ? h("ul", null, tree.children.map((child) => node(child, current))) : "");
}

function startHref(run) {
  const query = new URLSearchParams({ agent: run.agent, input: JSON.stringify(run.input ?? null), session: run.session_id });
  return `#/start?${query}`;
}

function cancelDialog(onConfirm) {
  const reason = h("textarea", { id: "cancel-reason", rows: 3, maxlength: 2000, placeholder: "Why? (optional, recorded with the run)" });
  const dialog = h("dialog", { class: "cancel-dialog", "aria-labelledby": "cancel-title" },
    h("form", { method: "dialog" },
      h("h2", { id: "cancel-title" }, "Cancel this run?"),
      h("p", null, "It stops at its next safe point, and so do the runs it spawned."),
      h("label", { for: "cancel-reason" }, "Reason"),
      reason,
      h("div", { class: "actions" },
        h("button", { value: "keep", type: "submit" }, "Keep running"),
        h("button", { value: "cancel", class: "danger", type: "submit", id: "confirm-cancel" }, "Cancel run"))));
  dialog.addEventListener("close", () => {
    if (dialog.returnValue === "cancel") onConfirm(reason.value.trim());
  });
  return dialog;
}

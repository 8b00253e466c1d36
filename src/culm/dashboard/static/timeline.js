// A run's events rendered as a timeline that grows as they arrive.
//
// Events are queued and drawn a few milliseconds per frame, each one appended where it
// belongs: nothing already drawn is drawn again, so a run of 50,000 events costs the same
// per event as a run of 50. Rows are kept in blocks of BLOCK that the browser skips laying
// out while off screen (CSS content-visibility). Arguments, results and long data are
// drawn only when their fold is opened. The rows of single events are made in rows.js.

import { answeredRow, askedRow, genericRow, injectedRow, lazy, lifecycleRow } from "./rows.js";
import { clip, h, indented, num, pretty, tokens } from "./util.js";

const BLOCK = 200;
const FRAME_BUDGET_MS = 10;

export class Timeline {
  /** ``onRendered(lastSeq)`` is called after each frame that drew something. */
  constructor(root, { onRendered = () => {} } = {}) {
    this.root = root;
    this.onRendered = onRendered;
    this.batches = [];
    this.index = 0;
    this.scheduled = false;
    this.lastSeq = 0;
    this.section = null;
    this.all = [];
    this.message = null;
    this.tools = new Map();
    this.children = new Map();
    this.follow = true;
  }

  /** Queue events (in seq order, after those already given) to be drawn. */
  push(events) {
    if (!events.length) return;
    this.batches.push(events);
    this.schedule();
  }

  /** Events queued but not drawn yet. */
  get backlog() {
    let n = -this.index;
    for (const batch of this.batches) n += batch.length;
    return n;
  }

  schedule() {
    if (this.scheduled) return;
    this.scheduled = true;
    const run = () => this.drain();
    if (document.visibilityState === "hidden") setTimeout(run, 50);
    else requestAnimationFrame(run);
  }

  drain() {
    this.scheduled = false;
    const deadline = performance.now() + FRAME_BUDGET_MS;
    let drawn = 0;
    outer: while (this.batches.length) {
      const batch = this.batches[0];
      while (this.index < batch.length) {
        const event = batch[this.index++];
        if (event.seq > this.lastSeq) {
          this.draw(event);
          this.lastSeq = event.seq;
        }
        if ((++drawn & 31) === 0 && performance.now() > deadline) break outer;
      }
      this.batches.shift();
      this.index = 0;
    }
    if (this.index >= (this.batches[0]?.length ?? 0) && this.batches.length) {
      this.batches.shift();
      this.index = 0;
    }
    this.text();
    if (this.follow) this.root.lastElementChild?.scrollIntoView?.({ block: "end" });
    this.root.dataset.lastSeq = String(this.lastSeq);
    if (this.batches.length) this.schedule();
    this.onRendered(this.lastSeq);
  }

  // sections: rounds, and the run's own lifecycle between them

  open(kind, title, seq) {
    const summary = h("summary", null, h("span", { class: "title" }, title));
    const meta = h("span", { class: "meta" });
    summary.append(meta);
    const el = h("details", { class: `section ${kind}`, open: true, dataset: { seq } }, summary);
    this.root.append(el);
    this.section = { kind, el, meta, seq, block: null, rows: 0, messages: [], items: [] };
    this.all.push(this.section);
    this.message = null;
    return this.section;
  }

  target(kind = "round") {
    if (!this.section || (kind === "run" && this.section.kind !== "run")) {
      this.open("run", "Run", this.lastSeq + 1);
    }
    return this.section;
  }

  row(el, seq, kind) {
    const section = this.target(kind);
    if (!section.block || section.rows % BLOCK === 0) {
      section.block = h("div", { class: "block" });
      section.el.append(section.block);
    }
    section.rows += 1;
    el.dataset.seq = seq;
    section.block.append(el);
    section.items.push(el);
    return el;
  }

  // one event

  draw(event) {
    const { type, data = {}, seq } = event;
    if (type !== "message.delta") this.text();
    switch (type) {
      case "round.started": {
        const section = this.open("round", `Round ${data.round ?? ""}`, seq);
        section.number = data.round;
        return;
      }
      case "round.completed":
        if (this.section?.kind === "round") this.section.el.classList.add("done");
        this.message = null;
        return;
      case "round.restarted":
        return this.restart(event);
      case "message.delta":
        return this.delta(event);
      case "message.completed":
        return this.completed(event);
      case "tool.started":
        return this.toolStarted(event);
      case "tool.completed":
      case "tool.failed":
        return this.toolEnded(event);
      case "budget.updated":
        return this.budget(event);
      case "child.started":
        return this.childStarted(event);
      case "child.completed":
        return this.childEnded(event);
      case "run.waiting":
        return this.alone(askedRow(event), seq);
      case "input.received":
        return this.alone(answeredRow(event), seq);
      case "message.injected":
        return this.alone(injectedRow(event), seq);
      default:
        if (type.startsWith("run.")) return this.alone(lifecycleRow(event), seq, "run");
        return this.row(genericRow(event), seq);
    }
  }

  /** A row made in rows.js that cuts into the text being streamed: what follows is new text. */
  alone(el, seq, kind) {
    this.message = null;
    this.row(el, seq, kind);
  }

  delta({ data, seq }) {
    if (data.reset) {
      // the model's stream broke and was retried: the text so far is void
      this.text();
      if (this.message) strike(this.message, -1, "discarded: the model's stream was retried");
      this.message = null;
      return;
    }
    const text = data.text ?? "";
    let message = this.message;
    if (!message) {
      const node = document.createTextNode("");
      const el = h("div", { class: "msg" }, node);
      this.row(el, seq);
      message = this.message = { el, node, segs: [], length: 0, waiting: [] };
      this.section.messages.push(message);
    }
    message.segs.push(seq, message.length);
    message.waiting.push(text);
    message.length += text.length;
  }

  /** Put the text of the deltas drawn since the last call into the page, in one piece. */
  text() {
    const message = this.message;
    if (message?.waiting.length) {
      message.node.appendData(message.waiting.join(""));
      message.waiting = [];
    }
  }

  completed({ data, seq }) {
    const message = this.message;
    if (message && message.length) {
      message.el.classList.add("complete");
    } else if (data.text) {
      const el = h("div", { class: "msg complete" }, data.text);
      this.row(el, seq);
    }
    this.message = null;
  }

  restart({ data, seq }) {
    // a model call cut off by a crash is made again: what was streamed after
    // discard_after_seq is void, in whichever sections it reached
    const after = Number(data.discard_after_seq ?? 0);
    const note = "discarded: the round was restarted";
    for (let s = this.all.length - 1; s >= 0; s--) {
      const section = this.all[s];
      for (const message of section.messages) strike(message, after, note);
      for (let i = section.items.length - 1; i >= 0; i--) {
        const item = section.items[i];
        if (Number(item.dataset.seq) <= after) break;
        if (!item.classList.contains("msg") && !item.classList.contains("life")) {
          item.classList.add("discarded");
        }
      }
      if (section.seq <= after) break;
    }
    // the round goes on in a group of its own, after whatever came between (run.resumed)
    this.open("round", `Round ${data.round ?? ""}, made again`, seq).number = data.round;
    const row = h("div", { class: "ev restarted" }, h("span", { class: "seq" }, seq));
    row.append(
      h("span", { class: "type" }, "round.restarted"),
      h("span", null, `round ${data.round ?? ""} made again; what followed event ${after} is struck`),
    );
    this.row(row, seq);
  }

  toolStarted({ data, seq, ts }) {
    const key = data.call_id ?? `${data.name}#${seq}`;
    const phase = h("span", { class: "phase" }, "running…");
    const summary = h(
      "summary",
      null,
      h("span", { class: "seq" }, seq),
      h("span", { class: "tool-name" }, data.name ?? "tool"),
      phase,
      h("code", { class: "preview" }, clip(pretty(data.arguments ?? {}, 0), 100)),
    );
    const el = h("details", { class: "ev tool running" }, summary);
    const call = { el, phase, arguments: data.arguments, started: ts, result: undefined };
    lazy(el, () => {
      const parts = [h("h4", null, "Arguments"), h("pre", null, indented(call.arguments ?? {}))];
      if (call.error !== undefined) {
        parts.push(h("h4", null, "Error"), h("pre", { class: "error-text" }, String(call.error)));
      } else if (call.result !== undefined) {
        parts.push(h("h4", null, "Result"), h("pre", null, indented(call.result)));
      }
      return parts;
    });
    this.tools.set(key, call);
    this.row(el, seq);
  }

  toolEnded(event) {
    const { type, data, seq, ts } = event;
    let call = this.tools.get(data.call_id);
    if (!call) {
      this.toolStarted({ data: { ...data, arguments: undefined }, seq, ts });
      call = this.tools.get(data.call_id ?? `${data.name}#${seq}`);
    }
    this.tools.delete(data.call_id);
    const took = Date.parse(ts) - Date.parse(call.started);
    call.el.classList.remove("running");
    if (type === "tool.failed" && data.refused) {
      // a person said no: the call was never made
      call.error = data.error ?? "refused";
      call.el.classList.add("refused");
      call.phase.textContent = `refused: ${clip(String(call.error).replace(/^a person refused this call:? ?/, "") || "no reason given", 120)}`;
    } else if (type === "tool.failed") {
      call.error = data.error ?? "failed";
      call.el.classList.add("failed");
      call.phase.textContent = `failed: ${clip(String(call.error), 120)}`;
    } else {
      call.result = data.result;
      call.el.classList.add("done");
      call.phase.textContent = Number.isFinite(took) ? `done · ${took} ms` : "done";
    }
    call.el.dispatchEvent(new Event("culm:changed"));
  }

  budget({ data }) {
    if (this.section?.kind === "round") {
      const used = tokens(data.usage);
      if (used !== null) this.section.meta.textContent = ` · ${num(used)} tokens`;
    }
  }

  childStarted({ data, seq }) {
    const status = h("span", { class: "badge s-running" }, "running");
    const link = h("a", { href: `#/runs/${data.run_id}` }, data.agent ?? data.run_id);
    const row = h(
      "div",
      { class: "ev child" },
      h("span", { class: "seq" }, seq),
      h("span", { class: "type" }, "child"),
      link,
      " ",
      status,
    );
    this.children.set(data.run_id, { row, status });
    this.row(row, seq);
  }

  childEnded({ data, seq }) {
    const child = this.children.get(data.run_id);
    if (!child) return this.childStarted({ data, seq });
    child.status.className = `badge s-${data.status}`;
    child.status.textContent = data.status;
    const said = data.error ?? data.summary;
    if (said !== undefined && said !== null) {
      const text = typeof said === "string" ? said : pretty(said, 0);
      child.row.append(" ", h("span", { class: data.error ? "error-text" : "muted" }, clip(text, 200)));
    }
  }
}

/** Strike the text of ``message`` streamed after seq ``after`` (all of it for -1). */
function strike(message, after, title) {
  const segs = message.segs;
  if (!segs.length || segs[segs.length - 2] <= after) return;
  let i = 0;
  while (i < segs.length && segs[i] <= after) i += 2;
  if (i >= segs.length) return;
  const offset = segs[i + 1];
  const tail = offset > 0 ? message.node.splitText(offset) : message.node;
  const del = h("del", { class: "discarded", title });
  message.el.classList.add("complete");
  tail.replaceWith(del);
  del.append(tail);
  if (offset > 0) {
    message.segs = segs.slice(0, i);
    message.length = offset;
  } else {
    message.node = document.createTextNode("");
    message.el.append(message.node);
    message.segs = [];
    message.length = 0;
  }
}

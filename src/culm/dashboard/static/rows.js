// The rows of the timeline that each show one event, as they are: the run's lifecycle, what
// the run asked a person and what it was told, messages sent to it, and any other event;
// and the folds whose content is drawn only when opened. Where a row goes is timeline.js's.

import { clip, h, indented, pretty } from "./util.js";

/** run.* events: started, queued, completed (its output folded), failed, cancelled. */
export function lifecycleRow({ type, data = {}, seq, ts }) {
  const name = type.slice(4);
  const row = h("div", { class: `ev life ${name}`, title: ts }, h("span", { class: "seq" }, seq));
  row.append(h("span", { class: "type" }, type));
  if (type === "run.failed" || type === "run.interrupted") {
    row.append(h("span", { class: "error-text" }, data.error ?? ""));
  } else if (type === "run.cancelled") {
    row.append(h("span", null, data.error ?? `cancelled by ${data.by ?? "?"}`));
  } else if (type === "run.completed") {
    row.append(fold("output", data.output));
  } else if (type === "run.queued") {
    row.append(h("span", { class: "muted" }, `${data.agent ?? ""} · ${data.trigger ?? ""}`));
  } else if (Object.keys(data).length) {
    row.append(h("code", null, clip(pretty(data, 0), 200)));
  }
  return row;
}

/** run.waiting: the tool call to approve, or the question. */
export function askedRow({ type, data = {}, seq, ts }) {
  const row = h("div", { class: "ev asked", title: ts }, h("span", { class: "seq" }, seq), h("span", { class: "type" }, type));
  if (data.kind === "approval") {
    row.append(
      h("span", null, "asks to approve "),
      h("span", { class: "tool-name" }, data.tool ?? "a tool call"),
      h("code", { class: "preview" }, clip(pretty(data.arguments ?? {}, 0), 100)),
    );
  } else {
    row.append(h("span", null, "asks: "), h("q", null, data.question ?? "?"));
  }
  return row;
}

/** input.received: the answer (approved, refused and why, timed out) and who gave it. */
export function answeredRow({ type, data = {}, seq, ts }) {
  const row = h("div", { class: "ev answered", title: ts }, h("span", { class: "seq" }, seq), h("span", { class: "type" }, type));
  if (data.timed_out) row.append(h("span", { class: "badge s-timed-out" }, "timed out"));
  if (data.kind === "approval") {
    row.classList.add(data.approve ? "approved" : "refused");
    row.append(h("strong", null, data.approve ? "approved" : "refused"));
    if (data.reason) row.append(h("span", null, `: ${data.reason}`));
    if (data.arguments) row.append(fold("with edited arguments", data.arguments));
  } else {
    row.append(h("strong", null, "answered"));
    const text = pretty(data.answer, 0);
    row.append(text.length <= 120 ? h("code", null, text) : fold(clip(text, 80), data.answer));
  }
  if (data.by && !data.timed_out) row.append(h("span", { class: "muted by" }, `by ${data.by}`));
  return row;
}

/** message.injected: a message sent while the run ran, taken in at the start of a round. */
export function injectedRow({ data = {}, ts }) {
  return h("div", { class: "msg user complete", title: ts },
    h("span", { class: "who" }, "message sent to the run"),
    h("div", null, data.content ?? ""));
}

/** Any other event: its data, folded when long. */
export function genericRow({ type, data = {}, seq, ts }) {
  const text = pretty(data, 0);
  const row = h(
    "div",
    { class: "ev", title: ts },
    h("span", { class: "seq" }, seq),
    h("span", { class: "type" }, type),
  );
  if (text.length <= 200) row.append(h("code", null, text));
  else row.append(fold(clip(text, 120), data));
  return row;
}

/** A fold whose content is drawn the first time it is opened (and redrawn on change). */
export function lazy(details, build) {
  let body = null;
  const draw = () => {
    const fresh = h("div", { class: "fold-body" }, build());
    if (body) body.replaceWith(fresh);
    else details.append(fresh);
    body = fresh;
  };
  // drawn as the click (or Enter, or Space) that opens it happens, not at the "toggle"
  // event after it, which a busy page may deliver late
  details.firstElementChild.addEventListener("click", () => {
    if (!details.open && !body) draw();
  });
  details.addEventListener("toggle", () => {
    if (details.open && !body) draw();
  });
  details.addEventListener("culm:changed", () => {
    if (body) draw();
  });
}

/** A fold of ``value`` as indented JSON under ``label``. */
export function fold(label, value) {
  const details = h("details", { class: "inline-fold" }, h("summary", null, label));
  lazy(details, () => h("pre", null, indented(value)));
  return details;
}

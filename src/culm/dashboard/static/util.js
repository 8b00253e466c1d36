// Small helpers every view shares: building elements, formatting times and numbers.

/** Build an element: h("a", {href: "#/runs", class: "x", onclick: f}, "text", child...). */
export function h(tag, attrs = null, ...children) {
  const el = document.createElement(tag);
  if (attrs) {
    for (const [name, value] of Object.entries(attrs)) {
      if (value === null || value === undefined || value === false) continue;
      if (name.startsWith("on") && typeof value === "function") {
        el.addEventListener(name.slice(2), value);
      } else if (name === "class") {
        el.className = value;
      } else if (name === "dataset") {
        Object.assign(el.dataset, value);
      } else if (name in el && typeof value !== "string") {
        el[name] = value;
      } else {
        el.setAttribute(name, value === true ? "" : value);
      }
    }
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    if (Array.isArray(child)) append(el, child);
    else el.append(child instanceof Node ? child : String(child));
  }
}

/** Milliseconds since the epoch for an ISO time, or null. */
export function ms(iso) {
  return iso ? Date.parse(iso) : null;
}

/** "4 s", "3 min", "2 h", "5 d": how long ``millis`` is, roughly. */
export function duration(millis) {
  if (millis === null || millis === undefined || Number.isNaN(millis)) return "";
  const s = Math.max(0, Math.round(millis / 1000));
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
  return `${Math.floor(s / 86400)} d`;
}

/** "12 s ago" for a past ISO time. */
export function ago(iso, now = Date.now()) {
  const t = ms(iso);
  return t === null ? "" : `${duration(now - t)} ago`;
}

/** "in 3 min" (or "3 min ago") for an ISO time. */
export function relative(iso, now = Date.now()) {
  const t = ms(iso);
  if (t === null) return "";
  return t >= now ? `in ${duration(t - now)}` : `${duration(now - t)} ago`;
}

const timeFormat = new Intl.DateTimeFormat(undefined, {
  month: "short", day: "numeric", hour: "2-digit", minute: "2-digit", second: "2-digit",
});

/** A local date and time for an ISO time, short. */
export function when(iso) {
  const t = ms(iso);
  return t === null ? "" : timeFormat.format(new Date(t));
}

const numberFormat = new Intl.NumberFormat();

export function num(n) {
  return n === null || n === undefined ? "" : numberFormat.format(n);
}

/** Tokens used in a run's usage record. */
export function tokens(usage) {
  if (!usage) return null;
  if (typeof usage.total_tokens === "number") return usage.total_tokens;
  const p = usage.prompt_tokens || 0;
  const c = usage.completion_tokens || 0;
  return p + c || null;
}

/** JSON for people: compact when short, indented when not; never throws. */
export function pretty(value, indent = 2) {
  try {
    const text = JSON.stringify(value);
    if (text === undefined) return String(value);
    return text.length <= 80 ? text : JSON.stringify(value, null, indent);
  } catch {
    return String(value);
  }
}

/** JSON indented for reading, whatever its length; never throws. */
export function indented(value) {
  try {
    return JSON.stringify(value, null, 2) ?? String(value);
  } catch {
    return String(value);
  }
}

/** At most ``max`` characters of ``text``, with an ellipsis when cut. */
export function clip(text, max = 160) {
  return text.length <= max ? text : `${text.slice(0, max - 1)}…`;
}

export const TERMINAL = new Set(["completed", "failed", "cancelled", "interrupted"]);

export function isActive(status) {
  return !TERMINAL.has(status);
}

/** A coloured badge for a run status (or any state word). */
export function badge(status) {
  return h("span", { class: `badge s-${status}` }, status);
}

/** What a waiting run asks, in a line: "approve send_email {…}", or its question. */
export function asks(waiting) {
  if (!waiting) return "";
  if (waiting.kind === "approval") {
    return `approve ${waiting.tool ?? "a tool call"} ${clip(pretty(waiting.arguments ?? {}, 0), 120)}`;
  }
  return clip(String(waiting.question ?? "a question"), 160);
}

/** A short form of an id: "run_0196…c3f2". */
export function shortId(id) {
  if (!id) return "";
  return id.length > 16 ? `${id.slice(0, 10)}…${id.slice(-4)}` : id;
}

/** Remove every child of ``el``. */
export function clear(el) {
  el.replaceChildren();
  return el;
}

/** Run ``fn`` every ``seconds`` while the page is visible, until ``signal`` aborts. */
export function every(seconds, fn, signal) {
  let timer = null;
  const tick = async () => {
    timer = null;
    if (signal.aborted) return;
    if (document.visibilityState === "visible") {
      try {
        await fn();
      } catch (err) {
        if (err?.name !== "AbortError") console.warn(err);
      }
    }
    if (!signal.aborted) timer = setTimeout(tick, seconds() * 1000);
  };
  timer = setTimeout(tick, seconds() * 1000);
  signal.addEventListener("abort", () => timer && clearTimeout(timer));
}

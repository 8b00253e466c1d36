// People in the loop on a run's page: the panel that answers what a waiting run asks
// (approve or refuse a tool call, answer a question), and the box that sends a message to
// a running model agent.

import { api } from "./api.js";
import { h, indented, pretty, relative } from "./util.js";

let ids = 0;

/**
 * The panel for ``waiting`` (a run's ``waiting``: an approval or a question). It posts the
 * answer and calls ``onSent()`` once the server took it; a refused answer (422, 409) is
 * shown beside the form, which stays as it was.
 */
export function askPanel(runId, waiting, onSent) {
  const n = ++ids;
  const error = h("p", { class: "notice error ask-error", role: "alert", hidden: true });
  const busy = (on) => {
    for (const button of panel.querySelectorAll("button")) button.disabled = on;
  };

  async function send(body) {
    error.hidden = true;
    busy(true);
    try {
      await api(`/v1/runs/${encodeURIComponent(runId)}/input`, {
        method: "POST",
        body: { call_id: waiting.call_id, ...body },
      });
      onSent();
    } catch (err) {
      fail(err.message); // the server's reason (422, 409), or why it could not be reached
    } finally {
      busy(false);
    }
  }

  function fail(text) {
    error.textContent = text;
    error.hidden = false;
  }

  const form = waiting.kind === "approval"
    ? approvalForm(n, waiting, send, fail)
    : questionForm(n, waiting, send, fail);
  const panel = h("section", { class: "ask-panel", "aria-labelledby": `ask-title-${n}` },
    h("h2", { id: `ask-title-${n}` }, waiting.kind === "approval" ? "Approve this tool call?" : "This run asks you"),
    form,
    error,
    deadline(waiting));
  return panel;
}

function approvalForm(n, waiting, send, fail) {
  const original = waiting.arguments ?? {};
  const args = h("textarea", { id: `ask-args-${n}`, class: "json", rows: 5, spellcheck: false });
  args.value = indented(original);
  const reason = h("input", { id: `ask-reason-${n}`, maxlength: 2000, placeholder: "optional, the model reads it" });
  const decide = (approved) => {
    const body = { reason: reason.value.trim() || undefined };
    if (!approved) return send({ approve: false, ...body });
    // the arguments go only when edited, and only as a JSON object
    let edited;
    try {
      edited = JSON.parse(args.value);
    } catch (err) {
      return fail(`The arguments are not valid JSON: ${err.message}`);
    }
    if (!edited || typeof edited !== "object" || Array.isArray(edited)) {
      return fail("The arguments must be a JSON object.");
    }
    const changed = JSON.stringify(edited) !== JSON.stringify(original);
    return send({ approve: true, ...body, arguments: changed ? edited : undefined });
  };
  // no submit button: Enter in the reason field must not approve (nor refuse) by itself
  return h("form", { class: "ask approval", onsubmit: (event) => event.preventDefault() },
    h("p", null, "The agent wants to call ", h("code", { class: "tool-name" }, waiting.tool ?? "a tool"), "."),
    h("div", { class: "field" }, h("label", { for: args.id }, "Arguments (JSON; edit them to approve a different call)"), args),
    h("div", { class: "field" }, h("label", { for: reason.id }, "Reason"), reason),
    h("div", { class: "actions" },
      h("button", { type: "button", class: "primary", onclick: () => decide(true) }, "Approve"),
      h("button", { type: "button", class: "danger", onclick: () => decide(false) }, "Refuse")));
}

function questionForm(n, waiting, send, fail) {
  const schema = waiting.schema ?? null;
  const id = `ask-answer-${n}`;
  let field;
  let value;
  let help = "";
  if (Array.isArray(schema?.enum)) {
    // one of the allowed values; the option's value is its index in the enum
    field = h("select", { id },
      schema.enum.map((choice, i) => h("option", { value: String(i), selected: pretty(choice) === pretty(waiting.default) },
        typeof choice === "string" ? choice : pretty(choice, 0))));
    value = () => schema.enum[Number(field.value)];
  } else if (schema?.type === "string") {
    field = h("textarea", { id, rows: 3 });
    field.value = typeof waiting.default === "string" ? waiting.default : "";
    value = () => field.value;
  } else {
    field = h("textarea", { id, class: "json", rows: 5, spellcheck: false });
    if (waiting.default !== undefined) field.value = indented(waiting.default);
    value = () => {
      try {
        return JSON.parse(field.value);
      } catch (err) {
        // with no schema, plain words are an answer too
        if (!schema) return field.value;
        throw new Error(`The answer is not valid JSON: ${err.message}`);
      }
    };
    help = schema ? "Answer in JSON." : "Answer in JSON, or in plain words.";
  }
  const submit = (event) => {
    event.preventDefault();
    let answer;
    try {
      answer = value();
    } catch (err) {
      return fail(err.message);
    }
    return send({ answer });
  };
  const shape = schema && !schema.enum && schema.type !== "string"
    ? h("details", { class: "inline-fold" }, h("summary", null, "the answer's schema"), h("pre", null, indented(schema)))
    : "";
  return h("form", { class: "ask question", onsubmit: submit },
    h("div", { class: "field" },
      h("label", { for: id, class: "question-text" }, waiting.question ?? "?"),
      help ? h("span", { class: "help" }, help) : "",
      shape,
      field),
    h("div", { class: "actions" }, h("button", { type: "submit", class: "primary" }, "Answer")));
}

/** "Unanswered, it goes on refused in 3 min": what happens when nobody answers. */
function deadline(waiting) {
  if (!waiting.expires_at && !waiting.timeout) return "";
  const then = waiting.on_timeout === "continue"
    ? waiting.kind === "approval" ? "goes on refused" : "goes on with the default answer"
    : "fails";
  const when = waiting.expires_at ? relative(waiting.expires_at) : `after ${waiting.timeout} s`;
  return h("p", { class: "muted" }, `Unanswered, the run ${then} ${when}.`);
}

/** A box that sends a message to a running model agent (taken in at its next round). */
export function messageBox(runId) {
  const text = h("textarea", { id: "say-text", rows: 1, maxlength: 20000, placeholder: "taken in at the agent's next round" });
  const note = h("span", { class: "say-note muted", role: "status" });
  const error = h("span", { class: "say-error error-text", role: "alert" });
  const button = h("button", { type: "submit" }, "Send");
  const form = h("form", { class: "say", onsubmit: async (event) => {
    event.preventDefault();
    note.textContent = error.textContent = "";
    button.disabled = true;
    try {
      await api(`/v1/runs/${encodeURIComponent(runId)}/messages`, { method: "POST", body: { content: text.value } });
      text.value = "";
      note.textContent = "Sent: the agent reads it at its next round.";
    } catch (err) {
      error.textContent = err.message;
    } finally {
      button.disabled = false;
    }
  } },
  h("label", { for: "say-text" }, "Send a message"), text, button, note, error);
  return form;
}

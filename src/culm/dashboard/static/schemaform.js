// A form generated from a JSON Schema (an agent's input schema, as pydantic writes it):
// fields for objects' properties, strings, numbers, booleans and enums; a JSON box for
// anything else. ``value()`` gives the input to send, or throws with what is wrong.

import { h } from "./util.js";

let ids = 0;

/** Follow ``$ref``s into the root's ``$defs``; unwrap ``anyOf: [X, null]``. */
function resolve(schema, root) {
  let s = schema ?? {};
  for (let depth = 0; s.$ref && depth < 32; depth++) {
    const name = s.$ref.split("/").pop();
    s = { ...(root.$defs?.[name] ?? root.definitions?.[name] ?? {}), ...without(s, "$ref") };
  }
  const variants = s.anyOf ?? s.oneOf;
  if (variants) {
    const real = variants.filter((v) => v.type !== "null");
    if (real.length === 1) {
      return { ...resolve(real[0], root), ...without(s, "anyOf", "oneOf"), nullable: real.length < variants.length };
    }
  }
  return s;
}

function without(object, ...names) {
  const copy = { ...object };
  for (const name of names) delete copy[name];
  return copy;
}

/** A form for ``schema``: ``{element, value()}``; ``initial`` fills it. */
export function schemaForm(schema, initial) {
  return field(schema ?? {}, schema ?? {}, "Input", initial, true, true);
}

function field(raw, root, label, initial, required, top = false) {
  const s = resolve(raw, root);
  const id = `f${++ids}`;
  const start = initial !== undefined ? initial : s.default;
  const help = s.description ? h("small", { class: "help" }, s.description) : "";
  const title = s.title && !top ? s.title : label;
  const labelEl = h("label", { for: id }, title, required && !top ? h("span", { class: "req", "aria-hidden": "true" }, " *") : "");

  if (s.type === "object" && s.properties && !s.additionalProperties) {
    const need = new Set(s.required ?? []);
    const parts = Object.entries(s.properties).map(([name, sub]) => [
      name, field(sub, root, name, start?.[name], need.has(name)),
    ]);
    const element = h("fieldset", { class: "object" }, h("legend", null, top ? "Input" : title), help,
      parts.map(([, part]) => part.element));
    return {
      element,
      value() {
        const out = {};
        for (const [name, part] of parts) {
          const v = part.value();
          if (v !== undefined) out[name] = v;
        }
        return out;
      },
    };
  }
  if (Array.isArray(s.enum)) {
    const select = h("select", { id, name: label },
      !required || s.nullable ? h("option", { value: "" }, "—") : "",
      s.enum.map((option, i) => h("option", { value: String(i), selected: option === start }, String(option))));
    return {
      element: h("div", { class: "field" }, labelEl, select, help),
      value: () => (select.value === "" ? undefined : s.enum[Number(select.value)]),
    };
  }
  if (s.type === "boolean") {
    const box = h("input", { id, type: "checkbox", checked: Boolean(start) });
    return {
      element: h("div", { class: "field check" }, box, labelEl, help),
      value: () => box.checked,
    };
  }
  if (s.type === "integer" || s.type === "number") {
    const input = h("input", {
      id, type: "number", step: s.type === "integer" ? "1" : "any", required: required && !s.nullable && start === undefined,
      min: s.minimum ?? s.exclusiveMinimum, max: s.maximum ?? s.exclusiveMaximum,
      value: start === undefined || start === null ? "" : String(start),
    });
    return {
      element: h("div", { class: "field" }, labelEl, input, help),
      value() {
        if (input.value === "") {
          if (required && !s.nullable && s.default === undefined) throw new Error(`${title}: a number is needed`);
          return s.nullable && required ? null : undefined;
        }
        const n = Number(input.value);
        if (!Number.isFinite(n) || (s.type === "integer" && !Number.isInteger(n))) {
          throw new Error(`${title}: ${input.value} is not ${s.type === "integer" ? "a whole number" : "a number"}`);
        }
        return n;
      },
    };
  }
  if (s.type === "string") {
    const long = top || !s.maxLength || s.maxLength > 120;
    const input = long
      ? h("textarea", { id, rows: top ? 5 : 2, required: required && start === undefined, maxlength: s.maxLength, minlength: s.minLength })
      : h("input", { id, type: "text", required: required && start === undefined, maxlength: s.maxLength, minlength: s.minLength, pattern: s.pattern });
    input.value = start ?? "";
    return {
      element: h("div", { class: "field" }, labelEl, input, help),
      value() {
        if (input.value === "" && !required) return undefined;
        if (input.value === "" && s.nullable) return null;
        return input.value;
      },
    };
  }
  // anything else (arrays, free objects, unions, Any): JSON
  const area = h("textarea", { id, rows: top ? 6 : 3, class: "json", spellcheck: false, placeholder: "JSON" });
  area.value = start === undefined ? "" : JSON.stringify(start, null, 2);
  return {
    element: h("div", { class: "field" }, labelEl, area, h("small", { class: "help" }, s.description ?? "JSON")),
    value() {
      if (area.value.trim() === "") return top ? null : undefined;
      try {
        return JSON.parse(area.value);
      } catch (err) {
        throw new Error(`${title}: not valid JSON (${err.message})`);
      }
    },
  };
}

// Each agent's limits (max rounds, token budget), asked once per page load.

import { api } from "./api.js";

let asked = null;

/** ``{agent: {max_rounds, token_budget}}``; empty when the server cannot say. */
export function limits() {
  if (!asked) {
    asked = api("/dashboard/api/limits").then((body) => body.data).catch(() => {
      asked = null;
      return {};
    });
  }
  return asked;
}

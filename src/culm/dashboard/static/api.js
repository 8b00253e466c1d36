// The HTTP API as the page uses it: JSON in and out, the API key of this tab, one error type.
//
// The key lives in sessionStorage: it is asked for once, kept while the tab lives, and never
// shared with other tabs (each may be another tenant) or written to disk by the page.

const KEY = "culm.apiKey";

export class ApiError extends Error {
  constructor(status, code, message, body = null) {
    super(message);
    this.status = status;
    this.code = code;
    this.body = body;
  }
}

export function apiKey() {
  return sessionStorage.getItem(KEY);
}

export function forgetKey() {
  sessionStorage.removeItem(KEY);
}

export function authHeaders() {
  const key = apiKey();
  return key ? { Authorization: `Bearer ${key}` } : {};
}

let asking = null;

/** Ask the person for an API key (once, however many requests were refused at once). */
export function askForKey(message = "") {
  if (asking) return asking;
  const dialog = document.getElementById("key-dialog");
  const input = document.getElementById("key-input");
  const note = document.getElementById("key-note");
  note.textContent = message;
  input.value = "";
  asking = new Promise((resolve) => {
    const done = (event) => {
      event.preventDefault();
      const key = input.value.trim();
      if (!key) return;
      sessionStorage.setItem(KEY, key);
      dialog.close();
      dialog.removeEventListener("submit", done);
      asking = null;
      document.dispatchEvent(new CustomEvent("culm:key"));
      resolve(key);
    };
    dialog.addEventListener("submit", done);
    dialog.showModal();
    input.focus();
  });
  return asking;
}

/**
 * A request sent with key ``used`` was refused. Ask for a key only when that is still the
 * tab's key: an answer sent with an older key (while the person was typing a new one) is
 * just tried again, or it would ask once more for a key already given.
 */
export async function refusedKey(used, refused) {
  if (asking) return asking;
  if (apiKey() !== used) return apiKey();
  return askForKey(used ? refused.message : "");
}

/** Turn a refused response into an ApiError with the server's code and message. */
export async function failure(response) {
  let body = null;
  try {
    body = await response.json();
  } catch {
    // not JSON: a proxy's page, say
  }
  const error = body?.error ?? {};
  return new ApiError(
    response.status,
    error.code ?? `http_${response.status}`,
    error.message ?? `${response.status} ${response.statusText}`,
    error,
  );
}

/**
 * Call the API: ``api("/v1/runs", {query: {status: "running"}})``; resolves to the JSON body
 * (null for 204), or rejects with an ApiError. A 401 asks for a key and tries again.
 */
export async function api(path, { method = "GET", body, query, signal } = {}) {
  const url = new URL(path, location.href);
  for (const [name, value] of Object.entries(query ?? {})) {
    if (value !== null && value !== undefined && value !== "") url.searchParams.set(name, value);
  }
  for (;;) {
    const used = apiKey();
    const headers = { Accept: "application/json", ...authHeaders() };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const response = await fetch(url, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      signal,
    });
    if (response.status === 401) {
      const refused = await failure(response);
      await refusedKey(used, refused);
      continue;
    }
    if (!response.ok) throw await failure(response);
    if (response.status === 204) return null;
    return response.json();
  }
}

// Following a run's event stream: Server-Sent Events read with fetch (an EventSource cannot
// send an API key), resumed by sequence number after any break, so every event arrives once.

import { apiKey, authHeaders, failure, refusedKey } from "./api.js";

const TERMINAL = new Set(["run.completed", "run.failed", "run.cancelled", "run.interrupted"]);

/** Split SSE text into messages; returns [events, rest] (rest: an unfinished message). */
export function parse(text) {
  const events = [];
  let start = 0;
  for (;;) {
    const end = text.indexOf("\n\n", start);
    if (end < 0) break;
    const block = text.slice(start, end);
    start = end + 2;
    let data = null;
    for (const line of block.split("\n")) {
      if (line.startsWith("data:")) {
        const value = line.slice(line[5] === " " ? 6 : 5);
        data = data === null ? value : `${data}\n${value}`;
      }
      // "id:" and "event:" repeat what the data says; ":" lines are heartbeats
    }
    if (data !== null) events.push(JSON.parse(data));
  }
  return [events, text.slice(start)];
}

/**
 * Follow ``/v1/runs/{id}/events`` after sequence number ``after``, calling ``onBatch`` with
 * each chunk's events in order. Reconnects (with backoff) from the last event received until
 * the terminal event has arrived or ``signal`` aborts. ``onStatus`` hears "live",
 * "reconnecting" and "ended".
 */
export async function follow(runId, { after = 0, onBatch, onStatus = () => {}, signal }) {
  let seq = after;
  let delay = 250;
  const url = `/v1/runs/${encodeURIComponent(runId)}/events`;
  while (!signal.aborted) {
    let response;
    const used = apiKey();
    try {
      response = await fetch(url, {
        headers: { Accept: "text/event-stream", "Last-Event-ID": String(seq), ...authHeaders() },
        signal,
        cache: "no-store",
      });
    } catch (err) {
      if (signal.aborted) return seq;
      onStatus("reconnecting", err);
      await pause(delay, signal);
      delay = Math.min(delay * 2, 5000);
      continue;
    }
    if (response.status === 204) {
      onStatus("ended");
      return seq; // the terminal event was already seen
    }
    if (response.status === 401) {
      await refusedKey(used, await failure(response));
      continue;
    }
    if (!response.ok) throw await failure(response);
    onStatus("live");
    let ended = false;
    try {
      const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
      let rest = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        const [parsed, left] = parse(rest + value);
        rest = left;
        const fresh = parsed.filter((event) => event.seq > seq);
        if (!fresh.length) continue;
        seq = fresh[fresh.length - 1].seq;
        delay = 250;
        ended = TERMINAL.has(fresh[fresh.length - 1].type);
        onBatch(fresh);
        if (ended) break;
      }
    } catch (err) {
      if (signal.aborted) return seq;
      onStatus("reconnecting", err);
    }
    if (ended) {
      onStatus("ended");
      return seq;
    }
    if (signal.aborted) return seq;
    // the server ended the stream (shutting down) or the connection broke: resume from seq
    onStatus("reconnecting");
    await pause(delay, signal);
    delay = Math.min(delay * 2, 5000);
  }
  return seq;
}

function pause(millis, signal) {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, millis);
    signal.addEventListener("abort", () => {
      clearTimeout(timer);
      resolve();
    });
  });
}

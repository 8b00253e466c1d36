// The events a run page has received, kept in this browser (IndexedDB) so that a reload shows
// the timeline at once and asks the server only for what came after: nothing is fetched twice.
//
// A run's log only grows, so what was received stays true. Events are written in chunks (one
// record per WRITE_EVERY_MS of arrivals, whatever their number), so 50,000 events cost a few
// dozen writes, not 50,000. A write started as the page is left may never finish, so when the
// tab is hidden or left, the events not yet written go to sessionStorage (synchronous, kept
// across a reload of the tab) and load() takes them from there. The cache keeps the runs seen most recently (MAX_RUNS) and at most
// MAX_EVENTS events of each. The page shows a cached run only after the server has answered
// for it with this tab's key, so a tenant never sees another tenant's run from the cache.
// Settings has a button that empties it.

const DB = "culm-dashboard";
const TAIL = "culm.tail."; // + run id: the events not yet written when the tab was left
const VERSION = 2;
const MAX_RUNS = 20;
const WRITE_EVERY_MS = 250;
const CHUNK = 2000;
export const MAX_EVENTS = 100_000;

let opening = null;

function open() {
  if (!opening) {
    opening = new Promise((resolve, reject) => {
      const request = indexedDB.open(DB, VERSION);
      request.onupgradeneeded = () => {
        const db = request.result;
        for (const name of [...db.objectStoreNames]) db.deleteObjectStore(name);
        db.createObjectStore("chunks", { keyPath: ["run_id", "first"] });
        db.createObjectStore("runs", { keyPath: "id" }).createIndex("touched", "touched");
      };
      request.onsuccess = () => resolve(request.result);
      request.onerror = () => reject(request.error);
    }).catch((err) => {
      opening = null;
      throw err;
    });
  }
  return opening;
}

function done(tx) {
  return new Promise((resolve, reject) => {
    tx.oncomplete = () => resolve();
    tx.onerror = () => reject(tx.error);
    tx.onabort = () => reject(tx.error);
  });
}

function result(request) {
  return new Promise((resolve, reject) => {
    request.onsuccess = () => resolve(request.result);
    request.onerror = () => reject(request.error);
  });
}

function range(runId) {
  return IDBKeyRange.bound([runId, 0], [runId, Number.MAX_SAFE_INTEGER]);
}

/**
 * The run's cached events as a list of batches (seq 1..n without a gap), or [] when there
 * are none or the cache cannot be trusted (the server has fewer events than it says).
 */
export async function load(runId, lastSeq) {
  try {
    const db = await open();
    const tx = db.transaction(["chunks", "runs"], "readwrite");
    const record = await result(tx.objectStore("runs").get(runId));
    if (record && record.last_seq > lastSeq) {
      // another database behind the same address, or events purged: start over
      tx.objectStore("chunks").delete(range(runId));
      tx.objectStore("runs").delete(runId);
      takeTail(runId, 0, 0);
      return [];
    }
    const chunks = record ? await result(tx.objectStore("chunks").getAll(range(runId))) : [];
    if (record) tx.objectStore("runs").put({ ...record, touched: Date.now() });
    let expected = 1;
    const batches = [];
    for (const chunk of chunks) {
      if (chunk.first !== expected) break; // a gap: keep only what comes before it
      batches.push(chunk.events);
      expected = chunk.last + 1;
    }
    const tail = takeTail(runId, expected, lastSeq);
    if (tail.length) {
      batches.push(tail);
      store(runId, tail); // into IndexedDB with what follows
    }
    return batches;
  } catch (err) {
    console.warn("event cache unavailable", err);
    return [];
  }
}

/** The events from ``first`` on that the page left unwritten (none when they do not follow). */
function takeTail(runId, first, lastSeq) {
  let events = [];
  try {
    events = JSON.parse(sessionStorage.getItem(TAIL + runId) || "[]");
    sessionStorage.removeItem(TAIL + runId);
  } catch {
    return [];
  }
  events = events.filter((e) => e.seq >= first);
  const contiguous = events.every((e, i) => e.seq === first + i);
  return contiguous && (events.at(-1)?.seq ?? 0) <= lastSeq ? events : [];
}

const pending = new Map(); // run id -> {events: [...], timer}
const unwritten = new Map(); // run id -> events stored but not yet written (pending or writing)
let writing = Promise.resolve();
const evicted = new Set();

/** Keep received events (contiguous, after what is cached); written a few times a second. */
export function store(runId, events) {
  let entry = pending.get(runId);
  if (!entry) {
    entry = { events: [], timer: null };
    pending.set(runId, entry);
  }
  if (!unwritten.has(runId)) unwritten.set(runId, []);
  const waiting = unwritten.get(runId);
  for (const event of events) {
    entry.events.push(event);
    waiting.push(event);
  }
  if (!entry.timer) entry.timer = setTimeout(() => flush(runId), WRITE_EVERY_MS);
}

/** Write what is waiting for ``runId`` now; resolves once written. */
export function flush(runId) {
  const entry = pending.get(runId);
  if (!entry) return writing;
  pending.delete(runId);
  clearTimeout(entry.timer);
  const last = entry.events.at(-1)?.seq ?? 0;
  writing = writing.then(() => write(runId, entry.events)).catch((err) => {
    console.warn("event cache write failed", err);
  }).then(() => {
    // written, or failed (no IndexedDB: nothing to resume from anyway)
    const left = (unwritten.get(runId) ?? []).filter((e) => e.seq > last);
    if (left.length) unwritten.set(runId, left);
    else unwritten.delete(runId);
  });
  return writing;
}

/** Put the events not yet written where a reload of this tab finds them at once. */
function keepTails() {
  for (const [runId, events] of unwritten) {
    try {
      sessionStorage.setItem(TAIL + runId, JSON.stringify(events));
    } catch (err) {
      console.warn("could not keep the unwritten events", err); // too many: fetched again
    }
    flush(runId); // and write them, in case the page stays
  }
}

async function write(runId, events) {
  // at most CHUNK events a transaction: copying them into the store blocks the page
  for (let i = 0; i < events.length; i += CHUNK) await writeChunk(runId, events.slice(i, i + CHUNK));
}

async function writeChunk(runId, events) {
  const db = await open();
  const tx = db.transaction(["chunks", "runs"], "readwrite");
  const runs = tx.objectStore("runs");
  const record = (await result(runs.get(runId))) ?? { id: runId, last_seq: 0 };
  let fresh = events.filter((e) => e.seq > record.last_seq);
  if (fresh.length && fresh[0].seq === record.last_seq + 1) {
    fresh = fresh.slice(0, Math.max(0, MAX_EVENTS - record.last_seq));
    if (fresh.length) {
      tx.objectStore("chunks").put({
        run_id: runId, first: fresh[0].seq, last: fresh.at(-1).seq, events: fresh,
      });
      record.last_seq = fresh.at(-1).seq;
    }
  }
  record.touched = Date.now();
  runs.put(record);
  await done(tx);
  if (!evicted.has(runId)) {
    evicted.add(runId); // once per run and page load: the cache holds at most MAX_RUNS runs
    await evict(db, runId);
  }
}

async function evict(db, keep) {
  const all = await result(db.transaction("runs").objectStore("runs").index("touched").getAll());
  const old = all.filter((r) => r.id !== keep).slice(0, Math.max(0, all.length - MAX_RUNS));
  for (const record of old) await forget(record.id);
}

/** Drop one run's cached events. */
export async function forget(runId) {
  sessionStorage.removeItem(TAIL + runId);
  const db = await open();
  const tx = db.transaction(["chunks", "runs"], "readwrite");
  tx.objectStore("chunks").delete(range(runId));
  tx.objectStore("runs").delete(runId);
  return done(tx);
}

/** Empty the whole cache. */
export async function clearAll() {
  for (const key of Object.keys(sessionStorage)) if (key.startsWith(TAIL)) sessionStorage.removeItem(key);
  const db = await open();
  const tx = db.transaction(["chunks", "runs"], "readwrite");
  tx.objectStore("chunks").clear();
  tx.objectStore("runs").clear();
  return done(tx);
}

// a page hidden or left keeps what it has not written yet (the writes may not finish)
addEventListener("pagehide", keepTails);
document.addEventListener("visibilitychange", () => {
  if (document.visibilityState === "hidden") keepTails();
});

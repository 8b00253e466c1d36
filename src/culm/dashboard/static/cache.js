// The events a run page has received, kept in this browser (IndexedDB) so that a reload shows
// the timeline at once and asks the server only for what came after: nothing is fetched twice.
//
// A run's log only grows, so what was received stays true; the cache keeps the runs seen
// most recently (MAX_RUNS) and at most MAX_EVENTS events of each. The page shows a cached
// run only after the server has answered for it with this tab's key, so a tenant never sees
// another tenant's run from the cache. Settings has a button that empties it.

const DB = "culm-dashboard";
const MAX_RUNS = 20;
export const MAX_EVENTS = 100_000;

let opening = null;

function open() {
  if (!opening) {
    opening = new Promise((resolve, reject) => {
      const request = indexedDB.open(DB, 1);
      request.onupgradeneeded = () => {
        const db = request.result;
        db.createObjectStore("events", { keyPath: ["run_id", "seq"] });
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

/** The run's cached events, 1..n without a gap, or [] (also when the cache is unusable). */
export async function load(runId, lastSeq) {
  try {
    const db = await open();
    const tx = db.transaction(["events", "runs"], "readwrite");
    const record = await result(tx.objectStore("runs").get(runId));
    if (!record) return [];
    if (record.last_seq > lastSeq) {
      // the server knows fewer events than we do: another database, or events purged
      await forget(runId);
      return [];
    }
    const range = IDBKeyRange.bound([runId, 1], [runId, record.last_seq]);
    const events = await result(tx.objectStore("events").getAll(range));
    tx.objectStore("runs").put({ ...record, touched: Date.now() });
    if (events.length !== record.last_seq || events.at(-1)?.seq !== record.last_seq) return [];
    return events;
  } catch (err) {
    console.warn("event cache unavailable", err);
    return [];
  }
}

let writing = Promise.resolve();
const evicted = new Set();

/** Add received events (contiguous, after what is cached); writes are queued in order. */
export function store(runId, events) {
  writing = writing.then(() => write(runId, events)).catch((err) => {
    console.warn("event cache write failed", err);
  });
  return writing;
}

async function write(runId, events) {
  const db = await open();
  const tx = db.transaction(["events", "runs"], "readwrite");
  const runs = tx.objectStore("runs");
  const record = (await result(runs.get(runId))) ?? { id: runId, last_seq: 0 };
  const fresh = events.filter((e) => e.seq > record.last_seq);
  if (!fresh.length || fresh[0].seq !== record.last_seq + 1) return done(tx);
  const room = MAX_EVENTS - record.last_seq;
  const kept = room > 0 ? fresh.slice(0, room) : [];
  const put = tx.objectStore("events");
  for (const event of kept) put.put(event);
  if (kept.length) record.last_seq = kept.at(-1).seq;
  record.touched = Date.now();
  runs.put(record);
  await done(tx);
  if (!evicted.has(runId)) {
    evicted.add(runId); // once per run and page load: the cache holds at most MAX_RUNS runs
    await evict(db, runId);
  }
}

async function evict(db, keep) {
  const tx = db.transaction(["runs"], "readonly");
  const all = await result(tx.objectStore("runs").index("touched").getAll());
  const old = all.filter((r) => r.id !== keep).slice(0, Math.max(0, all.length - MAX_RUNS));
  for (const record of old) await forget(record.id);
}

/** Drop one run's cached events. */
export async function forget(runId) {
  const db = await open();
  const tx = db.transaction(["events", "runs"], "readwrite");
  tx.objectStore("events").delete(IDBKeyRange.bound([runId, 0], [runId, Number.MAX_SAFE_INTEGER]));
  tx.objectStore("runs").delete(runId);
  return done(tx);
}

/** Empty the whole cache. */
export async function clearAll() {
  const db = await open();
  const tx = db.transaction(["events", "runs"], "readwrite");
  tx.objectStore("events").clear();
  tx.objectStore("runs").clear();
  return done(tx);
}

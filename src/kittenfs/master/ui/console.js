// The kittenFS console (docs/console.md): every fact it shows and every action it takes goes
// through the master's HTTP API (docs/api.md), with the credential its user logged in with,
// kept in this tab only (sessionStorage). No framework and no build step: one module.

const $ = (id) => document.getElementById(id);
const SECTIONS = ["cluster", "live", "jobs", "keys", "credentials"];
const TOKEN = "kittenfs-token";
/** Rows of a page of the key browser. */
const PAGE = 50;
/** Keys asked for per listing request while a page is filled. */
const LIST_BATCH = 200;
/** Samples the live charts keep (two minutes at one every two seconds). */
const SAMPLES = 60;
/** Bytes of each part of a large upload. */
const PART = 8 * 1024 * 1024;
/** How often an upload's request is sent before giving up. */
const TRIES = 4;

let token = sessionStorage.getItem(TOKEN) || "";
let poller = null;

// --- the API --------------------------------------------------------------------------

class ApiError extends Error {
  constructor(status, code, detail) {
    super(`${code}: ${detail}`);
    this.status = status;
    this.code = code;
  }
}

/** Call the API; raise ApiError with the server's JSON error on any 4xx or 5xx. */
async function call(method, path, { json, headers } = {}) {
  const sent = new Headers(headers || {});
  if (token) sent.set("Authorization", `Bearer ${token}`);
  let body;
  if (json !== undefined) {
    sent.set("Content-Type", "application/json");
    body = JSON.stringify(json);
  }
  const answer = await fetch(path, { method, headers: sent, body, cache: "no-store" });
  if (!answer.ok) {
    let code = String(answer.status);
    let detail = answer.statusText;
    try {
      const problem = await answer.json();
      code = problem.error || code;
      detail = problem.detail || detail;
    } catch (_) { /* no JSON body (a missing key's 404) */ }
    if (answer.status === 401 && token) logOut("The credential was refused: log in again.");
    throw new ApiError(answer.status, code, detail);
  }
  return answer;
}

const getJSON = async (path) => (await call("GET", path)).json();

/** Paths the master answers itself (keys.RESERVED_PATHS and RESERVED_PREFIXES: a test
 * holds the two lists equal). */
const RESERVED = new Set(["/health", "/_cluster", "/gets", "/clear", "/metrics", "/ui", "/ui/", "/ui/console.js", "/ui/console.css"]);
const RESERVED_PREFIXES = ["/_", "/put/", "/get/", "/delete/"];

/** A key as a URL path, as the Python client makes it (keys.key_path): each segment
 * percent-encoded, and a leading "//" or a route's name escaped, so that the path names
 * the key and not a route or another host. */
function keyPath(key) {
  let path = key.split("/").map(encodeURIComponent).join("/");
  if (path.startsWith("//")) path = `/%2F${path.slice(2)}`;
  if (RESERVED.has(path) || RESERVED_PREFIXES.some((prefix) => path.startsWith(prefix))) {
    const first = path.charCodeAt(1).toString(16).toUpperCase().padStart(2, "0");
    path = `/%${first}${path.slice(2)}`;
  }
  return path;
}

/** Whether a browser can name ``key`` in a URL: every URL parser rewrites "." and ".."
 * segments, even percent-encoded, so such keys are shown but not acted on here. */
const addressable = (key) => !key.split("/").some((s) => s === "." || s === "..");

// --- small helpers ------------------------------------------------------------------------

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (name === "class") node.className = value;
    else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else if (value !== undefined && value !== null && value !== false) node.setAttribute(name, value);
  }
  for (const child of children.flat()) {
    if (child !== null && child !== undefined) node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

function bytes(n) {
  if (n === null || n === undefined) return "–";
  const units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i += 1; }
  return `${n.toFixed(i && n < 10 ? 1 : 0)} ${units[i]}`;
}

const when = (seconds) => new Date(seconds * 1000).toLocaleString();

function ago(seconds) {
  if (!seconds) return "never";
  const s = Math.max(0, Date.now() / 1000 - seconds);
  return s < 90 ? `${s.toFixed(0)} s ago` : `${(s / 60).toFixed(0)} min ago`;
}

function duration(seconds) {
  if (!isFinite(seconds)) return "–";
  if (seconds < 90) return `${Math.ceil(seconds)} s`;
  if (seconds < 5400) return `${Math.round(seconds / 60)} min`;
  return `${(seconds / 3600).toFixed(1)} h`;
}

const badge = (state) => el("span", { class: `badge ${state}` }, state);

function say(text) { $("status").textContent = text; }

function problem(error) {
  const box = $("problem");
  if (!error) { box.hidden = true; box.textContent = ""; return; }
  box.textContent = error instanceof ApiError ? `${error.message}` : String(error);
  box.hidden = false;
}

/** Run an action from a button or form, showing its failure instead of throwing it. */
function guarded(action) {
  return async (event) => {
    if (event && event.preventDefault) event.preventDefault();
    problem(null);
    try { await action(event); } catch (error) { problem(error); }
  };
}

// --- logging in ---------------------------------------------------------------------------

/** Open the console: no login when the cluster's API is open (auth off). */
async function start() {
  if (!token) {
    const open = await fetch("/_cluster", { cache: "no-store" });
    if (open.status === 401) return showLogin();
  }
  $("nav").hidden = false;
  $("login").hidden = true;
  if (!location.hash) location.hash = "#cluster";
  show();
}

function showLogin() {
  $("nav").hidden = true;
  for (const name of SECTIONS) $(name).hidden = true;
  $("login").hidden = false;
  $("login-token").focus();
}

async function logIn() {
  const given = $("login-token").value.trim();
  const secret = $("login-secret").value.trim();
  token = secret ? `kfs.${given}.${secret}` : given;
  const answer = await fetch("/_cluster", { headers: { Authorization: `Bearer ${token}` }, cache: "no-store" });
  if (answer.status === 401) {
    token = "";
    throw new ApiError(401, "bad_credentials", "this token or key is not known, or has expired");
  }
  sessionStorage.setItem(TOKEN, token);
  $("login-secret").value = "";
  say(answer.status === 403 ? "Logged in; this credential cannot see the whole cluster." : "Logged in.");
  await start();
}

function logOut(why) {
  token = "";
  sessionStorage.removeItem(TOKEN);
  stopPolling();
  say(why || "Logged out.");
  showLogin();
}

// --- sections -----------------------------------------------------------------------------

function stopPolling() {
  if (poller) clearInterval(poller);
  poller = null;
}

function poll(every, load) {
  stopPolling();
  const run = async () => { try { await load(); } catch (error) { problem(error); } };
  run();
  poller = setInterval(run, every);
}

const LOADERS = {
  cluster: () => { countKeys(); poll(3000, loadCluster); },
  live: () => { samples.length = 0; last = null; poll(2000, sampleMetrics); },
  jobs: () => poll(1000, loadJobs),
  keys: () => { stopPolling(); guarded(() => openFolder(folder, ""))(); },
  credentials: () => { stopPolling(); guarded(loadCredentials)(); },
};

function show() {
  if (!$("login").hidden) return;
  const name = SECTIONS.includes(location.hash.slice(1)) ? location.hash.slice(1) : "cluster";
  for (const section of SECTIONS) $(section).hidden = section !== name;
  for (const link of document.querySelectorAll("nav#nav a")) {
    if (link.getAttribute("href") === `#${name}`) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  problem(null);
  say("");
  LOADERS[name]();
}

// --- the cluster --------------------------------------------------------------------------

let keyCounts = null;

async function countKeys() {
  try {
    keyCounts = { ...(await getJSON("/_cluster?keys=1")).keys, at: Date.now() / 1000 };
    await loadCluster();
  } catch (error) { problem(error); }
}

function card(label, value, alarm = false) {
  return el("div", { class: alarm ? "card alarm" : "card" }, label, el("b", {}, value));
}

async function loadCluster() {
  const cluster = await getJSON("/_cluster");
  const up = cluster.workers.filter((w) => w.state === "up").length;
  const cache = cluster.cache;
  const looked = cache.hits + cache.misses;
  const cards = [
    card("Workers up", `${up} / ${cluster.workers.length}`, up < cluster.workers.length),
    card("Copies of each value", cluster.replicas),
    card("Repair queue", cluster.repairs.queued, cluster.repairs.queued > 0),
    card("Cache hit rate", looked ? `${((100 * cache.hits) / looked).toFixed(0)} %` : "–"),
  ];
  if (keyCounts) {
    cards.push(
      card("Keys", keyCounts.live),
      card("Under-replicated", keyCounts.under_replicated, keyCounts.under_replicated > 0),
      card("Misplaced", keyCounts.misplaced, keyCounts.misplaced > 0),
    );
  }
  $("cluster-cards").replaceChildren(...cards);
  $("workers").tBodies[0].replaceChildren(...cluster.workers.map(workerRow));
  const history = cluster.history.slice(-30).reverse();
  $("history").replaceChildren(
    ...history.map((e) => el("li", {}, `${when(e.at)}: worker ${e.worker} `, badge(e.state === "registered" ? "up" : e.state), e.state === "registered" ? " (registered)" : "")),
  );
  if (!history.length) $("history").replaceChildren(el("li", {}, "No worker changed state since this master started."));
  say(keyCounts ? `Keys counted ${ago(keyCounts.at)}.` : "Counting keys…");
}

function workerRow(w) {
  const used = w.bytes_used ?? 0;
  const total = used + (w.free_bytes ?? 0);
  const disk = w.free_bytes === null
    ? "no heartbeat yet"
    : el("div", { class: "bar" },
      el("progress", { max: total || 1, value: used, "aria-label": `worker ${w.index} disk used` }),
      `${bytes(used)} used, ${bytes(w.free_bytes)} free`);
  const drain = w.draining
    ? el("button", { type: "button", onclick: guarded(() => undrain(w.index)) }, "Stop draining")
    : el("button", { type: "button", onclick: guarded(() => drain(w.index)) }, "Drain");
  return el("tr", { "data-worker": w.index },
    el("td", {}, `${w.index} `, el("small", {}, w.url)),
    el("td", {}, badge(w.state), w.draining ? [" ", badge("draining")] : null),
    el("td", {}, disk),
    el("td", { class: "num" }, w.key_count ?? "–"),
    el("td", { class: "num" }, bytes(w.bytes_used)),
    el("td", {}, ago(w.last_heartbeat)),
    el("td", { class: "actions" }, drain),
  );
}

async function drain(index) {
  if (!confirm(`Drain worker ${index}? Its copies move to the other workers.`)) return;
  await call("POST", `/_workers/${index}/drain`, { json: {} });
  say(`Draining worker ${index}: see Jobs.`);
  await loadCluster();
}

async function undrain(index) {
  await call("DELETE", `/_workers/${index}/drain`);
  say(`Worker ${index} takes new copies again.`);
  await loadCluster();
}

// --- live metrics -------------------------------------------------------------------------

const samples = [];
let last = null;

/** Sum the master's metrics that the charts draw, from the Prometheus text format. */
function parseMetrics(text) {
  const totals = { requests: 0, errors: 0, in: 0, out: 0, buckets: new Map() };
  for (const line of text.split("\n")) {
    const m = /^([a-z_]+)(?:\{([^}]*)\})? ([^ ]+)/.exec(line);
    if (!m) continue;
    const [, name, labelText = "", raw] = m;
    const value = Number(raw);
    const labels = Object.fromEntries([...labelText.matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)].map((l) => [l[1], l[2]]));
    if (name === "kittenfs_requests_total") {
      totals.requests += value;
      if (labels.status >= "500") totals.errors += value;
    } else if (name === "kittenfs_bytes_in_total") totals.in += value;
    else if (name === "kittenfs_bytes_out_total") totals.out += value;
    else if (name === "kittenfs_request_seconds_bucket") {
      const le = labels.le === "+Inf" ? Infinity : Number(labels.le);
      totals.buckets.set(le, (totals.buckets.get(le) || 0) + value);
    }
  }
  return totals;
}

/** The ``q`` quantile (seconds) of the requests between two scrapes' histograms. */
function quantile(q, before, after) {
  const bounds = [...after.buckets.keys()].sort((a, b) => a - b);
  const counts = bounds.map((b) => after.buckets.get(b) - (before.buckets.get(b) || 0));
  const total = counts[counts.length - 1] || 0;
  if (!total) return null;
  let lower = 0;
  let below = 0;
  for (let i = 0; i < bounds.length; i += 1) {
    if (counts[i] >= q * total) {
      if (bounds[i] === Infinity) return lower;
      const inside = counts[i] - below;
      return lower + (bounds[i] - lower) * (inside ? (q * total - below) / inside : 1);
    }
    lower = bounds[i];
    below = counts[i];
  }
  return lower;
}

async function sampleMetrics() {
  const text = await (await call("GET", "/metrics")).text();
  const now = { at: performance.now() / 1000, ...parseMetrics(text) };
  const reset = last && ["requests", "errors", "in", "out"].some((name) => now[name] < last[name]);
  if (last && !reset) {  // counters that fell: the master restarted; start again from here
    const dt = now.at - last.at;
    samples.push({
      rate: (now.requests - last.requests) / dt,
      errors: (now.errors - last.errors) / dt,
      in: (now.in - last.in) / dt,
      out: (now.out - last.out) / dt,
      p50: quantile(0.5, last, now),
      p95: quantile(0.95, last, now),
      p99: quantile(0.99, last, now),
    });
    if (samples.length > SAMPLES) samples.shift();
    drawLive();
  }
  last = now;
}

function chart(svgId, series) {
  const svg = $(svgId);
  const all = series.flatMap((s) => s.filter((v) => v !== null));
  const top = Math.max(...all, 1e-9);
  svg.setAttribute("viewBox", `0 0 ${SAMPLES - 1} 100`);
  svg.setAttribute("preserveAspectRatio", "none");
  const lines = series.map((values, i) => {
    const points = values
      .map((v, x) => (v === null ? null : `${x + SAMPLES - values.length},${100 - (95 * v) / top}`))
      .filter(Boolean)
      .join(" ");
    const line = document.createElementNS("http://www.w3.org/2000/svg", "polyline");
    line.setAttribute("points", points);
    line.setAttribute("class", `s${i}`);
    return line;
  });
  svg.replaceChildren(...lines);
}

function drawLive() {
  const pick = (name) => samples.map((s) => s[name]);
  const ms = (name) => samples.map((s) => (s[name] === null ? null : s[name] * 1000));
  chart("chart-rate", [pick("rate")]);
  chart("chart-latency", [ms("p50"), ms("p95"), ms("p99")]);
  chart("chart-bytes", [pick("in"), pick("out")]);
  chart("chart-errors", [pick("errors")]);
  const s = samples[samples.length - 1];
  const fmt = (v) => (v === null ? "–" : (v * 1000).toFixed(1));
  $("now-rate").textContent = `now ${s.rate.toFixed(1)} requests/s`;
  $("now-latency").textContent = `now p50 ${fmt(s.p50)}, p95 ${fmt(s.p95)}, p99 ${fmt(s.p99)} ms`;
  $("now-bytes").textContent = `now in ${bytes(s.in)}/s, out ${bytes(s.out)}/s`;
  $("now-errors").textContent = `now ${s.errors.toFixed(2)} errors/s`;
}

// --- jobs ---------------------------------------------------------------------------------

async function startJob() {
  const kind = $("job-kind").value;
  const dry = $("job-dry").checked;
  const job = await (await call("POST", `/_jobs/${kind}`, { json: { dry_run: dry } })).json();
  say(`Started ${kind}${dry ? " (dry run)" : ""}: job ${job.id}.`);
  await loadJobs();
}

async function loadJobs() {
  const { jobs } = await getJSON("/_jobs");
  $("job-list").replaceChildren(...jobs.slice().reverse().map(jobItem));
  if (!jobs.length) $("job-list").replaceChildren(el("li", {}, "No job has run on this master yet."));
}

function counts(named) {
  return Object.entries(named || {}).map(([name, n]) => `${name} ${n}`).join(", ") || "none";
}

function jobItem(job) {
  const total = job.items_total || 0;
  const done = job.items_done || 0;
  const running = job.state === "running";
  const eta = running && done && total ? (job.elapsed_s * (total - done)) / done : NaN;
  const dry = job.options && job.options.dry_run;
  return el("li", { "data-job": job.id, "data-state": job.state },
    el("div", { class: "line" },
      el("strong", {}, job.kind), dry ? el("span", {}, "(dry run)") : null, badge(job.state),
      el("small", {}, `job ${job.id}, started ${when(job.started)}`),
      running ? el("button", { type: "button", class: "danger", onclick: guarded(() => cancelJob(job.id)) }, "Cancel") : null),
    el("div", { class: "line" },
      el("progress", { max: total || 1, value: total ? done : running ? null : 1, "aria-label": `${job.kind} progress` }),
      el("span", {}, total ? `${done} of ${total} (${((100 * done) / total).toFixed(0)} %)` : `${done} done`),
      el("span", {}, running ? `ETA ${duration(eta)}` : `took ${duration(job.elapsed_s)}`)),
    el("div", { class: "line" },
      el("span", {}, `found: ${counts(job.found)}`), el("span", {}, `fixed: ${counts(job.fixed)}`),
      job.errors && job.errors.length ? el("span", {}, `${job.errors.length} errors`) : null),
  );
}

async function cancelJob(id) {
  await call("DELETE", `/_jobs/${id}`);
  say(`Job ${id} cancelled.`);
  await loadJobs();
}

// --- the key browser ----------------------------------------------------------------------

let folder = "/";
/** The start of each page shown before this one (for "Previous page"). */
let starts = [];
let nextStart = "";

/** One page of ``prefix``'s folders and keys from ``start``, at most PAGE rows, each folder
 * once however many keys it holds: the keys of the folder last listed are passed over, and
 * a batch that ends inside it jumps past the rest (the listing restarts at the folder's
 * name with its "/" made "0", the next byte). */
async function listPage(prefix, start) {
  const rows = [];
  let from = start || prefix;
  for (;;) {
    const batch = await getJSON(`${keyPath(prefix)}?list&limit=${LIST_BATCH}&start=${encodeURIComponent(from)}`);
    for (const key of batch.keys) {
      const rest = key.slice(prefix.length);
      const slash = rest.indexOf("/");
      const sub = slash >= 0 ? prefix + rest.slice(0, slash + 1) : null;
      if (sub && rows.length && rows[rows.length - 1].key === sub) continue;
      if (rows.length === PAGE) return { rows, next: key };
      rows.push(sub ? { folder: true, name: rest.slice(0, slash + 1), key: sub } : { folder: false, name: rest, key });
    }
    if (!batch.next) return { rows, next: "" };
    const tail = rows[rows.length - 1];
    from = tail && tail.folder && batch.next.startsWith(tail.key) ? `${tail.key.slice(0, -1)}0` : batch.next;
  }
}

async function openFolder(prefix, start, back = false) {
  if (prefix !== folder || (!start && !back)) starts = [];  // a folder opened from its top
  folder = prefix;
  const { rows, next } = await listPage(prefix, start);
  nextStart = next;
  if (!back && start) starts.push(start);
  $("page-back").disabled = !starts.length && !start;
  $("page-next").disabled = !next;
  drawCrumbs();
  const body = $("key-table").tBodies[0];
  body.replaceChildren(...rows.map(keyRow));
  if (!rows.length) body.replaceChildren(el("tr", {}, el("td", { colspan: 4 }, "Nothing here yet: upload files above.")));
  say(`${folder}: ${rows.length} entries${next ? ", more on the next page" : ""}.`);
  await Promise.all(rows.filter((r) => !r.folder && addressable(r.key)).map(fillHead));
  $("key-table").dataset.loaded = folder;
}

function drawCrumbs() {
  const parts = folder.split("/").slice(1, -1);
  const crumbs = [el("button", { type: "button", onclick: guarded(() => openFolder("/", "")) }, "/")];
  let path = "/";
  for (const part of parts) {
    path += `${part}/`;
    const target = path;
    crumbs.push(el("button", { type: "button", onclick: guarded(() => openFolder(target, "")) }, `${part}/`));
  }
  $("crumbs").replaceChildren(...crumbs);
}

function keyRow(row) {
  if (!addressable(row.key)) {
    return el("tr", { "data-key": row.key },
      el("td", {}, row.name), el("td", {}, row.folder ? "folder" : ""), el("td", {}),
      el("td", {}, "a \".\" or \"..\" segment: use the client or the CLI"));
  }
  if (row.folder) {
    return el("tr", { "data-key": row.key },
      el("td", {}, el("button", { type: "button", onclick: guarded(() => openFolder(row.key, "")) }, row.name)),
      el("td", {}, "folder"), el("td", {}), el("td", {}));
  }
  return el("tr", { "data-key": row.key },
    el("td", {}, row.name), el("td", { class: "num size" }, "…"), el("td", { class: "md5" }, ""),
    el("td", { class: "actions" },
      el("button", { type: "button", onclick: guarded(() => details(row.key)), "aria-label": `Details of ${row.name}` }, "Details"),
      el("button", { type: "button", onclick: guarded(() => download(row.key)), "aria-label": `Download ${row.name}` }, "Download"),
      el("button", { type: "button", class: "danger", onclick: guarded(() => remove(row.key)), "aria-label": `Delete ${row.name}` }, "Delete")));
}

/** Fill in a key's size and MD5 from a HEAD (answered by the master, never redirected). */
async function fillHead(row) {
  const tr = [...$("key-table").tBodies[0].rows].find((r) => r.dataset.key === row.key);
  try {
    const head = await call("HEAD", keyPath(row.key));
    tr.querySelector(".size").textContent = bytes(Number(head.headers.get("X-Kfs-Size")));
    tr.querySelector(".md5").textContent = head.headers.get("Content-Md5");
  } catch (error) {
    tr.querySelector(".size").textContent = error.status === 404 ? "gone" : "?";
  }
}

async function details(key) {
  const info = await getJSON(`${keyPath(key)}?replicas`);
  const item = (term, ...value) => [el("dt", {}, term), el("dd", {}, ...value)];
  $("details-title").textContent = key;
  $("details-body").replaceChildren(
    ...item("Size", `${bytes(info.size)} (${info.size} bytes)`),
    ...item("MD5", info.md5),
    ...item("Version", info.version),
    ...item("Modified", new Date(info.modified_ms).toLocaleString()),
    ...item("State", info.state),
    ...item("Replicas", el("ul", {}, info.replicas.map((r) => el("li", { "data-replica": r.worker }, `worker ${r.worker} `, badge(r.state), r.url ? ` ${r.url}` : "")))),
  );
  $("share-url").hidden = true;
  $("share-url").value = "";
  $("share-make").onclick = guarded(() => share(key));
  $("details").showModal();
}

async function signed(key, seconds) {
  return (await call("POST", "/_sign", { json: { key, method: "GET", expires_s: seconds } })).json();
}

/** Download through a signed link, streamed by the master itself (``direct``): the
 * answer stays on this origin, so the browser keeps the key's name for the file. */
async function download(key) {
  const { url } = await signed(key, 300);
  const link = el("a", { href: `${url}&direct`, download: key.split("/").pop() });
  document.body.append(link);
  link.click();
  link.remove();
  say(`Downloading ${key}.`);
}

async function share(key) {
  const seconds = Number($("share-expiry").value);
  const { url, expires } = await signed(key, seconds);
  $("share-url").value = url;
  $("share-url").hidden = false;
  $("share-url").select();
  say(`Share link for ${key}, valid until ${when(expires)}.`);
}

async function remove(key) {
  if (!confirm(`Delete ${key}?`)) return;
  await call("DELETE", keyPath(key));
  say(`Deleted ${key}.`);
  await openFolder(folder, starts.length ? starts[starts.length - 1] : "", true);
}

/** Upload files into the folder shown, each with a progress bar: a file up to PART bytes
 * in one streamed PUT, a larger one in parts of PART bytes (/_uploads: docs/api.md). Each
 * request is sent up to TRIES times while the failure may pass (a lost connection, 408,
 * 429 or a 5xx), waiting as Retry-After says or longer each time, so a dropped connection
 * costs one part. */
function upload(files) {
  for (const file of files) {
    const key = folder + file.name;
    const bar = el("progress", { max: file.size || 1, value: 0, "aria-label": `upload of ${file.name}` });
    const note = el("span", {}, "starting");
    const item = el("li", { "data-upload": key }, el("span", {}, file.name), bar, note);
    $("uploads").append(item);
    const shown = (done) => {
      bar.value = done;
      note.textContent = `${bytes(done)} of ${bytes(file.size)}`;
    };
    const send = file.size > PART ? inParts(key, file, shown) : retried(() => sent("PUT", keyPath(key), file, shown));
    send.then((how) => {
      bar.value = bar.max;
      note.textContent = how;
      item.dataset.done = "yes";
      guarded(() => openFolder(folder, ""))();
    }, (error) => {
      note.textContent = `failed: ${error.message}`;
      item.dataset.done = "failed";
    });
  }
}

/** Send ``body`` with XMLHttpRequest (fetch reports no upload progress): resolve with a
 * note once stored; reject with the server's reason, its status and its Retry-After. */
function sent(method, path, body, shown) {
  return new Promise((resolve, reject) => {
    const request = new XMLHttpRequest();
    request.open(method, path);
    if (token) request.setRequestHeader("Authorization", `Bearer ${token}`);
    request.upload.onprogress = (e) => shown(e.loaded);
    request.onload = () => {
      if (request.status >= 200 && request.status < 300) return resolve("stored");
      if (request.status === 401 && token) logOut("The credential was refused: log in again.");
      let detail = request.statusText;
      try { detail = JSON.parse(request.responseText).detail; } catch (_) { /* not JSON */ }
      return reject(Object.assign(new Error(`${request.status} ${detail}`), {
        status: request.status, retryAfter: Number(request.getResponseHeader("Retry-After")) || 0,
      }));
    };
    request.onerror = () => reject(Object.assign(new Error("the connection was lost"), { status: 0 }));
    request.send(body);
  });
}

/** Whether a failed request may succeed if sent again. */
const passing = (error) => !error.status || error.status === 408 || error.status === 429 || error.status >= 500;

/** ``attempt()``, again while it fails in a way that may pass, TRIES times at most. */
async function retried(attempt) {
  for (let tries = 1; ; tries += 1) {
    try {
      return await attempt();
    } catch (error) {
      if (tries >= TRIES || !passing(error)) throw error;
      const wait = Math.max(error.retryAfter || 0, 2 ** (tries - 1));
      await new Promise((resume) => setTimeout(resume, wait * 1000));
    }
  }
}

async function inParts(key, file, shown) {
  const { upload: id } = await (await call("POST", "/_uploads", { json: { key } })).json();
  const count = Math.ceil(file.size / PART);
  try {
    for (let n = 1; n <= count; n += 1) {
      const first = (n - 1) * PART;
      const piece = file.slice(first, Math.min(file.size, first + PART));
      await retried(() => sent("PUT", `/_uploads/${id}/${n}`, piece, (loaded) => shown(first + loaded)));
    }
  } catch (error) {
    await call("DELETE", `/_uploads/${id}`).catch(() => {});  // the parts are of no use
    throw error;
  }
  // Completing copies the parts into the value, inside the cluster: a large file takes a
  // while. Never aborted from here on: sent again, a complete that did its work answers
  // as it did the first time.
  await retried(() => sent("POST", `/_uploads/${id}`, JSON.stringify({ parts: count }), () => {}));
  return `stored, in ${count} parts`;
}

// --- credentials --------------------------------------------------------------------------

async function loadCredentials() {
  const { keys } = await getJSON("/_keys");
  $("key-list").tBodies[0].replaceChildren(...keys.map((k) => el("tr", { "data-access-key": k.access_key },
    el("td", { class: "md5" }, k.access_key), el("td", {}, k.role), el("td", {}, k.prefix),
    el("td", {}, new Date(k.created_ms).toLocaleString()),
    el("td", {}, k.expires_ms ? new Date(k.expires_ms).toLocaleString() : "never"),
    el("td", {}, el("button", { type: "button", class: "danger", onclick: guarded(() => revoke(k.access_key)), "aria-label": `Revoke ${k.access_key}` }, "Revoke")))));
  if (!keys.length) $("key-list").tBodies[0].replaceChildren(el("tr", {}, el("td", { colspan: 6 }, "No credentials yet.")));
}

async function createCredential() {
  const options = { role: $("key-role").value, prefix: $("key-prefix").value };
  if ($("key-expires").value) options.expires_s = Number($("key-expires").value);
  const made = await (await call("POST", "/_keys", { json: options })).json();
  const item = (term, value, id) => [el("dt", {}, term), el("dd", { id }, value)];
  $("created-body").replaceChildren(
    ...item("Token", made.token, "created-token"),
    ...item("Access key", made.access_key),
    ...item("Secret key", made.secret_key),
    ...item("Role and prefix", `${made.role} on ${made.prefix}`),
  );
  $("created").hidden = false;
  say(`Created ${made.access_key}: copy its token now.`);
  await loadCredentials();
}

async function revoke(accessKey) {
  if (!confirm(`Revoke ${accessKey}? Clients using it are refused from now on.`)) return;
  await call("DELETE", `/_keys/${encodeURIComponent(accessKey)}`);
  say(`Revoked ${accessKey}.`);
  await loadCredentials();
}

// --- wiring -------------------------------------------------------------------------------

function wire() {
  $("login-form").addEventListener("submit", guarded(logIn));
  $("logout").addEventListener("click", () => logOut());
  $("count-keys").addEventListener("click", () => countKeys());
  $("job-form").addEventListener("submit", guarded(startJob));
  $("key-form").addEventListener("submit", guarded(createCredential));
  $("page-next").addEventListener("click", guarded(() => openFolder(folder, nextStart)));
  $("page-back").addEventListener("click", guarded(() => {
    starts.pop();
    return openFolder(folder, starts.length ? starts[starts.length - 1] : "", true);
  }));
  $("job-kind").addEventListener("change", () => { $("job-dry").checked = true; });
  $("upload").addEventListener("change", (e) => { upload(e.target.files); e.target.value = ""; });
  const drop = $("drop");
  drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => {
    e.preventDefault();
    drop.classList.remove("over");
    upload(e.dataTransfer.files);
  });
  window.addEventListener("hashchange", show);
  for (const link of document.querySelectorAll("nav#nav a")) {  // the section shown: reload it
    link.addEventListener("click", () => { if (link.getAttribute("href") === location.hash) show(); });
  }
  start().catch(problem);
}

wire();

// logs.js — the cluster's log lines: the WebSocket's `logs` deltas (filtered by the server
// with this tab's filter), colour per level, pause/resume (lines arriving meanwhile are
// kept and shown on resume), older lines loaded when scrolled to the top (GET /api/logs,
// the newest lines up to the oldest one shown); without a socket, GET /api/logs with the
// last cursor follows.
import { $, el, setText, isoTime } from './util.js';
import { get } from './api.js';

const MAX_LINES = 5000; // in the DOM; the oldest go first
const PAGE = 200;
let live = null;
let paused = false;
let held = [];
let seen = new Set(); // "node:seq" of lines shown
let loadingOlder = false;
let noOlder = false;
let cursor = null;

export function logFilter() {
  const f = {};
  const n = $('lf-node').value, l = $('lf-level').value, g = $('lf-logger').value.trim(), s = $('lf-search').value.trim();
  if (n) f.node_id = n;
  if (l) f.level = l;
  if (g) f.logger_name = g;
  if (s) f.search = s;
  return f;
}

function query(f, extra) {
  const p = new URLSearchParams({ ...f, ...extra });
  return `/api/logs?${p}`;
}

export function initLogs(liveConn) {
  live = liveConn;
  let t;
  const refilter = () => { clearTimeout(t); t = setTimeout(() => { live.setLogFilter(logFilter()); reloadLogs(); }, 250); };
  for (const id of ['lf-node', 'lf-level']) $(id).addEventListener('change', refilter);
  for (const id of ['lf-logger', 'lf-search']) $(id).addEventListener('input', refilter);
  $('log-filters').addEventListener('submit', (e) => e.preventDefault());
  $('lf-pause').addEventListener('click', () => {
    paused = !paused;
    setText($('lf-pause'), paused ? 'Resume' : 'Pause');
    if (!paused) { const h = held; held = []; appendLogs(h, 0, true); }
    status();
  });
  $('log-view').addEventListener('scroll', () => { if ($('log-view').scrollTop < 40) loadOlder(); });
}

function status(extra) {
  setText($('log-status'), paused ? `paused, ${held.length} new lines held` : extra || '');
}

export function setSources(src) {
  if (!src) return;
  const sel = $('lf-node'), cur = sel.value;
  const nodes = [...new Set(src.nodes || [])].sort();
  if (sel.options.length - 1 !== nodes.length || nodes.some((n, i) => sel.options[i + 1].value !== n)) {
    sel.replaceChildren(el('option', { value: '' }, 'all nodes'), ...nodes.map((n) => el('option', { value: n }, n)));
    sel.value = cur;
  }
  $('lf-loggers').replaceChildren(...(src.loggers || []).map((l) => el('option', { value: l })));
}

function line(r) {
  return stamp(el('div', { class: `ll ${r.level}`, 'data-node': r.node_id },
    el('span', { class: 'ts' }, `${isoTime(r.timestamp || r.ts)} `), el('span', { class: 'nd' }, `${r.node_id} `),
    `${(r.level || '').padEnd(8)} `, el('span', { class: 'lg' }, `[${r.logger}] `), r.message), r);
}

const key = (r) => `${r.node_id}:${r.seq}`;

// New lines (oldest first) at the bottom; the view follows them when it was at the bottom.
export function appendLogs(records, skipped = 0, force = false) {
  if (paused && !force) { held.push(...records); if (held.length > MAX_LINES) held.splice(0, held.length - MAX_LINES); status(); return; }
  const view = $('log-view'), box = $('log-lines');
  const atBottom = view.scrollHeight - view.scrollTop - view.clientHeight < 30;
  const frag = document.createDocumentFragment();
  if (skipped) frag.append(el('div', { class: 'll skip' }, `-- ${skipped} lines skipped --`));
  for (const r of records) {
    const k = key(r);
    if (seen.has(k)) continue;
    seen.add(k);
    frag.append(line(r));
  }
  box.append(frag);
  while (box.children.length > MAX_LINES) {
    const f = box.firstChild;
    box.removeChild(f);
    noOlder = false;
  }
  if (seen.size > MAX_LINES * 4) seen = new Set([...box.children].map((d) => d.dataset.k).filter(Boolean));
  if (atBottom) view.scrollTop = view.scrollHeight;
  status();
}

// The `initial` message's lines (or a reload after a filter change).
export function setLogs(records) {
  $('log-lines').replaceChildren();
  seen = new Set();
  held = [];
  noOlder = false;
  appendLogs(records, 0, true);
  $('log-view').scrollTop = $('log-view').scrollHeight;
}

export async function reloadLogs() {
  try {
    const r = await get(query(logFilter(), { limit: PAGE }));
    cursor = r.cursor;
    setLogs(r.logs || []);
  } catch (e) { status(`cannot load lines: ${e.message}`); }
}

async function loadOlder() {
  if (loadingOlder || noOlder) return;
  const first = $('log-lines').querySelector('.ll[data-node]');
  if (!first) return;
  loadingOlder = true;
  setText($('log-older'), 'loading older lines…');
  try {
    const oldest = first.dataset.ts;
    const r = await get(query(logFilter(), { limit: PAGE, until: oldest }));
    const fresh = (r.logs || []).filter((x) => !seen.has(key(x)));
    if (!fresh.length) { noOlder = true; setText($('log-older'), 'no older lines in memory'); return; }
    const view = $('log-view'), box = $('log-lines');
    const h0 = view.scrollHeight;
    const frag = document.createDocumentFragment();
    for (const x of fresh) { seen.add(key(x)); frag.append(line(x)); }
    box.prepend(frag);
    view.scrollTop += view.scrollHeight - h0; // keep the lines under the reader where they were
    setText($('log-older'), 'scroll up for older lines');
  } catch (e) {
    setText($('log-older'), `cannot load older lines: ${e.message}`);
  } finally { loadingOlder = false; }
}

function stamp(d, r) {
  d.dataset.ts = String(r.ts);
  d.dataset.k = key(r);
  return d;
}

// While the socket is down: follow with the collector's cursor (long poll).
export async function followOnce() {
  if (!cursor) return reloadLogs();
  const r = await get(query(logFilter(), { cursor, limit: 1000, wait_ms: 2000 }));
  cursor = r.cursor || cursor;
  appendLogs(r.logs || [], r.skipped || 0);
}


// store.js — what the page knows about the cluster, fed by the WebSocket's `initial` and
// deltas (or by polling), read by the tabs. Listeners are told what changed; each tab
// renders once per frame at most.
import { Ring } from './charts.js';

export const store = {
  nodes: new Map(),     // node_id -> NodeView
  services: new Map(),  // "node/name" -> ServiceView
  stats: {},            // cluster_stats
  generatedAt: null,
  me: null,             // {subject, role}
  cluster: new Ring(6, 900), // t -> cpu avg/max, mem avg/max, disk avg/max
  agg: new Map(),       // t -> {cpu:[sum,n,max], mem:[...], disk:[...]}
  logSources: { nodes: [], loggers: [] },
};

const listeners = new Set();
export function onChange(fn) { listeners.add(fn); }
export function changed(what) { for (const fn of listeners) fn(what); }

function fold(t, s) {
  if (s.cpu == null && s.mem_percent == null && s.disk_percent == null) return; // a gap in a history
  let a = store.agg.get(t);
  if (!a) {
    a = { cpu: [0, 0, 0], mem: [0, 0, 0], disk: [0, 0, 0] };
    store.agg.set(t, a);
    if (store.agg.size > 1000) store.agg.delete(store.agg.keys().next().value);
  }
  for (const [k, v] of [['cpu', s.cpu], ['mem', s.mem_percent], ['disk', s.disk_percent]]) {
    if (v == null) continue;
    const x = a[k];
    x[0] += v; x[1]++; x[2] = Math.max(x[2], v);
  }
  const avg = (x) => (x[1] ? x[0] / x[1] : null), max = (x) => (x[1] ? x[2] : null);
  store.cluster.put(t, [avg(a.cpu), max(a.cpu), avg(a.mem), max(a.mem), avg(a.disk), max(a.disk)]);
}

// Deltas may carry only part of a view (a membership event knows no samples, a service
// event no call counts): what they leave out or give as null keeps its last known value.
function merge(old, v) {
  for (const [k, x] of Object.entries(v)) {
    if (x == null) continue;
    if (k === 'latest' && old.latest && x.t < old.latest.t) continue;
    if (k === 'methods' && old.methods) {
      const m = {};
      for (const [name, st] of Object.entries(x)) m[name] = st && Object.keys(st).length ? st : old.methods[name] || st;
      old.methods = m;
      continue;
    }
    old[k] = x;
  }
  return old;
}

function putNode(v) {
  if (!v || !v.node_id) return;
  const old = store.nodes.get(v.node_id);
  store.nodes.set(v.node_id, old ? merge(old, v) : v);
}

// A full snapshot (GET /api/dashboard/metrics or the `initial` message's metrics).
export function applySnapshot(m) {
  if (!m) return;
  const seen = new Set();
  if (m.coordinator) { putNode(m.coordinator); seen.add(m.coordinator.node_id); }
  for (const [id, v] of Object.entries(m.workers || {})) { v.node_id = v.node_id || id; putNode(v); seen.add(v.node_id); }
  for (const id of [...store.nodes.keys()]) if (!seen.has(id)) store.nodes.delete(id);
  store.services.clear();
  for (const s of m.services || []) store.services.set(`${s.node_id}/${s.name}`, s);
  store.stats = m.cluster_stats || {};
  store.generatedAt = m.generated_at || null;
  for (const v of store.nodes.values()) if (v.latest && v.latest.t) fold(v.latest.t, v.latest);
  recount();
  changed('all');
}

export function applySamples(nodeId, samples) {
  const v = store.nodes.get(nodeId);
  let last = null;
  for (const s of samples || []) {
    if (typeof s.t !== 'number') continue;
    fold(s.t, s);
    if (!last || s.t >= last.t) last = s;
  }
  if (v && last && (!v.latest || last.t >= v.latest.t)) {
    v.latest = last;
    v.last_report = Math.max(v.last_report || 0, Math.floor(Date.now() / 1000));
    v.stale = false;
  }
  recount();
  changed({ metrics: nodeId, samples });
}

export function applyMember(m) {
  if (m.node) putNode(m.node);
  else if (m.node_id) {
    const v = store.nodes.get(m.node_id) || { node_id: m.node_id, role: 'worker' };
    if (['suspect', 'dead', 'left', 'alive'].includes(m.event)) v.state = m.event;
    if (m.event === 'join') v.state = 'alive';
    putNode(v);
  }
  recount();
  changed({ member: m.node_id });
}

export function applyService(m) {
  const s = m.service;
  if (!s) return;
  s.node_id = s.node_id || m.node_id;
  const k = `${s.node_id}/${s.name}`, old = store.services.get(k);
  if (old && old.health && old.health !== 'unknown' && s.health === 'unknown') delete s.health;
  store.services.set(k, old ? merge(old, s) : s);
  recount();
  changed({ service: `${s.node_id}/${s.name}` });
}

// Keeps the counts in cluster_stats true between snapshots.
function recount() {
  const st = store.stats;
  let alive = 0, suspect = 0, dead = 0, running = 0;
  for (const v of store.nodes.values()) {
    if (v.state === 'alive') alive++;
    else if (v.state === 'suspect') suspect++;
    else if (v.state === 'dead') dead++;
  }
  for (const s of store.services.values()) if (s.state === 'running') running++;
  // averages over the alive nodes' latest samples, so the cards agree with the table
  let cpu = 0, nc = 0, mem = 0, nm = 0;
  for (const v of store.nodes.values()) {
    if (v.state !== 'alive' || !v.latest) continue;
    if (v.latest.cpu != null) { cpu += v.latest.cpu; nc++; }
    if (v.latest.mem_percent != null) { mem += v.latest.mem_percent; nm++; }
  }
  if (nc) st.cpu_avg = cpu / nc;
  if (nm) st.mem_avg = mem / nm;
  Object.assign(st, { nodes_total: store.nodes.size, nodes_alive: alive, nodes_suspect: suspect, nodes_dead: dead,
    services_total: store.services.size, services_running: running });
}

export function sortedNodes() {
  const rank = (v) => (v.role === 'coordinator' ? 0 : 1);
  return [...store.nodes.values()].sort((a, b) => rank(a) - rank(b) || (a.node_id < b.node_id ? -1 : a.node_id > b.node_id ? 1 : 0));
}

// Past samples (history) into the cluster charts only.
export function foldSamples(samples) {
  for (const s of samples) if (typeof s.t === 'number') fold(s.t, s);
}

// overview.js — cluster statistics, the coordinator, every node with its state colour,
// and cluster CPU/memory/disk charts (average and maximum over the nodes, per second).
import { $, el, setText, setClass, num, ago, duration, bytes, Growing } from './util.js';
import { Chart } from './charts.js';
import { store, sortedNodes } from './store.js';

const MAX_ROWS = 1000; // beyond this the table asks for a filter
let win = null; // rows built so far (more as the table is scrolled)
const rows = new Map(); // node_id -> {tr, td: [...]}
let charts = null;
let filter = '';

export function initOverview() {
  $('nodes-filter').addEventListener('input', (e) => { filter = e.target.value.trim().toLowerCase(); win.reset(); renderOverview(); });
  win = new Growing($('nodes-body').closest('.scroll'), 200, () => renderOverview());
}

function card(k, v, id) {
  return el('div', { class: 'card', 'data-stat': id }, el('div', { class: 'v' }, v), el('div', { class: 'k' }, k));
}

function ensureCharts() {
  if (charts) return;
  const box = $('ov-charts');
  const pct = (v) => (v == null ? '–' : `${v.toFixed(1)}%`);
  charts = [
    new Chart(box, [{ label: 'avg' }, { label: 'max', color: '#f59e0b' }], { title: 'CPU %', sync: 'overview', yMax: 100, fmt: pct, axisFmt: (v) => `${Math.round(v)}%` }),
    new Chart(box, [{ label: 'avg', color: '#22c55e' }, { label: 'max', color: '#f59e0b' }], { title: 'Memory %', sync: 'overview', yMax: 100, fmt: pct, axisFmt: (v) => `${Math.round(v)}%` }),
    new Chart(box, [{ label: 'avg', color: '#a855f7' }, { label: 'max', color: '#f59e0b' }], { title: 'Disk %', sync: 'overview', yMax: 100, fmt: pct, axisFmt: (v) => `${Math.round(v)}%` }),
  ];
}

function row(id) {
  let r = rows.get(id);
  if (r) return r;
  const td = Array.from({ length: 9 }, (_, i) => el('td', { class: i >= 3 && i <= 7 ? 'num' : null }));
  const st = el('span', { class: 'state' });
  td[2].append(st);
  const tr = el('tr', { 'data-node': id }, ...td);
  r = { tr, td, st };
  rows.set(id, r);
  return r;
}

export function renderOverview() {
  const s = store.stats || {};
  const stats = $('stats');
  const cards = [
    ['nodes', s.nodes_total, 'nodes_total'], ['alive', s.nodes_alive, 'nodes_alive'], ['suspect', s.nodes_suspect, 'nodes_suspect'],
    ['dead', s.nodes_dead, 'nodes_dead'], ['services running', `${s.services_running ?? '–'} / ${s.services_total ?? '–'}`, 'services'],
    ['cpu avg', s.cpu_avg == null ? '–' : `${num(s.cpu_avg)}%`, 'cpu_avg'], ['mem avg', s.mem_avg == null ? '–' : `${num(s.mem_avg)}%`, 'mem_avg'],
    ['uptime', duration(s.uptime_s), 'uptime'],
  ];
  if (stats.children.length !== cards.length) stats.replaceChildren(...cards.map(([k, v, id]) => card(k, v ?? '–', id)));
  else cards.forEach(([, v], i) => setText(stats.children[i].firstChild, v ?? '–'));

  const nodes = sortedNodes();
  const c = nodes.find((v) => v.role === 'coordinator');
  const dl = $('coord');
  const L = c?.latest || {};
  const pairs = c ? [['node', c.node_id], ['state', c.state], ['address', c.http_addr || c.addr], ['version', c.version],
    ['cpu', `${num(L.cpu)}%`], ['memory', `${num(L.mem_percent)}% of ${bytes(L.mem_total)}`], ['disk', `${num(L.disk_percent)}%`],
    ['load', `${num(L.load1, 2)} ${num(L.load5, 2)} ${num(L.load15, 2)}`], ['process', `${bytes(L.rss)} rss, ${L.threads ?? '–'} threads, ${L.fds ?? '–'} fds`],
    ['connections', L.conns ?? '–'], ['rpc/s', num(L.rpc_calls)], ['last report', ago(c.last_report)]] : [['coordinator', 'not reporting']];
  if (dl.children.length !== pairs.length * 2) dl.replaceChildren(...pairs.flatMap(([k, v]) => [el('dt', null, k), el('dd', null, v ?? '–')]));
  else pairs.forEach(([, v], i) => setText(dl.children[i * 2 + 1], v ?? '–'));

  // node rows, updated in place; DOM order changes only when the visible set changes
  const body = $('nodes-body');
  const shown = [];
  for (const v of nodes) {
    if (filter && !(`${v.node_id} ${v.role} ${v.state}`.toLowerCase().includes(filter))) continue;
    if (shown.length >= Math.min(MAX_ROWS, win.limit)) break;
    shown.push(v);
  }
  const want = shown.map((v) => row(v.node_id).tr);
  const have = body.children;
  let same = have.length === want.length;
  for (let i = 0; same && i < want.length; i++) if (have[i] !== want[i]) same = false;
  if (!same) body.replaceChildren(...want);
  for (const v of shown) {
    const r = rows.get(v.node_id);
    const l = v.latest || {};
    setClass(r.tr, v.stale ? 'stale' : '');
    setText(r.td[0], v.node_id);
    setText(r.td[1], v.role);
    setClass(r.st, `state ${v.state || 'unknown'}`);
    setText(r.st, v.stale && v.state === 'alive' ? 'alive (stale)' : v.state || 'unknown');
    r.tr.dataset.state = v.state || 'unknown';
    setText(r.td[3], num(l.cpu));
    setText(r.td[4], num(l.mem_percent));
    setText(r.td[5], num(l.disk_percent));
    setText(r.td[6], num(l.load1, 2));
    setText(r.td[7], num(l.rpc_calls));
    setText(r.td[8], ago(v.last_report));
  }
  for (const id of rows.keys()) if (!store.nodes.has(id)) rows.delete(id);
  setText($('nodes-count'), `${nodes.length}`);
  setText($('nodes-more'), nodes.length > shown.length && !filter
    ? `showing ${shown.length} of ${nodes.length}: ${shown.length < MAX_ROWS ? 'scroll for more, or filter' : 'filter to see the others'}` : '');

  ensureCharts();
  const k = store.cluster.cols;
  charts[0].setData([k[0], k[1], k[2]]);
  charts[1].setData([k[0], k[3], k[4]]);
  charts[2].setData([k[0], k[5], k[6]]);
}

// Fills the cluster charts with the last 15 minutes of a few nodes (the live samples
// carry on from there).
export async function prefillOverview(get, fold) { // fold(node_id, samples)
  const ids = sortedNodes().slice(0, 8).map((v) => v.node_id); // a sample: a few requests, not one per node
  await Promise.all(ids.map(async (id) => {
    try {
      const h = await get(`/api/dashboard/history/${encodeURIComponent(id)}?range=15m&metrics=cpu,mem_percent,disk_percent`);
      const t = h.t || [], s = h.series || {};
      fold(id, t.map((ti, i) => ({ t: ti, cpu: s.cpu?.[i], mem_percent: s.mem_percent?.[i], disk_percent: s.disk_percent?.[i] })));
    } catch { /* the live samples fill in */ }
  }));
}

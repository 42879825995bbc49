// workers.js — one node at a time: its fields, services, and history charts over a range
// (15 min at 1 s, 24 h, 30 days: GET /api/dashboard/history), live-extended while the
// 15-minute range is shown.
import { $, el, setText, setClass, num, ago, bytes } from './util.js';
import { Chart } from './charts.js';
import { get } from './api.js';
import { store, sortedNodes } from './store.js';

const items = new Map(); // node_id -> li
let selected = null;
let range = '15m';
let charts = [];
let hist = null; // {t: [], series: {...}} of the selected node
let filter = '';
let loadSeq = 0;
let histError = '';

const METRICS = ['cpu', 'mem_percent', 'disk_percent', 'load1', 'net_rx_bps', 'net_tx_bps', 'rpc_calls', 'rss'];
const pct = (v) => (v == null ? '–' : `${v.toFixed(1)}%`);
const rate = (v) => (v == null ? '–' : `${bytes(v)}/s`);
const CHARTS = [
  { title: 'CPU %', s: [['cpu', 'cpu']], yMax: 100, fmt: pct, axisFmt: (v) => `${Math.round(v)}%` },
  { title: 'Memory %', s: [['mem_percent', 'mem']], yMax: 100, fmt: pct, axisFmt: (v) => `${Math.round(v)}%` },
  { title: 'Disk %', s: [['disk_percent', 'disk']], yMax: 100, fmt: pct, axisFmt: (v) => `${Math.round(v)}%` },
  { title: 'Network', s: [['net_rx_bps', 'rx'], ['net_tx_bps', 'tx']], fmt: rate },
  { title: 'Load (1 min)', s: [['load1', 'load1']], fmt: (v) => (v == null ? '–' : v.toFixed(2)) },
  { title: 'RPC calls/s', s: [['rpc_calls', 'calls/s']] },
];

export function initWorkers() {
  $('workers-filter').addEventListener('input', (e) => { filter = e.target.value.trim().toLowerCase(); renderWorkers(); });
  $('wd-range').addEventListener('click', (e) => {
    const b = e.target.closest('button[data-range]');
    if (!b) return;
    range = b.dataset.range;
    for (const x of $('wd-range').children) x.classList.toggle('on', x === b);
    loadHistory();
  });
}

export function selectWorker(id) {
  if (selected === id) return;
  selected = id;
  for (const [k, li] of items) li.classList.toggle('on', k === id);
  loadHistory();
  renderWorkers();
}

function ensureCharts() {
  if (charts.length) return;
  const box = $('wd-charts');
  charts = CHARTS.map((c) => new Chart(box, c.s.map(([, label]) => ({ label })), { title: c.title, sync: 'worker', yMax: c.yMax, fmt: c.fmt, axisFmt: c.axisFmt }));
}

function drawCharts() {
  ensureCharts();
  const t = hist?.t || [];
  CHARTS.forEach((c, i) => charts[i].setData([t, ...c.s.map(([k]) => hist?.series?.[k] || t.map(() => null))]));
}

async function loadHistory() {
  if (!selected) return;
  const my = ++loadSeq;
  hist = null;
  histError = '';
  drawCharts();
  try {
    const h = await get(`/api/dashboard/history/${encodeURIComponent(selected)}?range=${range}&metrics=${METRICS.join(',')}`);
    if (my !== loadSeq) return;
    hist = h;
    hist.t = hist.t || [];
    hist.series = hist.series || {};
  } catch (e) {
    if (my !== loadSeq) return;
    hist = { t: [], series: {} };
    histError = e.message;
    renderWorkers();
  }
  drawCharts();
}

// Live samples for the selected node extend its 15-minute chart.
export function workerSamples(nodeId, samples) {
  if (nodeId !== selected || range !== '15m' || !hist) return;
  const last = hist.t.length ? hist.t[hist.t.length - 1] : 0;
  for (const s of samples) {
    if (typeof s.t !== 'number' || s.t <= last) continue;
    hist.t.push(s.t);
    for (const k of METRICS) (hist.series[k] = hist.series[k] || hist.t.slice(1).map(() => null)).push(s[k] ?? null);
  }
  const cut = hist.t.length - 900;
  if (cut > 0) { hist.t.splice(0, cut); for (const k of METRICS) hist.series[k]?.splice(0, cut); }
  drawCharts();
}

export function renderWorkers() {
  const nodes = sortedNodes();
  if (!selected && nodes.length) { selectWorker(nodes.find((v) => v.role !== 'coordinator')?.node_id || nodes[0].node_id); return; }
  const ul = $('workers-list');
  const want = [];
  for (const v of nodes) {
    let li = items.get(v.node_id);
    if (!li) {
      li = el('li', { 'data-node': v.node_id, onclick: () => selectWorker(v.node_id) }, el('span', { class: 'state' }));
      items.set(v.node_id, li);
    }
    setClass(li.firstChild, `state ${v.state || 'unknown'}`);
    setText(li.firstChild, v.node_id);
    li.classList.toggle('on', v.node_id === selected);
    if (!filter || v.node_id.toLowerCase().includes(filter)) want.push(li);
  }
  for (const id of items.keys()) if (!store.nodes.has(id)) items.delete(id);
  if (ul.children.length !== want.length || want.some((li, i) => ul.children[i] !== li)) ul.replaceChildren(...want);

  const v = store.nodes.get(selected);
  if (!v) return;
  setText($('wd-title'), histError ? `${v.node_id} (history: ${histError})` : v.node_id);
  const l = v.latest || {};
  const nets = Object.entries(l.nets || {}).map(([k, n]) => `${k} ↓${bytes(n.rx_bps)}/s ↑${bytes(n.tx_bps)}/s`).join(', ');
  const disks = Object.entries(l.disks || {}).map(([k, d]) => `${k} ${num(d.percent)}%`).join(', ');
  const pairs = [['role', v.role], ['state', `${v.state}${v.stale ? ' (stale)' : ''}`], ['address', v.addr], ['https', v.http_addr],
    ['version', v.version], ['last report', ago(v.last_report)], ['cpu', `${num(l.cpu)}%`],
    ['memory', `${num(l.mem_percent)}% (${bytes(l.mem_used)} of ${bytes(l.mem_total)})`], ['disks', disks || '–'],
    ['load', `${num(l.load1, 2)} ${num(l.load5, 2)} ${num(l.load15, 2)}`], ['network', nets || '–'],
    ['process', `${bytes(l.rss)} rss, ${num(l.proc_cpu)}% cpu, ${l.threads ?? '–'} threads, ${l.fds ?? '–'} fds`],
    ['connections', l.conns ?? '–'], ['rpc', `${num(l.rpc_calls)}/s, ${num(l.rpc_errors)} errors/s`],
    ['gossip', l.gossip ? `${num(l.gossip.sent)}/s sent, ${num(l.gossip.recv)}/s received, ${num(l.gossip.dropped)}/s dropped` : '–']];
  const dl = $('wd-fields');
  if (dl.children.length !== pairs.length * 2) dl.replaceChildren(...pairs.flatMap(([k, x]) => [el('dt', null, k), el('dd', null, x ?? '–')]));
  else pairs.forEach(([, x], i) => setText(dl.children[i * 2 + 1], x ?? '–'));
  const svcs = [...store.services.values()].filter((s) => s.node_id === selected).sort((a, b) => (a.name < b.name ? -1 : 1));
  $('wd-services').replaceChildren(...svcs.map((s) => el('tr', null, el('td', null, s.name), el('td', null, s.version || '–'),
    el('td', null, el('span', { class: `state ${s.state}` }, s.state)), el('td', null, el('span', { class: `state ${s.health}` }, s.health || 'unknown')))));
  if (!charts.length) drawCharts();
}

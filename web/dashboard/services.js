// services.js — every service on every node: version, kind, state, health, per-method
// calls/errors/latency; start/stop/restart/reload for admins (POST
// /api/dashboard/control-service; the server refuses viewers whatever the page shows).
import { $, el, setText, setClass, num, toast, Growing } from './util.js';
import { post, session } from './api.js';
import { store, applyService } from './store.js';

const MAX_ROWS = 2000;
let win = null; // rows built so far (more as the table is scrolled)
const rows = new Map(); // key -> {tr, td, st, hl}
let filter = '';

export function initServices() {
  $('services-filter').addEventListener('input', (e) => { filter = e.target.value.trim().toLowerCase(); win.reset(); renderServices(); });
  win = new Growing($('services-body').closest('.scroll'), 200, () => renderServices());
  $('services-body').addEventListener('click', async (e) => {
    const b = e.target.closest('button[data-action]');
    if (!b) return;
    const tr = b.closest('tr');
    const node = tr.dataset.node, name = tr.dataset.service, action = b.dataset.action;
    for (const x of tr.querySelectorAll('button')) x.disabled = true;
    try {
      const r = await post('/api/dashboard/control-service', { worker_id: node, service_name: name, action });
      toast(`${action} ${name} on ${node}: ${r.state || 'done'}`);
      const s = store.services.get(`${node}/${name}`);
      if (s && r.state) applyService({ node_id: node, service: { ...s, state: r.state } });
    } catch (err) {
      toast(`${action} ${name} on ${node} failed: ${err.message}`, true);
    } finally {
      for (const x of tr.querySelectorAll('button')) x.disabled = false;
    }
  });
}

const one = ([k, x]) => `${k} ${x.calls ?? 0}/${x.errors ?? 0}/${num(x.p50_ms, 2)}/${num(x.p99_ms, 2)}`;
// The methods that were called (busiest first, up to 3) and how many there are; every
// method's figures in the cell's tooltip.
function methods(s) {
  const m = Object.entries(s.methods || {}).sort(([a], [b]) => (a < b ? -1 : 1));
  if (!m.length) return ['–', ''];
  const busy = m.filter(([, x]) => x && x.calls > 0).sort(([, a], [, b]) => b.calls - a.calls);
  const head = busy.slice(0, 3).map(one).join('  ');
  const rest = `${m.length} method${m.length > 1 ? 's' : ''}${busy.length ? `, ${busy.length} called` : ''}`;
  return [head ? `${head}  (${rest})` : rest, m.map(one).join('\n')];
}

const controllable = (s) => s.kind === 'native' || s.kind === 'exec';

function row(key, s) {
  let r = rows.get(key);
  if (r) return r;
  const td = Array.from({ length: 8 }, () => el('td'));
  td[6].className = 'methods';
  const st = el('span', { class: 'state' }), hl = el('span', { class: 'state' });
  td[4].append(st);
  td[5].append(hl);
  td[7].className = 'actions admin-only';
  const tr = el('tr', { dataset: { node: s.node_id, service: s.name } }, ...td);
  r = { tr, td, st, hl };
  rows.set(key, r);
  return r;
}

export function renderServices() {
  const all = [...store.services.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  const shown = [];
  for (const [key, s] of all) {
    if (filter && !`${s.node_id} ${s.name} ${s.state} ${s.health} ${s.kind}`.toLowerCase().includes(filter)) continue;
    if (shown.length >= Math.min(MAX_ROWS, win.limit)) break;
    shown.push([key, s]);
  }
  const body = $('services-body');
  const want = shown.map(([k, s]) => row(k, s).tr);
  if (body.children.length !== want.length || want.some((tr, i) => body.children[i] !== tr)) body.replaceChildren(...want);
  for (const [key, s] of shown) {
    const r = rows.get(key);
    setText(r.td[0], s.node_id);
    setText(r.td[1], s.name);
    setText(r.td[2], s.version || '–');
    setText(r.td[3], s.kind || '–');
    setClass(r.st, `state ${s.state}`);
    setText(r.st, s.state);
    r.tr.dataset.state = s.state;
    setClass(r.hl, `state ${s.health || 'unknown'}`);
    setText(r.hl, s.health || 'unknown');
    const [text, tip] = methods(s);
    setText(r.td[6], text);
    if (r.td[6].title !== tip) r.td[6].title = tip;
    // control buttons: admins only, pluggable services only (built-ins are part of the node)
    if (!r.td[7].firstChild && session.role === 'admin' && controllable(s)) {
      for (const a of ['start', 'stop', 'restart', 'reload']) r.td[7].append(el('button', { class: 'small', 'data-action': a }, a));
    }
  }
  for (const k of rows.keys()) if (!store.services.has(k)) rows.delete(k);
  setText($('services-count'), shown.length < all.length ? `${shown.length} of ${all.length} shown (scroll for more, or filter)` : `${all.length}`);
}

// rollouts.js — the Services tab's Rollouts panel: the coordinator's rollouts (newest
// first) with each node's state, and the committed versions (GET /api/dashboard/rollouts,
// read-only: viewers see it too). Polled every 2 s while the Services tab is shown.
import { $, el, isoTime, setText } from './util.js';
import { get } from './api.js';

const MAX_SHOWN = 10;
let last = '';

function nodeChip(n) {
  const why = n.reason || n.detail || '';
  return el('span', { class: `state ro-node ${n.state}`, title: why, dataset: { node: n.node, state: n.state } },
    `${n.node}: ${n.state}`);
}

export async function loadRollouts() {
  let d;
  try {
    d = await get('/api/dashboard/rollouts');
  } catch (e) {
    setText($('rollouts-note'), `rollouts: ${e.message}`);
    return;
  }
  const key = JSON.stringify(d);
  if (key === last) return;
  last = key;
  const list = (d.rollouts || []).slice(0, MAX_SHOWN);
  const rows = list.map((r) => el('tr', { dataset: { rollout: r.id, state: r.state } },
    el('td', null, r.id),
    el('td', null, `${r.name} ${r.version}`),
    el('td', null, el('span', { class: `state ${r.state}` }, r.state)),
    el('td', { class: 'ro-nodes' }, ...(r.nodes || []).map(nodeChip)),
    el('td', null, isoTime(r.updated ?? r.created)),
    el('td', { class: 'methods', title: r.reason || '' }, r.reason || '–')));
  $('rollouts-body').replaceChildren(...rows);
  const committed = Object.entries(d.committed || {}).map(([name, c]) => `${name} ${c.version ?? ''}`.trim());
  const total = (d.rollouts || []).length;
  setText($('rollouts-note'), `${total ? `${total} rollout${total > 1 ? 's' : ''}${total > list.length ? `, ${list.length} newest shown` : ''}` : 'no rollout yet'}`
    + (committed.length ? `; committed: ${committed.join(', ')}` : ''));
}

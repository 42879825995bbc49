// certs.js — the CA and every node's certificate with its expiry (GET /api/dashboard/certificates).
import { $, el, isoTime } from './util.js';
import { get } from './api.js';

function days(t) {
  const ms = typeof t === 'number' ? t * 1000 : Date.parse(t);
  return Number.isNaN(ms) ? null : Math.floor((ms - Date.now()) / 86400000);
}

function expiry(t) {
  const d = days(t);
  return `${isoTime(t)}${d == null ? '' : d < 0 ? ' (expired)' : ` (${d} days)`}`;
}

export async function loadCertificates() {
  let c;
  try {
    c = await get('/api/dashboard/certificates');
  } catch (e) {
    $('ca').replaceChildren(el('dt', null, 'error'), el('dd', null, e.message));
    return;
  }
  const ca = c.ca || {};
  $('ca').replaceChildren(...[['subject', ca.subject], ['valid from', isoTime(ca.not_before)], ['expires', expiry(ca.not_after)],
    ['fingerprint', ca.fingerprint]].flatMap(([k, v]) => [el('dt', null, k), el('dd', null, v ?? '–')]));
  const rows = (c.nodes || []).slice().sort((a, b) => (a.node_id < b.node_id ? -1 : 1)).map((n) => {
    const d = days(n.not_after);
    const cls = n.revoked ? 'revoked' : d != null && d < 0 ? 'expired' : d != null && d < 30 ? 'soon' : '';
    return el('tr', { class: cls, 'data-node': n.node_id }, el('td', null, n.node_id), el('td', null, n.role || '–'),
      el('td', null, n.serial || '–'), el('td', null, expiry(n.not_after)), el('td', null, (n.addresses || []).join(', ') || '–'),
      el('td', { class: 'methods' }, n.fingerprint || '–'), el('td', null, n.revoked ? 'revoked' : d != null && d < 0 ? 'expired' : 'valid'));
  });
  $('certs-body').replaceChildren(...rows);
}

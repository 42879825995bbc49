// app.js — the dashboard: login, tabs, the live connection, and rendering on change.
import { $, setText, coalesce } from './util.js';
import { login, logout, session, setUnauthorizedHandler, get } from './api.js';
import { Live } from './live.js';
import { store, applySnapshot, applySamples, applyMember, applyService, onChange, foldSamples } from './store.js';
import { initOverview, renderOverview, prefillOverview } from './overview.js';
import { initWorkers, renderWorkers, workerSamples } from './workers.js';
import { initServices, renderServices } from './services.js';
import { initLogs, appendLogs, setLogs, setSources, logFilter, followOnce, reloadLogs } from './logs.js';
import { loadCertificates } from './certs.js';
import { loadRollouts } from './rollouts.js';

let tab = 'overview';
const RENDER = { overview: renderOverview, workers: renderWorkers, services: renderServices, logs: () => {}, certificates: () => {} };
// performance marks (read by bench/dashboard_page.mjs): p2p:login-form, p2p:login-submit,
// p2p:overview-full (the first Overview with every node's figures)
let fullMarked = false;
const render = coalesce(() => {
  RENDER[tab]();
  if (!fullMarked && tab === 'overview' && store.nodes.size && [...store.nodes.values()].every((v) => v.latest || v.state !== 'alive')) {
    fullMarked = true;
    performance.mark('p2p:overview-full');
  }
});
let logPoll = null;

const live = new Live({
  initial(m) {
    const d = m.data || {};
    if (d.me) { session.role = d.me.role || session.role; session.subject = d.me.subject || session.subject; showMe(); }
    applySnapshot(d.metrics);
    if (d.log_sources) { store.logSources = d.log_sources; setSources(d.log_sources); }
    setLogs(d.logs || []);
  },
  resumed() {},
  metrics(m) {
    // a node reporting for the first time brings services the page has not seen yet
    if (!store.nodes.get(m.node_id)?.latest || !hasServices(m.node_id)) resync();
    applySamples(m.node_id, m.samples);
    workerSamples(m.node_id, m.samples || []);
  },
  member(m) { applyMember(m); },
  service(m) { applyService(m); },
  logs(m) { appendLogs(m.logs || [], m.skipped || 0); },
  poll(snapshot) { applySnapshot(snapshot); },
  status(s) {
    const c = $('conn');
    c.className = `conn ${s}`;
    setText(c, s === 'live' ? 'live' : s === 'down' ? 'reconnecting' : 'connecting');
    if (s === 'live') stopLogPoll(); else if (s === 'down') startLogPoll();
  },
  authFailed(why) { endSession(`Logged out: ${why}`); },
});

function hasServices(id) {
  for (const s of store.services.values()) if (s.node_id === id) return true;
  return false;
}

// A fresh snapshot (GET /api/dashboard/metrics) now and then, and soon after a node's first
// report: the deltas carry samples, membership and the coordinator's own services, the
// snapshot also the workers' services as they last reported them.
let resyncTimer = null, lastResync = 0;
function resync() {
  if (resyncTimer) return;
  const wait = Math.max(0, lastResync + 2000 - Date.now());
  resyncTimer = setTimeout(async () => {
    resyncTimer = null;
    lastResync = Date.now();
    try { applySnapshot(await get('/api/dashboard/metrics')); } catch { /* the next one */ }
  }, wait);
}

function startLogPoll() {
  if (logPoll) return;
  logPoll = true;
  (async function loop() {
    while (logPoll) {
      if (!navigator.onLine) { await new Promise((r) => setTimeout(r, 500)); continue; }
      try { await followOnce(); } catch { await new Promise((r) => setTimeout(r, 2000)); }
    }
  })();
}
function stopLogPoll() { logPoll = null; }

onChange(() => render());

function showTab(name) {
  tab = name;
  for (const b of $('tabs').children) b.setAttribute('aria-selected', String(b.dataset.tab === name));
  for (const s of document.querySelectorAll('main > .tab')) s.hidden = s.id !== `tab-${name}`;
  if (name === 'certificates') loadCertificates();
  if (name === 'services') loadRollouts();
  if (name === 'logs') { const v = $('log-view'); v.scrollTop = v.scrollHeight; }
  render();
}

function showMe() {
  setText($('me'), `${session.subject} (${session.role})`);
  document.body.classList.toggle('admin', session.role === 'admin');
}

function endSession(msg) {
  live.stop();
  stopLogPoll();
  logout();
  // nothing of the session stays in the page
  location.hash = '';
  $('app').hidden = true;
  $('login').hidden = false;
  $('secret').value = '';
  setText($('login-error'), msg || '');
  $('secret').focus();
  setTimeout(() => location.reload(), msg ? 1500 : 0);
}

function start(first) {
  showMe();
  $('login').hidden = true;
  $('app').hidden = false;
  if (first) applySnapshot(first);
  live.start(logFilter());
  showTab('overview');
  prefillOverview(get, (id, samples) => foldSamples(samples)).then(render);
  get('/api/logs/sources').then(setSources).catch(() => {});
}

function init() {
  setUnauthorizedHandler(() => endSession('Logged out: the token was refused (expired or revoked?)'));
  initOverview();
  initWorkers();
  initServices();
  initLogs(live);
  $('tabs').addEventListener('click', (e) => { const b = e.target.closest('button[data-tab]'); if (b) showTab(b.dataset.tab); });
  $('logout').addEventListener('click', () => endSession(''));
  $('login-form').addEventListener('submit', async (e) => {
    e.preventDefault();
    const btn = $('login-btn');
    btn.disabled = true;
    performance.mark('p2p:login-submit');
    setText($('login-error'), '');
    try {
      const first = await login($('secret').value);
      $('secret').value = '';
      start(first);
    } catch (err) {
      setText($('login-error'), err.status === 401 || err.status === 403 ? `Refused: ${err.message}` : `Cannot log in: ${err.message}`);
    } finally { btn.disabled = false; }
  });
  $('login').hidden = false; // the input has autofocus (no forced layout here)
  performance.mark('p2p:login-form');
  setInterval(() => { if (tab === 'overview' || tab === 'workers') render(); }, 5000); // "last report: Ns ago"
  setInterval(() => { if (tab === 'services' && session.role) loadRollouts(); }, 2000); // the Rollouts panel
  setInterval(() => { if (session.role && $('conn').classList.contains('live')) resync(); }, 15000);
}

init();
void reloadLogs;

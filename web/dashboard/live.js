// live.js — the WebSocket /ws/dashboard (see docs/dashboard.md): auth as the first
// message (a browser cannot put headers on a WebSocket, and the token never goes in the
// URL), then `initial` and pushed deltas with increasing `seq`. On a drop it reconnects
// with `resume: lastSeq` (the server answers `resumed` and replays what was missed, or a
// fresh `initial`). While no socket is up, GET /api/dashboard/metrics every few seconds
// keeps the page current.
import { currentToken, get } from './api.js';

export class Live {
  constructor(handlers) {
    this.h = handlers; // {initial, resumed, metrics, member, service, logs, status, authFailed, poll}
    this.ws = null;
    this.seq = null;
    this.filter = {};
    this.closed = true;
    this.backoff = 500;
    this.pollTimer = null;
    this.pingTimer = null;
    this.retryTimer = null;
    // A socket can outlive the network it was opened on (a phone changing networks, a
    // laptop waking up) until TCP gives up: drop it when the browser goes offline and
    // reconnect (with resume) as soon as it is back.
    addEventListener('offline', () => {
      if (this.ws) { try { this.ws.close(4000, 'offline'); } catch { /* closed */ } }
    });
    addEventListener('online', () => {
      if (!this.closed && !this.ws) { clearTimeout(this.retryTimer); this.backoff = 500; this.connect(); }
    });
  }

  start(filter) {
    this.filter = filter || {};
    this.closed = false;
    this.connect();
  }

  stop() {
    this.closed = true;
    clearTimeout(this.retryTimer);
    clearInterval(this.pingTimer);
    this.stopPolling();
    if (this.ws) { try { this.ws.close(1000, 'logout'); } catch { /* closed */ } }
    this.ws = null;
    this.seq = null;
  }

  setLogFilter(filter) {
    this.filter = filter;
    this.send({ type: 'log_filter', filter });
  }

  send(m) {
    if (this.ws && this.ws.readyState === WebSocket.OPEN) this.ws.send(JSON.stringify(m));
  }

  connect() {
    if (this.closed) return;
    this.h.status('connecting');
    let ws;
    try {
      ws = new WebSocket(`${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/ws/dashboard`);
    } catch (e) {
      this.retry();
      return;
    }
    this.ws = ws;
    let got = false;
    ws.onopen = () => {
      const m = { type: 'auth', token: currentToken(), log_filter: this.filter };
      if (this.seq != null) m.resume = this.seq;
      ws.send(JSON.stringify(m));
    };
    ws.onmessage = (ev) => {
      let m;
      try { m = JSON.parse(ev.data); } catch { return; }
      if (m.type === 'error') { this.lastError = m.error; return; }
      if (m.type === 'pong') return;
      if (!got && (m.type === 'initial' || m.type === 'resumed')) {
        got = true;
        this.backoff = 500;
        this.stopPolling();
        this.h.status('live');
        clearInterval(this.pingTimer);
        this.pingTimer = setInterval(() => this.send({ type: 'ping' }), 20000);
      }
      if (typeof m.seq === 'number') this.seq = m.seq;
      const fn = this.h[m.type];
      if (fn) fn(m);
    };
    ws.onclose = (ev) => {
      if (this.ws !== ws) return;
      this.ws = null;
      clearInterval(this.pingTimer);
      if (this.closed) return;
      if (ev.code === 4401) { this.h.authFailed(this.lastError || 'the session was refused'); return; }
      this.h.status('down');
      this.startPolling();
      this.retry();
    };
    ws.onerror = () => { /* onclose follows */ };
  }

  retry() {
    clearTimeout(this.retryTimer);
    if (!navigator.onLine) return; // the 'online' event reconnects
    this.retryTimer = setTimeout(() => this.connect(), this.backoff);
    this.backoff = Math.min(this.backoff * 2, 5000);
  }

  startPolling() {
    if (this.pollTimer) return;
    const tick = async () => {
      if (!navigator.onLine) return;
      try { this.h.poll(await get('/api/dashboard/metrics')); } catch { /* next tick */ }
    };
    tick();
    this.pollTimer = setInterval(tick, 3000);
  }

  stopPolling() {
    clearInterval(this.pollTimer);
    this.pollTimer = null;
  }
}

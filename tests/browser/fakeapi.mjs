// fakeapi.mjs — a stand-in for the coordinator's dashboard API with N made-up nodes, for
// what a real cluster on this machine cannot show: the page with 500 nodes (bench/
// dashboard.py measures render and update times with it). It serves the page's sources
// straight from web/dashboard/ (unhashed) over plain HTTP; /ws/dashboard answers 404, so
// the page polls GET /api/dashboard/metrics (as it does when its socket is down).
// Not used by the browser tests, which run against real nodes.
//   node tests/browser/fakeapi.mjs PORT NODES
import http from 'node:http';
import { readFileSync, existsSync } from 'node:fs';
import { join, dirname, extname } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const web = join(here, '..', '..', 'web');
const port = Number(process.argv[2] || 18790), N = Number(process.argv[3] || 500);
const TYPES = { '.html': 'text/html', '.js': 'text/javascript', '.css': 'text/css', '.svg': 'image/svg+xml' };
const t0 = Math.floor(Date.now() / 1000);

function sample(i, t) {
  const w = Math.sin(t / 30 + i);
  return { t, cpu: 20 + 15 * w + (i % 7), mem_percent: 40 + (i % 30), mem_used: 4e9, mem_total: 16e9, load1: 0.5 + w / 2, load5: 0.4, load15: 0.3,
    disk_percent: 50 + (i % 20), disks: { '/': { percent: 50 + (i % 20), used: 1, total: 2 } }, net_rx_bps: 1000 + 500 * w, net_tx_bps: 800,
    nets: { eth0: { rx_bps: 1000, tx_bps: 800 } }, rss: 12e6, proc_cpu: 1.2, fds: 40, threads: 6, conns: 3, rpc_calls: 10 + i % 5, rpc_errors: 0,
    rpc: { 'system/ping': { calls: 10, errors: 0, p50_ms: 0.4, p99_ms: 2 } }, gossip: { sent: 10, recv: 10, dropped: 0 } };
}
const id = (i) => (i === 0 ? 'coordinator-1' : `worker-${String(i).padStart(3, '0')}`);
function view(i, t) {
  const state = i % 97 === 5 ? 'dead' : i % 61 === 7 ? 'suspect' : 'alive';
  return { node_id: id(i), role: i ? 'worker' : 'coordinator', state, stale: false, addr: `10.0.${i >> 8}.${i & 255}:8002`,
    http_addr: `10.0.${i >> 8}.${i & 255}:8002`, version: '0.1.0', last_report: t, latest: sample(i, t) };
}
function metrics() {
  const t = Math.floor(Date.now() / 1000);
  const workers = {};
  for (let i = 1; i < N; i++) workers[id(i)] = view(i, t);
  const services = [];
  for (let i = 0; i < N; i++) for (const name of ['hello', 'pyhello']) services.push({ node_id: id(i), name, version: '1.0.0', kind: name === 'hello' ? 'native' : 'exec',
    state: 'running', health: 'healthy', methods: { greet: { calls: i, errors: 0, p50_ms: 0.2, p99_ms: 1.1 } }, metrics: {} });
  return { coordinator: view(0, t), workers, services, generated_at: t,
    cluster_stats: { nodes_total: N, nodes_alive: N, nodes_suspect: 0, nodes_dead: 0, services_total: services.length, services_running: services.length, cpu_avg: 25, mem_avg: 50, uptime_s: t - t0 } };
}
function history(node, range) {
  const step = range === '15m' ? 1 : range === '24h' ? 60 : 3600, n = range === '15m' ? 900 : range === '24h' ? 1440 : 720;
  const now = Math.floor(Date.now() / 1000), t = [], series = { cpu: [], mem_percent: [], disk_percent: [], net_rx_bps: [], net_tx_bps: [], load1: [], rss: [], rpc_calls: [] };
  for (let k = n - 1; k >= 0; k--) {
    const s = sample(node.length, now - k * step);
    t.push(s.t);
    for (const m of Object.keys(series)) series[m].push(s[m]);
  }
  return { node_id: node, resolution: step, from: t[0], to: now, t, series };
}
const logs = () => ({ logs: Array.from({ length: 100 }, (_, k) => ({ node_id: id(k % N), seq: k + 1, ts: Date.now() / 1000 - 100 + k, level: ['INFO', 'WARNING', 'ERROR', 'DEBUG'][k % 4],
  logger: 'membership', message: `line ${k}` })), total: 100, cursor: 'x', skipped: 0 });

http.createServer((req, res) => {
  const u = new URL(req.url, 'http://x');
  const json = (o, s = 200) => { res.writeHead(s, { 'content-type': 'application/json' }); res.end(JSON.stringify(o)); };
  const p = u.pathname;
  if (p === '/dashboard') { res.writeHead(200, { 'content-type': 'text/html' }); return res.end(readFileSync(join(web, 'dashboard', 'index.html'))); }
  if (p.startsWith('/static/')) {
    const name = p.slice(8);
    const f = name.startsWith('uPlot') ? join(web, 'node_modules', 'uplot', 'dist', name === 'uPlot.min.js' ? 'uPlot.iife.min.js' : name) : join(web, 'dashboard', name);
    if (!existsSync(f) || name.includes('..')) { res.writeHead(404); return res.end(); }
    res.writeHead(200, { 'content-type': TYPES[extname(f)] || 'application/octet-stream' });
    return res.end(readFileSync(f));
  }
  if (p === '/auth/token') return json({ token: 'h.eyJyb2xlIjoiYWRtaW4iLCJzdWIiOiJhZG1pbiJ9.s', role: 'admin', subject: 'admin' });
  if (p === '/api/dashboard/metrics') return json(metrics());
  if (p.startsWith('/api/dashboard/history/')) return json(history(decodeURIComponent(p.split('/').pop()), u.searchParams.get('range')));
  if (p === '/api/dashboard/certificates') return json({ ca: { subject: 'CN=fake CA', not_before: t0, not_after: t0 + 86400 * 3650, fingerprint: 'ab:cd' }, nodes: [] });
  if (p === '/api/dashboard/rollouts') return json({ rollouts: [], committed: {}, convergence: [] });
  if (p === '/api/logs') return json(logs());
  if (p === '/api/logs/sources') return json({ nodes: [id(0), id(1)], loggers: ['membership'], log_levels: [] });
  if (p === '/favicon.ico') { res.writeHead(204); return res.end(); }
  json({ error: 'not found' }, 404);
}).listen(port, '127.0.0.1', () => console.log(`fakeapi on http://127.0.0.1:${port}/dashboard with ${N} nodes`));

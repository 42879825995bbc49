// dashboard_page.mjs — the page's figures in headless chromium (run by bench/dashboard_page.py):
//   real:  page weight over the wire, navigation -> first full render of the Overview
//          (cold and warm cache), kill -9 of a worker -> the page shows it dead (and the
//          part after the coordinator's membership knows it)
//   fake:  the page with 500 made-up nodes (tests/browser/fakeapi.mjs): first render,
//          long tasks while it updates, the Services tab with 1000 rows
// Prints `FIGURES <json>`.
import { createRequire } from 'node:module';
import { readFileSync } from 'node:fs';
import https from 'node:https';
import tls from 'node:tls';
import { X509Certificate, createHash } from 'node:crypto';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const require = createRequire(join(here, '..', 'web', 'package.json'));
const { chromium } = require('playwright-core');
const cfg = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const RUNS = cfg.runs || 5;
const fig = {};
const median = (a) => { const s = [...a].sort((x, y) => x - y); return s[Math.floor(s.length / 2)]; };

function get(url, token) {
  return new Promise((resolve, reject) => {
    const u = new URL(url);
    https.get({ host: u.hostname, port: u.port, path: u.pathname, ca: readFileSync(cfg.ca), headers: { Authorization: `Bearer ${token}` } }, (res) => {
      let d = ''; res.on('data', (c) => { d += c; }); res.on('end', () => resolve(d));
    }).on('error', reject);
  });
}

// The browser trusts the coordinator's certificate (pinned by its key, as a browser that
// imported the cluster's CA would): with a certificate error chromium caches nothing, and
// the warm-cache figure would be a second cold one.
async function spkiOf(url) {
  const u = new URL(url);
  return new Promise((resolve, reject) => {
    const s = tls.connect({ host: u.hostname, port: Number(u.port), rejectUnauthorized: false, ALPNProtocols: ['http/1.1'] }, () => {
      const c = new X509Certificate(s.getPeerCertificate().raw);
      resolve(createHash('sha256').update(c.publicKey.export({ type: 'spki', format: 'der' })).digest('base64'));
      s.end();
    }).on('error', reject);
  });
}
const pin = cfg.url ? [`--ignore-certificate-errors-spki-list=${await spkiOf(cfg.url)}`] : [];
// no background traffic: this machine has no network beyond 127.0.0.1 and the registries
const QUIET = ['--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run', '--disable-quic'];
const browser = await chromium.launch({ executablePath: '/usr/bin/chromium', headless: true, args: ['--no-sandbox', '--disable-gpu', ...QUIET, ...pin] });
// the Overview is fully rendered when every node's row shows its state and figures and
// the three cluster charts are drawn
async function fullRender(page, nodes) {
  for (const n of nodes) await page.locator(`#nodes-body tr[data-node="${n}"][data-state="alive"] td:nth-child(4)`).filter({ hasText: /\d/ }).waitFor({ timeout: 20000 });
  await page.locator('#ov-charts .uplot').nth(2).waitFor({ timeout: 5000 });
}

if (cfg.url) {
  const nodes = [cfg.coordinator, ...cfg.workers.map((w) => w.name)];
  const cold = [], warm = [], nav = [], inCold = [], inWarm = [];
  let wire = 0, wireHeaders = 0, files = 0;
  const ctxWarm = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  for (let i = 0; i < RUNS * 2; i++) {
    const isCold = i % 2 === 0;
    const ctx = isCold ? await browser.newContext({ viewport: { width: 1280, height: 800 } }) : ctxWarm;
    const page = await ctx.newPage();
    let w = 0, wh = 0, n = 0;
    page.on('requestfinished', async (r) => {
      const p = new URL(r.url()).pathname;
      if (p !== '/dashboard' && !p.startsWith('/dashboard/static/')) return;
      try { const s = await r.sizes(); w += s.responseBodySize; wh += s.responseHeadersSize; n++; } catch { /* gone */ }
    });
    const t0 = performance.now();
    await page.goto(`${cfg.url}/dashboard`);
    await page.locator('#secret').waitFor();
    const tForm = performance.now();
    await page.fill('#secret', cfg.adminToken);
    await page.click('#login-btn');
    await fullRender(page, nodes);
    const t1 = performance.now();
    (isCold ? cold : warm).push(t1 - t0);
    if (isCold) { nav.push(tForm - t0); wire = w; wireHeaders = wh; files = n; }
    // the page's own clock: navigation start (0) -> login form; submit -> every node drawn
    const m = await page.evaluate(() => Object.fromEntries(performance.getEntriesByType('mark').map((e) => [e.name, e.startTime])));
    (isCold ? inCold : inWarm).push({ form: m['p2p:login-form'], render: m['p2p:overview-full'] - m['p2p:login-submit'] });
    await page.close();
    if (isCold) await ctx.close();
  }
  fig.page_files = files;
  fig.page_wire_body_bytes = wire;
  fig.page_wire_bytes_with_headers = wire + wireHeaders;
  fig.navigation_to_login_form_ms = Math.round(median(nav));
  fig.navigation_to_overview_cold_ms = Math.round(median(cold));
  fig.navigation_to_overview_warm_ms = Math.round(median(warm));
  fig.overview_runs = RUNS;
  fig.page_nav_to_form_cold_ms = Math.round(median(inCold.map((x) => x.form)));
  fig.page_submit_to_overview_cold_ms = Math.round(median(inCold.map((x) => x.render)));
  fig.page_nav_to_form_warm_ms = Math.round(median(inWarm.map((x) => x.form)));
  fig.page_submit_to_overview_warm_ms = Math.round(median(inWarm.map((x) => x.render)));

  // kill -9 -> dead on the page
  const page = await ctxWarm.newPage();
  await page.goto(`${cfg.url}/dashboard`);
  await page.fill('#secret', cfg.adminToken);
  await page.click('#login-btn');
  await fullRender(page, nodes);
  await page.locator('#conn.live').waitFor();
  const w = cfg.workers.find((x) => x.name === cfg.killWorker);
  let memberDead = null;
  const t0 = performance.now();
  process.kill(w.pid, 'SIGKILL');
  const poll = (async () => {
    while (memberDead == null && performance.now() - t0 < 30000) {
      try {
        const n = JSON.parse(await get(`${cfg.url}/cluster/nodes`, cfg.adminToken)).nodes.find((x) => x.node_id === w.name);
        if (n && n.status === 'dead') memberDead = performance.now();
      } catch { /* again */ }
      await new Promise((r) => setTimeout(r, 20));
    }
  })();
  await page.locator(`#nodes-body tr[data-node="${w.name}"][data-state="dead"]`).waitFor({ timeout: 30000 });
  const tPage = performance.now();
  await poll;
  fig.kill9_to_page_dead_ms = Math.round(tPage - t0);
  fig.kill9_membership_dead_ms = memberDead && Math.round(memberDead - t0);
  fig.membership_dead_to_page_ms = memberDead && Math.round(tPage - memberDead);
  await ctxWarm.close();
}

if (cfg.fakeUrl) {
  const ctx = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  const page = await ctx.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(e.message));
  await page.goto(cfg.fakeUrl);
  await page.evaluate(() => {
    window.__long = [];
    new PerformanceObserver((l) => { for (const e of l.getEntries()) window.__long.push(e.duration); }).observe({ type: 'longtask', buffered: true });
  });
  const t0 = performance.now();
  await page.fill('#secret', 'p2pa_fake');
  await page.click('#login-btn');
  await page.locator(`#nodes-body tr`).nth(Math.min(cfg.fakeNodes, 200) - 1).waitFor({ timeout: 30000 });
  await page.locator('#ov-charts .uplot').nth(2).waitFor({ timeout: 5000 });
  fig.fake_nodes = cfg.fakeNodes;
  fig.fake_overview_first_render_ms = Math.round(performance.now() - t0);
  await page.evaluate(() => { window.__long = []; });
  await page.waitForTimeout(10000); // snapshots every 3 s (the page's polling mode) re-render the table in place
  const long = await page.evaluate(() => window.__long);
  fig.fake_overview_10s_long_tasks = long.length;
  fig.fake_overview_10s_longest_task_ms = Math.round(Math.max(0, ...long));
  // an input keeps answering: time from a keypress in the filter to the filtered table
  const tf = performance.now();
  await page.fill('#nodes-filter', 'worker-42');
  await page.locator('#nodes-body tr').nth(10).waitFor({ state: 'detached', timeout: 5000 });
  fig.fake_filter_ms = Math.round(performance.now() - tf);
  await page.fill('#nodes-filter', '');
  const ts = performance.now();
  await page.click('button[data-tab="services"]');
  await page.locator('#services-body tr').nth(199).waitFor({ timeout: 30000 });
  fig.fake_services_tab_rows = await page.locator('#services-body tr').count();
  fig.fake_services_tab_render_ms = Math.round(performance.now() - ts);
  // scrolling to the end builds the rest, 200 rows at a time
  const tg = performance.now();
  for (let i = 0; i < 20 && (await page.locator('#services-body tr').count()) < cfg.fakeNodes * 2; i++) {
    await page.locator('#services-body').evaluate((b) => { const s = b.closest('.scroll'); s.scrollTop = s.scrollHeight; });
    await page.waitForTimeout(50);
  }
  fig.fake_services_all_rows = await page.locator('#services-body tr').count();
  fig.fake_services_scroll_to_all_ms = Math.round(performance.now() - tg);
  const tw = performance.now();
  await page.click('button[data-tab="workers"]');
  await page.locator('#workers-list li').nth(cfg.fakeNodes - 1).waitFor({ timeout: 30000 });
  fig.fake_workers_tab_render_ms = Math.round(performance.now() - tw);
  fig.fake_js_heap_mb = Math.round((await page.evaluate(() => performance.memory?.usedJSHeapSize || 0)) / 1048576);
  fig.fake_page_errors = errors.length;
  await ctx.close();
}
await browser.close();
console.log(`FIGURES ${JSON.stringify(fig)}`);

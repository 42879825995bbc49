// dashboard.mjs — drives Debian's chromium (playwright-core, headless) through the
// dashboard of a real cluster started by test_dashboard.py (or bench/dashboard.py), one
// step after another; a failed step is reported and the next ones still run where they
// can. Prints one line `RESULTS <json>`: {steps: {name: {ok, ms, error?}}, figures: {...}}.
//   node tests/browser/dashboard.mjs CONFIG.json
// CONFIG: {url, ca, adminKey, viewerToken, adminToken, coordinator, workers: [{name, pid, url}],
//          logWorker, killWorker, service: {node, name}, artifacts, mode: "test"|"bench"}
import { createRequire } from 'node:module';
import { readFileSync, mkdirSync } from 'node:fs';
import https from 'node:https';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const require = createRequire(join(here, '..', '..', 'web', 'package.json'));
const { chromium } = require('playwright-core');

const cfg = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const ca = readFileSync(cfg.ca);
const results = { steps: {}, figures: {}, console: [] };
// a waiter left behind by a step that already failed must not end the run
process.on('unhandledRejection', (e) => console.error(`(late rejection: ${e && e.message})`));
const STEP_MS = cfg.stepTimeout || 30000;
mkdirSync(cfg.artifacts, { recursive: true });

function req(method, url, token, body) {
  return new Promise((resolve, reject) => {
    const u = new URL(url);
    const r = https.request({ method, host: u.hostname, port: u.port, path: u.pathname + u.search, ca, timeout: 10000,
      headers: { ...(token ? { Authorization: `Bearer ${token}` } : {}), ...(body ? { 'Content-Type': 'application/json' } : {}) } }, (res) => {
      let d = '';
      res.on('data', (c) => { d += c; });
      res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body: d }));
    });
    r.on('error', reject);
    r.on('timeout', () => r.destroy(new Error('timeout')));
    if (body) r.write(JSON.stringify(body));
    r.end();
  });
}

async function step(name, fn) {
  const t0 = performance.now();
  try {
    await Promise.race([fn(), new Promise((_, rej) => setTimeout(() => rej(new Error(`step timed out after ${STEP_MS} ms`)), STEP_MS))]);
    results.steps[name] = { ok: true, ms: Math.round(performance.now() - t0) };
    console.error(`ok   ${name} (${results.steps[name].ms} ms)`);
  } catch (e) {
    results.steps[name] = { ok: false, ms: Math.round(performance.now() - t0), error: String(e && e.stack || e).slice(0, 2000) };
    console.error(`FAIL ${name}: ${e && e.message}`);
  }
}
const ok = (name) => results.steps[name]?.ok;
function assert(c, msg) { if (!c) throw new Error(msg); }

// no background traffic: this machine has no network beyond 127.0.0.1 and the registries
const QUIET = ['--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run', '--disable-quic'];
const browser = await chromium.launch({ executablePath: cfg.chromium || '/usr/bin/chromium', headless: true,
  args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage', ...QUIET] });
// while the test takes the network away, a request in flight failing is what it asked for
let offline = false;
const watchConsole = (page, who) => {
  page.on('console', (m) => {
    if (m.type() !== 'error') return;
    if (offline && /ERR_INTERNET_DISCONNECTED/.test(m.text())) return;
    results.console.push(`${who}: ${m.text()}`);
  });
  page.on('pageerror', (e) => results.console.push(`${who}: page error: ${e.message}`));
};
const shot = (page, name) => page.screenshot({ path: join(cfg.artifacts, `${name}.png`), fullPage: false });
const nodes = [cfg.coordinator, ...cfg.workers.map((w) => w.name)];

try {
  const ctx = await browser.newContext({ ignoreHTTPSErrors: true, viewport: { width: 1280, height: 800 } });
  const page = await ctx.newPage();
  watchConsole(page, 'admin');
  let wire = 0;
  page.on('requestfinished', async (r) => {
    const p = new URL(r.url()).pathname;
    if (p !== '/dashboard' && !p.startsWith('/dashboard/static/')) return;
    try { const s = await r.sizes(); wire += s.responseBodySize + s.responseHeadersSize; } catch { /* gone */ }
  });

  await step('page loads with its security headers', async () => {
    const t0 = performance.now();
    const resp = await page.goto(`${cfg.url}/dashboard`, { waitUntil: 'load' });
    await page.locator('#secret').waitFor({ state: 'visible' });
    results.figures.navigation_to_login_ms = Math.round(performance.now() - t0);
    const h = resp.headers();
    assert(resp.status() === 200, `status ${resp.status()}`);
    assert(/default-src 'self'/.test(h['content-security-policy'] || '') && /frame-ancestors 'none'/.test(h['content-security-policy']), `CSP: ${h['content-security-policy']}`);
    assert(!/unsafe-inline/.test(h['content-security-policy']), 'CSP allows inline code');
    assert(h['x-content-type-options'] === 'nosniff', 'no nosniff');
    assert(h['cache-control'] === 'no-cache', `page cache-control ${h['cache-control']}`);
  });

  await step('log in with the admin API key and see every node on the Overview', async () => {
    const t0 = performance.now();
    await page.fill('#secret', cfg.adminKey);
    await page.click('#login-btn');
    for (const n of nodes) await page.locator(`#nodes-body tr[data-node="${n}"][data-state="alive"]`).waitFor({ timeout: 20000 });
    results.figures.login_to_overview_ms = Math.round(performance.now() - t0);
    // the secret is nowhere the browser keeps things
    assert(!page.url().includes(cfg.adminKey) && !page.url().includes('token'), `URL ${page.url()}`);
    const stored = await page.evaluate(() => [localStorage.length, sessionStorage.length, document.cookie]);
    assert(stored[0] === 0 && stored[1] === 0 && stored[2] === '', `stored: ${stored}`);
    assert(await page.locator('#secret').inputValue() === '', 'the key is still in the form');
    await page.locator('#conn.live').waitFor({ timeout: 10000 });
    const st = await page.locator('#stats [data-stat="nodes_alive"] .v').textContent();
    assert(st === String(nodes.length), `alive card says ${st}`);
    await page.waitForTimeout(1500); // a few live samples into the charts
    await shot(page, 'overview');
  });
  results.figures.page_wire_bytes = wire;

  await step('Workers tab: a node with fields and history charts', async () => {
    const w = cfg.workers[0].name;
    const hist = page.waitForResponse((r) => r.url().includes(`/api/dashboard/history/${w}?range=15m`) && r.status() === 200, { timeout: 15000 });
    await page.click('button[data-tab="workers"]');
    await page.click(`#workers-list li[data-node="${w}"]`);
    const h = await (await hist).json();
    assert(Array.isArray(h.t) && h.t.length > 0, `history of ${w} is empty`);
    await page.locator('#wd-title', { hasText: w }).waitFor();
    assert((await page.locator('#wd-charts .uplot').count()) >= 4, 'charts missing');
    assert(/\d/.test(await page.locator('#wd-fields').textContent()), 'no figures in the fields');
    const day = page.waitForResponse((r) => r.url().includes(`/api/dashboard/history/${w}?range=24h`) && r.status() === 200, { timeout: 10000 });
    await page.click('#wd-range button[data-range="24h"]');
    await day;
    await page.click('#wd-range button[data-range="15m"]');
    await page.waitForTimeout(800);
    // cursors are synced: hovering the CPU chart moves the cursor of the memory chart
    const over = page.locator('#wd-charts .uplot .u-over').first();
    const box = await over.boundingBox();
    await page.mouse.move(box.x + box.width - 5, box.y + box.height / 2);
    await page.waitForTimeout(200);
    const other = await page.locator('#wd-charts .uplot').nth(1).locator('.u-legend .u-series').first().locator('.u-value').textContent();
    assert(other && other !== '--', `the memory chart's cursor did not follow (time ${other})`);
    await page.mouse.move(0, 0);
    await shot(page, 'workers');
  });

  await step('Services tab: every node\'s services with state and health', async () => {
    await page.click('button[data-tab="services"]');
    const { node, name } = cfg.service;
    await page.locator(`#services-body tr[data-node="${node}"][data-service="${name}"][data-state="running"]`).waitFor({ timeout: 15000 });
    for (const n of cfg.workers.map((x) => x.name)) await page.locator(`#services-body tr[data-node="${n}"]`).first().waitFor({ timeout: 15000 });
    // the buttons come with the service's kind (pluggable), known once the node has reported
    await page.locator(`#services-body tr[data-node="${node}"][data-service="${name}"] button[data-action="restart"]`).waitFor({ timeout: 15000 });
    await shot(page, 'services');
  });

  await step('Services tab: the Rollouts panel shows a rollout with each node\'s state', async () => {
    const { id, version } = cfg.rollout;
    const tr = page.locator(`#rollouts-body tr[data-rollout="${id}"][data-state="done"]`);
    await tr.waitFor({ timeout: 15000 });
    for (const n of cfg.workers.map((x) => x.name)) {
      await tr.locator(`span.ro-node[data-node="${n}"][data-state="committed"]`).waitFor({ timeout: 5000 });
    }
    const text = await tr.innerText();
    assert(text.includes(`hello ${version}`), `the row does not name the package: ${text}`);
    const note = await page.locator('#rollouts-note').innerText();
    assert(note.includes(`hello ${version}`), `the committed version is not shown: ${note}`);
    results.figures.rollout_row = text;
    await shot(page, 'rollouts');
  });

  await step('restart, stop and start a service from the page and see its state change', async () => {
    const { node, name } = cfg.service;
    const sel = `#services-body tr[data-node="${node}"][data-service="${name}"]`;
    // every state the row shows, as it changes
    await page.evaluate((s) => {
      window.__states = [];
      const tr = document.querySelector(s);
      new MutationObserver(() => window.__states.push(tr.dataset.state)).observe(tr, { attributes: true, attributeFilter: ['data-state'] });
    }, sel);
    const restart = page.waitForResponse((r) => r.url().endsWith('/api/dashboard/control-service'), { timeout: 15000 });
    await page.click(`${sel} button[data-action="restart"]`);
    const rr = await restart;
    assert(rr.status() === 200, `restart answered ${rr.status()}: ${await rr.text()}`);
    await page.locator(`${sel}[data-state="running"]`).waitFor({ timeout: 10000 });
    await page.locator('#toast', { hasText: `restart ${name} on ${node}` }).waitFor({ timeout: 5000 });
    await page.click(`${sel} button[data-action="stop"]`);
    await page.locator(`${sel}[data-state="stopped"]`).waitFor({ timeout: 10000 });
    // the worker itself says so
    const s = await req('GET', `${cfg.workers.find((w) => w.name === node).url}/services/${name}`, cfg.adminToken);
    assert(s.status === 200 && JSON.parse(s.body).state === 'stopped', `worker says ${s.status} ${s.body.slice(0, 200)}`);
    await page.click(`${sel} button[data-action="start"]`);
    await page.locator(`${sel}[data-state="running"]`).waitFor({ timeout: 10000 });
    results.figures.service_states_seen = await page.evaluate(() => window.__states);
  });

  await step('Logs tab: a line logged on a worker appears within 1 s', async () => {
    await page.click('button[data-tab="logs"]');
    await page.locator('#log-lines .ll').first().waitFor({ timeout: 10000 });
    const w = cfg.workers.find((x) => x.name === cfg.logWorker);
    const marker = `browser-marker-${Date.now()}`;
    const seen = page.locator('#log-lines .ll', { hasText: marker }).waitFor({ timeout: 10000 });
    const t0 = performance.now();
    await req('GET', `${w.url}/no/such/${marker}`, cfg.adminToken); // the worker logs an access line with the marker
    await seen;
    const ms = Math.round(performance.now() - t0);
    results.figures.log_line_to_page_ms = ms;
    assert((await page.locator('#log-lines .ll', { hasText: marker }).getAttribute('data-node')) === w.name, 'wrong node on the line');
    assert(ms <= 1000, `the line took ${ms} ms`);
    await shot(page, 'logs');
  });

  await step('Logs tab: older lines load when scrolled to the top', async () => {
    const w = cfg.workers.find((x) => x.name === cfg.logWorker);
    // more lines of one node than a filter change loads (its newest 200)
    for (let i = 0; i < 300; i += 50) {
      await Promise.all(Array.from({ length: 50 }, (_, k) => req('GET', `${w.url}/no/such/older-${i + k}`, cfg.adminToken)));
    }
    await page.waitForTimeout(1000);
    const reload = page.waitForResponse((r) => r.url().includes('/api/logs?') && r.url().includes(`node_id=${w.name}`) && !r.url().includes('until=') && r.status() === 200, { timeout: 10000 });
    await page.selectOption('#lf-node', w.name);
    await reload;
    await page.waitForTimeout(300);
    const before = await page.locator('#log-lines .ll[data-node]').count();
    const older = page.waitForResponse((r) => r.url().includes('/api/logs?') && r.url().includes('until=') && r.status() === 200, { timeout: 10000 });
    await page.locator('#log-view').evaluate((v) => { v.scrollTop = 0; v.dispatchEvent(new Event('scroll')); });
    await older;
    await page.waitForTimeout(300);
    const after = await page.locator('#log-lines .ll[data-node]').count();
    assert(after > before, `no older lines (${before} -> ${after})`);
    const ts = await page.locator('#log-lines .ll[data-node]').evaluateAll((ls) => ls.map((l) => Number(l.dataset.ts)));
    assert(ts.every((t, i, a) => i === 0 || a[i - 1] <= t), 'lines out of time order');
    await page.selectOption('#lf-node', '');
    await page.waitForTimeout(500);
  });

  await step('Logs tab: filter, pause and resume', async () => {
    const w = cfg.workers.find((x) => x.name === cfg.logWorker);
    await page.selectOption('#lf-node', w.name);
    await page.waitForTimeout(800);
    const others = await page.locator(`#log-lines .ll[data-node]:not([data-node="${w.name}"])`).count();
    assert(others === 0, `${others} lines of other nodes under a node filter`);
    await page.click('#lf-pause');
    const marker = `paused-marker-${Date.now()}`;
    await req('GET', `${w.url}/no/such/${marker}`, cfg.adminToken);
    await page.waitForTimeout(1200);
    assert((await page.locator('#log-lines .ll', { hasText: marker }).count()) === 0, 'a line was shown while paused');
    await page.click('#lf-pause');
    await page.locator('#log-lines .ll', { hasText: marker }).waitFor({ timeout: 3000 });
    await page.selectOption('#lf-node', '');
  });

  await step('the socket drops and resumes: lines logged meanwhile arrive', async () => {
    await page.click('button[data-tab="logs"]');
    const marker = `offline-marker-${Date.now()}`;
    const frames = [];
    page.on('websocket', (ws) => {
      ws.on('framereceived', (f) => { const t = String(f.payload); frames.push(t.includes(marker) ? `(with the marker) ${t.slice(0, 300)}` : t.slice(0, 300)); });
      ws.on('framesent', (f) => { frames.push(`SENT ${String(f.payload).replace(/"token":"[^"]*"/, '"token":"…"').slice(0, 200)}`); });
    });
    offline = true;
    await ctx.setOffline(true);
    try {
      await page.locator('#conn.down').waitFor({ timeout: 15000 });
      await req('GET', `${cfg.url}/no/such/${marker}`, cfg.adminToken); // the coordinator's own access line
      await page.waitForTimeout(1000);
    } finally {
      await ctx.setOffline(false);
      setTimeout(() => { offline = false; }, 500);
    }
    await page.locator('#conn.live').waitFor({ timeout: 15000 });
    const seen = await page.locator('#log-lines .ll', { hasText: marker }).waitFor({ timeout: 15000 }).then(() => true, () => false);
    assert(seen, `the line logged while offline did not arrive; frames: ${frames.filter((f) => f.startsWith('(with') || f.startsWith('SENT') || !f.includes('"metrics"')).slice(0, 12).join(' | ')}`);
    assert(frames.some((f) => f.includes('"type":"resumed"')), `no resumed message: ${frames.slice(0, 3).join(' | ')}`);
    assert((await page.locator('#log-lines .ll', { hasText: marker }).count()) === 1, 'the line is shown twice');
  });

  await step('Certificates tab: the CA and every node', async () => {
    await page.click('button[data-tab="certificates"]');
    for (const n of nodes) await page.locator(`#certs-body tr[data-node="${n}"]`).waitFor({ timeout: 10000 });
    assert(/\S/.test(await page.locator('#ca dd').first().textContent()), 'no CA subject');
    await shot(page, 'certificates');
  });

  await step('SIGKILL a worker: it turns dead on the open page', async () => {
    await page.click('button[data-tab="overview"]');
    const w = cfg.workers.find((x) => x.name === cfg.killWorker);
    let memberDead = null;
    const t0 = performance.now();
    process.kill(w.pid, 'SIGKILL');
    const poll = (async () => {
      while (memberDead == null && performance.now() - t0 < 30000) {
        try {
          const r = await req('GET', `${cfg.url}/cluster/nodes`, cfg.adminToken);
          const n = JSON.parse(r.body).nodes.find((x) => x.node_id === w.name);
          if (n && n.status === 'dead') memberDead = performance.now();
        } catch { /* retry */ }
        await new Promise((r) => setTimeout(r, 50));
      }
    })();
    await page.locator(`#nodes-body tr[data-node="${w.name}"][data-state="dead"]`).waitFor({ timeout: 30000 });
    const pageDead = performance.now();
    await poll;
    results.figures.kill_to_page_dead_ms = Math.round(pageDead - t0);
    if (memberDead != null) results.figures.membership_dead_to_page_ms = Math.round(pageDead - memberDead);
    await shot(page, 'overview-dead');
  });

  await step('phone-sized viewport: the Overview fits', async () => {
    await page.setViewportSize({ width: 390, height: 844 });
    await page.waitForTimeout(300);
    const over = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    await shot(page, 'overview-phone');
    await page.setViewportSize({ width: 1280, height: 800 });
    assert(over <= 2, `the page is ${over}px wider than the phone screen`);
  });

  await step('a viewer sees no control buttons', async () => {
    const vctx = await browser.newContext({ ignoreHTTPSErrors: true, viewport: { width: 1280, height: 800 } });
    const vp = await vctx.newPage();
    watchConsole(vp, 'viewer');
    await vp.goto(`${cfg.url}/dashboard`);
    await vp.fill('#secret', cfg.viewerToken);
    await vp.click('#login-btn');
    await vp.locator('#me', { hasText: 'viewer' }).waitFor({ timeout: 10000 });
    await vp.click('button[data-tab="services"]');
    await vp.locator('#services-body tr').first().waitFor({ timeout: 10000 });
    const n = await vp.locator('#services-body button').count();
    assert(n === 0, `${n} control buttons for a viewer`);
    assert(!(await vp.locator('th.admin-only').isVisible()), 'the actions column is shown');
    // the Rollouts panel is read-only: a viewer sees it too
    await vp.locator(`#rollouts-body tr[data-rollout="${cfg.rollout.id}"]`).waitFor({ timeout: 10000 });
    await shot(vp, 'services-viewer');
    await vctx.close();
  });

  await step('a wrong token is refused at login', async () => {
    const x = await browser.newContext({ ignoreHTTPSErrors: true });
    const p = await x.newPage();
    await p.goto(`${cfg.url}/dashboard`);
    await p.fill('#secret', 'not-a-token');
    await p.click('#login-btn');
    await p.locator('#login-error', { hasText: 'Refused' }).waitFor({ timeout: 5000 });
    assert(await p.locator('#app').isHidden(), 'the app is shown');
    await x.close();
  });

  await step('no console errors', async () => {
    assert(results.console.length === 0, `console errors:\n${results.console.join('\n')}`);
  });
  await ctx.close();
} finally {
  await browser.close();
  console.log(`RESULTS ${JSON.stringify(results)}`);
}

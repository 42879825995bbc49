// embed.mjs — turns the dashboard's sources (web/dashboard/*) and uPlot's dist files into
// one generated C source for src/web/static.c: each asset raw and gzip-precompressed, the
// page at "/dashboard" (Cache-Control: no-cache) and every other file under
// "/dashboard/static/<name>.<hash>.<ext>" (content-hashed: cached for a year, immutable).
// The page loads few files (a handful of requests, under the per-client rate limit even
// when nothing is cached): each `<!-- bundle:css -->` / `<!-- bundle:js -->` block of
// index.html becomes one file, the CSS concatenated, the scripts concatenated with the JS
// modules folded into one script (each module in its own function scope, imports bound to
// the exports of the modules before it; the sources use only `import { a, b } from
// './x.js'` and `export function|const|class`). "static/NAME" references are rewritten to
// the hashed names. Served as-is, index.html also works unbundled (tests/browser/fakeapi.mjs).
//   node web/embed.mjs SRC_DIR NODE_MODULES_DIR OUT.c
import { createHash } from 'node:crypto';
import { readFileSync, readdirSync, writeFileSync, existsSync, mkdirSync, renameSync } from 'node:fs';
import { join, extname, dirname } from 'node:path';
import { gzipSync, constants } from 'node:zlib';

const [src, nm, out] = process.argv.slice(2);
if (!src || !nm || !out) {
  console.error('usage: node embed.mjs SRC_DIR NODE_MODULES_DIR OUT.c');
  process.exit(2);
}
const uplotDist = join(nm, 'uplot', 'dist');
if (!existsSync(join(uplotDist, 'uPlot.iife.min.js'))) {
  console.error(`embed: ${uplotDist}/uPlot.iife.min.js is missing: the npm packages are not installed; run 'make deps' (npm ci in web/)`);
  process.exit(1);
}

const TYPES = {
  '.html': 'text/html; charset=utf-8', '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8', '.svg': 'image/svg+xml', '.png': 'image/png',
};
const files = new Map(); // name -> Buffer
for (const f of readdirSync(src).sort()) {
  if (!TYPES[extname(f)]) continue;
  files.set(f, readFileSync(join(src, f)));
}
files.set('uPlot.min.js', readFileSync(join(uplotDist, 'uPlot.iife.min.js')));
files.set('uPlot.min.css', readFileSync(join(uplotDist, 'uPlot.min.css')));
if (!files.has('index.html')) {
  console.error(`embed: ${src}/index.html is missing`);
  process.exit(1);
}

// ---- bundling ------------------------------------------------------------------------
const IMPORT_LINE = /^import\s*\{([^}]*)\}\s*from\s*['"]\.\/([A-Za-z0-9_.-]+\.js)['"];?[ \t]*$/gm;
const EXPORT_NAME = /^export\s+(?:async\s+)?(?:function\*?|const|let|class)\s+([A-Za-z_$][\w$]*)/gm;
function bundleModules(entry) {
  const order = [], state = new Map();
  const visit = (name, stack) => {
    if (state.get(name) === 2) return;
    if (state.get(name) === 1) throw new Error(`embed: import cycle ${[...stack, name].join(' -> ')}`);
    if (!files.has(name)) throw new Error(`embed: ${stack.at(-1)} imports ${name}, which is not in ${src}`);
    state.set(name, 1);
    const text = files.get(name).toString('utf8');
    for (const m of text.matchAll(IMPORT_LINE)) visit(m[2], [...stack, name]);
    if (/^\s*(import|export)\b/m.test(text.replace(IMPORT_LINE, '').replace(EXPORT_NAME, ''))) {
      throw new Error(`embed: ${name} has an import or export form the bundler does not fold`);
    }
    state.set(name, 2);
    order.push(name);
  };
  visit(entry, []);
  const id = (n) => `__m_${n.replace(/\.js$/, '').replace(/[^A-Za-z0-9_]/g, '_')}`;
  return order.map((n) => {
    const text = files.get(n).toString('utf8');
    const names = [...text.matchAll(EXPORT_NAME)].map((m) => m[1]);
    const body = text.replace(IMPORT_LINE, (m, list, dep) => `const {${list}} = ${id(dep)};`).replace(/^export\s+/gm, '');
    return `const ${id(n)} = (() => {\n'use strict';\n// ${n}\n${body}\nreturn { ${names.join(', ')} };\n})();\n`;
  }).join('');
}

let html = files.get('index.html').toString('utf8');
html = html.replace(/<!-- bundle:(css|js) -->([\s\S]*?)<!-- \/bundle -->/g, (m, kind, block) => {
  const parts = [];
  if (kind === 'css') {
    for (const x of block.matchAll(/<link[^>]*href="static\/([^"]+)"[^>]*>/g)) parts.push(files.get(x[1]).toString('utf8'));
    files.set('dashboard.css', Buffer.from(parts.join('\n')));
    return '<link rel="stylesheet" href="static/dashboard.css">';
  }
  for (const x of block.matchAll(/<script([^>]*)src="static\/([^"]+)"[^>]*><\/script>/g)) {
    if (!files.has(x[2])) throw new Error(`embed: index.html loads ${x[2]}, which is not in ${src}`);
    parts.push(/type="module"/.test(x[1]) ? bundleModules(x[2]) : files.get(x[2]).toString('utf8'));
  }
  files.set('dashboard.js', Buffer.from(parts.join('\n;\n')));
  return '<script src="static/dashboard.js" defer></script>';
});
html = html.replace(/<link rel="modulepreload"[^>]*>\n?/g, '');
files.set('index.html', Buffer.from(html));

// ---- hashing: only what the page references is embedded ------------------------------
const hashed = new Map(); // name -> hashed name
const bodies = new Map(); // name -> rewritten Buffer
const STATIC = /static\/([A-Za-z0-9_.-]+\.[a-z]+)/g;
function resolve(name, stack = []) {
  if (hashed.has(name)) return hashed.get(name);
  if (!files.has(name)) throw new Error(`embed: ${stack.at(-1) ?? '?'} refers to ${name}, which is not in ${src}`);
  if (stack.includes(name)) throw new Error(`embed: reference cycle ${[...stack, name].join(' -> ')}`);
  let body = files.get(name);
  const ext = extname(name);
  if (ext === '.css' || ext === '.html') {
    body = Buffer.from(body.toString('utf8').replace(STATIC, (m, dep) => `/dashboard/static/${resolve(dep, [...stack, name])}`));
  }
  bodies.set(name, body);
  const h = createHash('sha256').update(body).digest('hex').slice(0, 12);
  const hn = name === 'index.html' ? name : `${name.slice(0, -ext.length)}.${h}${ext}`;
  hashed.set(name, hn);
  return hn;
}
resolve('index.html');

function carray(id, buf) {
  const lines = [];
  for (let i = 0; i < buf.length; i += 24) lines.push('  ' + [...buf.subarray(i, i + 24)].map((b) => `${b},`).join(''));
  return `static const unsigned char ${id}[${Math.max(buf.length, 1)}] = {\n${lines.join('\n') || '  0'}\n};\n`;
}
let c = '/* generated by web/embed.mjs from web/dashboard/ and uPlot: do not edit */\n#include "web/assets.h"\n\n';
const rows = [];
let i = 0, raw = 0, gz = 0;
for (const [name, hn] of [...hashed.entries()].sort()) {
  const body = bodies.get(name);
  const z = gzipSync(body, { level: constants.Z_BEST_COMPRESSION });
  const etag = '"' + createHash('sha256').update(body).digest('hex').slice(0, 16) + '"';
  c += carray(`a${i}`, body) + carray(`z${i}`, z);
  const path = name === 'index.html' ? '/dashboard' : `/dashboard/static/${hn}`;
  rows.push(`  {${JSON.stringify(path)}, ${JSON.stringify(TYPES[extname(name)])}, ${JSON.stringify(etag)}, a${i}, ${body.length}, z${i}, ${z.length}, ${name === 'index.html' ? 0 : 1}},`);
  raw += body.length; gz += z.length; i++;
}
c += `\nconst p2p_web_asset p2p__web_assets[] = {\n${rows.join('\n')}\n};\nconst size_t p2p__web_assets_n = ${rows.length};\n`;
c += `const size_t p2p__web_assets_gzip_total = ${gz};\n`;
mkdirSync(dirname(out), { recursive: true });
writeFileSync(out + '.tmp', c);
renameSync(out + '.tmp', out);
console.log(`embed: ${rows.length} dashboard assets, ${raw} bytes, ${gz} gzipped`);

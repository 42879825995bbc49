// util.js — small DOM and formatting helpers (no framework).
export const $ = (id) => document.getElementById(id);

// el('td', {class: 'num'}, 'text', child...) — attributes are set as properties when they
// exist on the element, else as attributes; never innerHTML (no markup from the server).
export function el(tag, attrs, ...kids) {
  const e = document.createElement(tag);
  if (attrs) for (const [k, v] of Object.entries(attrs)) {
    if (v == null || v === false) continue;
    if (k === 'class') e.className = v;
    else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else if (k === 'dataset') Object.assign(e.dataset, v);
    else e.setAttribute(k, v === true ? '' : v);
  }
  for (const k of kids) if (k != null) e.append(k instanceof Node ? k : String(k));
  return e;
}

// Sets text only when it changed (keeps layout work down when rows update in place).
export function setText(e, s) {
  s = s == null ? '' : String(s);
  if (e.textContent !== s) e.textContent = s;
}
export function setClass(e, c) {
  if (e.className !== c) e.className = c;
}

export const num = (v, d = 1) => (v == null || Number.isNaN(v) ? '–' : Number(v).toFixed(d));
export function bytes(v) {
  if (v == null) return '–';
  const u = ['B', 'KB', 'MB', 'GB', 'TB'];
  let i = 0;
  while (v >= 1024 && i < u.length - 1) { v /= 1024; i++; }
  return `${v.toFixed(i ? 1 : 0)} ${u[i]}`;
}
export function ago(t) {
  if (!t) return 'never';
  const s = Math.max(0, Math.round(Date.now() / 1000 - t));
  if (s < 60) return `${s}s ago`;
  if (s < 3600) return `${Math.floor(s / 60)}m ago`;
  if (s < 86400) return `${Math.floor(s / 3600)}h ago`;
  return `${Math.floor(s / 86400)}d ago`;
}
export function duration(s) {
  if (s == null) return '–';
  const d = Math.floor(s / 86400), h = Math.floor((s % 86400) / 3600), m = Math.floor((s % 3600) / 60);
  return d ? `${d}d ${h}h` : h ? `${h}h ${m}m` : `${m}m ${Math.floor(s % 60)}s`;
}
export function isoTime(t) {
  if (t == null) return '–';
  const d = new Date(typeof t === 'number' ? t * 1000 : t);
  return Number.isNaN(d.getTime()) ? String(t) : d.toISOString().replace('T', ' ').replace(/\.\d+Z$/, 'Z');
}

// Runs fn at most once per animation frame, however often it is asked for.
export function coalesce(fn) {
  let queued = false;
  return () => {
    if (queued) return;
    queued = true;
    requestAnimationFrame(() => { queued = false; fn(); });
  };
}

let toastTimer;
export function toast(msg, bad = false) {
  const t = $('toast');
  t.textContent = msg;
  t.className = bad ? 'toast bad' : 'toast';
  t.hidden = false;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => { t.hidden = true; }, 4000);
}

// A list that shows `step` rows and `step` more each time its scroll box nears the bottom
// (long tables are built as they are read, not all at once). `rerender` runs on growth.
export class Growing {
  constructor(scrollBox, step, rerender) {
    this.step = step;
    this.limit = step;
    scrollBox.addEventListener('scroll', () => {
      if (scrollBox.scrollTop + scrollBox.clientHeight > scrollBox.scrollHeight - 200) {
        this.limit += this.step;
        rerender();
      }
    }, { passive: true });
  }

  reset() { this.limit = this.step; }
}

// charts.js — uPlot line charts (uPlot is the global from the bundled uPlot.min.js).
// Charts created with the same `sync` key share their cursor: hovering one shows the same
// instant on the others.
import { el } from './util.js';

const COLORS = ['#3b82f6', '#22c55e', '#f59e0b', '#ef4444', '#a855f7', '#06b6d4', '#eab308', '#ec4899'];

export class Chart {
  // series: [{label, color?, fmt?}] (after the time column); opts: {title, sync, yMax, fmt, height}
  constructor(parent, series, opts = {}) {
    this.box = el('div', { class: 'chart' }, el('div', { class: 'title' }, opts.title || ''));
    parent.append(this.box);
    const fmt = opts.fmt || ((v) => (v == null ? '–' : v.toFixed(1)));
    this.data = [[], ...series.map(() => [])];
    const width = Math.max(200, parent.clientWidth ? Math.min(parent.clientWidth, this.box.clientWidth || 400) : 400);
    this.u = new uPlot({
      width, height: opts.height || 150,
      cursor: opts.sync ? { sync: { key: opts.sync, setSeries: true } } : {},
      legend: { live: true },
      scales: { x: { time: true }, y: opts.yMax ? { range: [0, opts.yMax] } : { range: (u, min, max) => [0, Math.max(1, max * 1.1)] } },
      axes: [
        { stroke: '#8b9ab5', grid: { stroke: '#1e293b' }, ticks: { stroke: '#1e293b' } },
        { stroke: '#8b9ab5', grid: { stroke: '#1e293b' }, ticks: { stroke: '#1e293b' }, size: 74, values: (u, vs) => vs.map((v) => (opts.axisFmt || fmt)(v)) },
      ],
      series: [{}, ...series.map((s, i) => ({
        label: s.label, stroke: s.color || COLORS[i % COLORS.length], width: 1.5, spanGaps: false,
        value: (u, v) => (v == null ? '–' : (s.fmt || fmt)(v)), points: { show: false },
      }))],
    }, this.data, this.box);
    this.ro = new ResizeObserver(() => {
      const w = this.box.clientWidth;
      if (w > 0 && Math.abs(w - this.u.width) > 4) this.u.setSize({ width: w, height: this.u.height });
    });
    this.ro.observe(this.box);
  }

  setData(cols) {
    this.data = cols;
    this.u.setData(cols);
  }

  destroy() {
    this.ro.disconnect();
    this.u.destroy();
    this.box.remove();
  }
}

// A per-second ring of columns (t plus n series), capped at `cap` points, for live charts.
export class Ring {
  constructor(n, cap = 900) {
    this.cap = cap;
    this.cols = [[], ...Array.from({ length: n }, () => [])];
  }

  // Puts one point at time t (replacing a point already at t, keeping time order).
  put(t, vals) {
    const ts = this.cols[0];
    let i = ts.length;
    while (i > 0 && ts[i - 1] > t) i--;
    if (i > 0 && ts[i - 1] === t) {
      vals.forEach((v, k) => { this.cols[k + 1][i - 1] = v; });
      return;
    }
    ts.splice(i, 0, t);
    vals.forEach((v, k) => this.cols[k + 1].splice(i, 0, v));
    if (ts.length > this.cap) this.cols.forEach((c) => c.splice(0, ts.length - this.cap));
  }
}

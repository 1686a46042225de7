// The scaling benchmark (npm run bench:scale): for 1…N isolated, CPU-capped hosts behind
// nginx, the highest constant arrival rate that holds p99 ≤ a bound with no errors, found
// by raising the rate until it fails and then bisecting; with the CPU each process group
// spent per request at that rate. Also renders the result as a self-contained HTML chart.
import { runLoad, type StageResult } from '../loadtest/node/runner';
import { pidsNamed, withCpu, type ProcessGroups } from './cpu';
import type { Mix } from './api-bench';

export interface Step {
  rate: number;
  rps: number;
  p99: number;
  errors: number;
  passed: boolean;
  cpuUsPerRequest: Record<string, number>;
}

export interface ScalePoint {
  hosts: number;
  /** The highest rate that passed (0 when none did). */
  maxRate: number;
  /** The step at that rate. */
  best?: Step;
  steps: Step[];
}

export interface SearchOptions {
  target: string;
  hostPids: number[];
  products: number;
  distribution: string;
  mix?: Mix;
  p99Ms: number;
  stepSeconds: number;
  startRate: number;
  /** Bisection rounds after the first failure. */
  rounds: number;
  /** Seconds of load at half the start rate before measuring (JIT, pools, caches). */
  warmupSeconds?: number;
  /** More process groups to report CPU for (e.g. each PostgreSQL server apart). */
  groups?: ProcessGroups;
  log: (line: string) => void;
}

async function step(o: SearchOptions, rate: number, seed: number): Promise<Step> {
  const groups = { hosts: () => o.hostPids, nginx: () => pidsNamed('nginx'), postgres: () => pidsNamed('postgres'), ...o.groups };
  const { result, cpuMs } = await withCpu(groups, () => runLoad({
    target: o.target, stages: [{ rate, duration: o.stepSeconds }], products: o.products, distribution: o.distribution, mix: o.mix, seed,
  }));
  const s: StageResult = result.stages[0];
  const passed = s.errors === 0 && s.latencyMs.p99 <= o.p99Ms && s.rps >= rate * 0.95;
  const out = { rate, rps: s.rps, p99: s.latencyMs.p99, errors: s.errors, passed, cpuUsPerRequest: Object.fromEntries(Object.entries(cpuMs).map(([k, v]) => [k, (v * 1000) / Math.max(1, s.requests)])) };
  o.log(`  ${rate} req/s: ${Math.round(s.rps)} served, p99 ${s.latencyMs.p99.toFixed(1)} ms, errors ${s.errors} — ${passed ? 'pass' : 'fail'}`);
  return out;
}

/** Doubles the rate until a step fails, then bisects between the last pass and the fail. */
export async function findMaxRate(o: SearchOptions, hosts: number): Promise<ScalePoint> {
  const steps: Step[] = [];
  let seed = hosts * 100;
  if (o.warmupSeconds) {
    await runLoad({ target: o.target, stages: [{ rate: Math.max(10, o.startRate / 2), duration: o.warmupSeconds }], products: o.products, distribution: o.distribution, mix: o.mix, seed: seed++ });
  }
  let pass: Step | undefined;
  let fail: Step | undefined;
  for (let rate = o.startRate; !fail && rate <= 64_000; rate *= 2) {
    const s = await step(o, rate, seed++);
    steps.push(s);
    if (s.passed) pass = s;
    else fail = s;
  }
  for (let i = 0; i < o.rounds && fail; i++) {
    const low = pass?.rate ?? 0;
    const rate = Math.round((low + fail.rate) / 2 / 50) * 50;
    if (rate <= low || rate >= fail.rate) break;
    const s = await step(o, rate, seed++);
    steps.push(s);
    if (s.passed) pass = s;
    else fail = s;
  }
  return { hosts, maxRate: pass?.rate ?? 0, best: pass, steps };
}

const esc = (s: string) => s.replace(/[&<>"]/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;' })[c]!);

/** Throughput against hosts for each series, with linear scaling from one host drawn dashed. */
export function scaleChart(title: string, series: { name: string; points: ScalePoint[] }[], note: string): string {
  const W = 720, H = 420, L = 70, B = 50, T = 30, R = 170;
  const maxHosts = Math.max(...series.flatMap((s) => s.points.map((p) => p.hosts)), 1);
  const maxY = Math.max(...series.flatMap((s) => s.points.map((p) => Math.max(p.maxRate, (s.points[0]?.maxRate ?? 0) * p.hosts))), 1) * 1.1;
  const x = (h: number) => L + ((h - 1) / Math.max(1, maxHosts - 1)) * (W - L - R);
  const y = (v: number) => H - B - (v / maxY) * (H - B - T);
  const colors = ['#1f77b4', '#d62728', '#2ca02c', '#9467bd'];
  const parts: string[] = [];
  for (let i = 0; i <= 5; i++) {
    const v = (maxY / 5) * i;
    parts.push(`<line x1="${L}" x2="${W - R}" y1="${y(v)}" y2="${y(v)}" stroke="#eee"/><text x="${L - 8}" y="${y(v) + 4}" text-anchor="end" font-size="11">${Math.round(v)}</text>`);
  }
  for (let h = 1; h <= maxHosts; h++) parts.push(`<text x="${x(h)}" y="${H - B + 18}" text-anchor="middle" font-size="11">${h}</text>`);
  series.forEach((s, i) => {
    const c = colors[i % colors.length];
    const one = s.points[0]?.maxRate ?? 0;
    parts.push(`<polyline fill="none" stroke="${c}" stroke-dasharray="5,4" stroke-opacity="0.6" points="${s.points.map((p) => `${x(p.hosts)},${y(one * p.hosts)}`).join(' ')}"/>`);
    parts.push(`<polyline fill="none" stroke="${c}" stroke-width="2.5" points="${s.points.map((p) => `${x(p.hosts)},${y(p.maxRate)}`).join(' ')}"/>`);
    for (const p of s.points) parts.push(`<circle cx="${x(p.hosts)}" cy="${y(p.maxRate)}" r="4" fill="${c}"><title>${p.hosts} hosts: ${p.maxRate} req/s</title></circle>`);
    parts.push(`<rect x="${W - R + 15}" y="${T + i * 40}" width="12" height="12" fill="${c}"/><text x="${W - R + 32}" y="${T + i * 40 + 10}" font-size="12">${esc(s.name)}</text>`);
    parts.push(`<text x="${W - R + 32}" y="${T + i * 40 + 25}" font-size="10" fill="#666">dashed: linear from 1 host</text>`);
  });
  parts.push(`<text x="${(L + W - R) / 2}" y="${H - 8}" text-anchor="middle" font-size="12">hosts (each capped by its cgroup)</text>`);
  parts.push(`<text x="16" y="${(T + H - B) / 2}" text-anchor="middle" font-size="12" transform="rotate(-90 16 ${(T + H - B) / 2})">highest rate holding the p99 bound (req/s)</text>`);
  const rows = series.flatMap((s) => s.points.map((p) => `<tr><td>${esc(s.name)}</td><td>${p.hosts}</td><td>${p.maxRate}</td><td>${p.best ? p.best.p99.toFixed(1) : ''}</td><td>${p.best ? Object.entries(p.best.cpuUsPerRequest).map(([k, v]) => `${k} ${Math.round(v)}`).join(', ') : ''}</td></tr>`));
  return `<!doctype html><html><head><meta charset="utf-8"><title>${esc(title)}</title>
<style>body{font:14px system-ui,sans-serif;margin:24px;color:#222}table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}td:first-child{text-align:left}</style></head>
<body><h1>${esc(title)}</h1><p>${esc(note)}</p>
<svg width="${W}" height="${H}" xmlns="http://www.w3.org/2000/svg"><line x1="${L}" y1="${H - B}" x2="${W - R}" y2="${H - B}" stroke="#333"/><line x1="${L}" y1="${T}" x2="${L}" y2="${H - B}" stroke="#333"/>${parts.join('')}</svg>
<table><tr><th>series</th><th>hosts</th><th>max req/s</th><th>p99 ms there</th><th>CPU µs/request</th></tr>${rows.join('')}</table></body></html>`;
}

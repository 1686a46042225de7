// Renders a load run as a self-contained HTML page (tables + an inline SVG chart of
// throughput and latency over time) and as a terminal table.
import type { RunResult, StageResult } from './runner';
import { formatNumber as fmt } from '../../src/lib/cli';

const esc = (s: string) => s.replace(/[&<>"]/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;' })[c]!);

/** Latency by operation and by cache path, one line each. */
export function breakdownLines(s: StageResult): string[] {
  const line = (title: string, groups: StageResult['byOp']) =>
    `${title}: ${Object.entries(groups).map(([k, g]) => `${k} ${fmt(g.count)} (p50 ${fmt(g.p50, 1)}, p99 ${fmt(g.p99, 1)}, max ${fmt(g.max, 1)} ms)`).join('; ')}`;
  return [line('  by operation', s.byOp), line('  reads by cache path (nginx/host)', s.byCache)];
}

export function stageLine(s: StageResult): string {
  const offered = s.offeredRate > 0 ? `${fmt(s.offeredRate)} req/s offered` : 'max rate';
  return `${offered}: ${fmt(s.rps)} rps served, ${fmt(s.requests)} requests, errors ${fmt(s.errors)} (${fmt(s.errorRate * 100, 3)} %), ` +
    `latency p50 ${fmt(s.latencyMs.p50, 1)} ms, p90 ${fmt(s.latencyMs.p90, 1)} ms, p99 ${fmt(s.latencyMs.p99, 1)} ms, max ${fmt(s.latencyMs.max, 1)} ms` +
    `${s.cacheHits ? `, cache hits ${fmt((100 * s.cacheHits) / Math.max(1, s.requests - s.errors), 1)} %` : ''}` +
    `${s.writes.count ? `; writes p99 ${fmt(s.writes.p99, 1)} ms` : ''}` +
    `${s.offeredRate > 0 ? `; late sends ${fmt(s.lateSends)} (latest ${fmt(s.maxSendLagMs, 1)} ms after its time)` : ''} — ${s.passed ? 'PASS' : 'FAIL'}`;
}

function chart(r: RunResult): string {
  const W = 900, H = 260, pad = 40;
  const pts = r.timeline;
  if (pts.length === 0) return '<p>No responses recorded.</p>';
  const maxT = Math.max(...pts.map((p) => p.second), 1);
  const maxRps = Math.max(...pts.map((p) => p.requests), 1);
  const maxLat = Math.max(...pts.map((p) => p.p99), 1);
  const x = (t: number) => pad + ((W - 2 * pad) * t) / maxT;
  const line = (val: (p: (typeof pts)[0]) => number, max: number) =>
    pts.map((p) => `${x(p.second).toFixed(1)},${(H - pad - ((H - 2 * pad) * val(p)) / max).toFixed(1)}`).join(' ');
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" role="img">
  <rect width="${W}" height="${H}" fill="#fff"/>
  <line x1="${pad}" y1="${H - pad}" x2="${W - pad}" y2="${H - pad}" stroke="#888"/>
  <line x1="${pad}" y1="${pad}" x2="${pad}" y2="${H - pad}" stroke="#888"/>
  <text x="${pad}" y="${pad - 10}" font-size="12" fill="#1f77b4">requests/s (max ${fmt(maxRps)})</text>
  <text x="${W - pad}" y="${pad - 10}" font-size="12" text-anchor="end"><tspan fill="#d62728">p99</tspan> / <tspan fill="#2ca02c">p50</tspan> latency (max ${fmt(maxLat, 1)} ms)</text>
  <text x="${W / 2}" y="${H - 8}" font-size="12" text-anchor="middle">seconds since start (${maxT})</text>
  <polyline fill="none" stroke="#1f77b4" stroke-width="1.5" points="${line((p) => p.requests, maxRps)}"/>
  <polyline fill="none" stroke="#d62728" stroke-width="1.5" points="${line((p) => p.p99, maxLat)}"/>
  <polyline fill="none" stroke="#2ca02c" stroke-width="1.5" points="${line((p) => p.p50, maxLat)}"/>
</svg>`;
}

export function htmlReport(r: RunResult, title: string): string {
  const rows = r.stages.map((s) => `<tr><td>${s.offeredRate > 0 ? fmt(s.offeredRate) : 'max'}</td><td>${s.duration}</td><td>${fmt(s.rps)}</td><td>${fmt(s.requests)}</td>
    <td>${fmt(s.errors)} (${fmt(s.errorRate * 100, 3)} %)</td><td>${fmt(s.latencyMs.p50, 1)}</td><td>${fmt(s.latencyMs.p90, 1)}</td><td>${fmt(s.latencyMs.p99, 1)}</td>
    <td>${fmt(s.latencyMs.max, 1)}</td><td>${esc(Object.entries(s.statuses).map(([k, v]) => `${k}: ${fmt(v)}`).join(', '))}</td><td>${s.passed ? 'PASS' : 'FAIL'}</td></tr>`).join('\n');
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>${esc(title)}</title>
<style>body{font:14px system-ui,sans-serif;margin:2em;color:#222}table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}th{background:#f4f4f4}</style>
</head><body>
<h1>${esc(title)}</h1>
<p>Target <code>${esc(r.target)}</code>, products 1…${fmt(r.products)} drawn ${esc(r.distribution)}, started ${esc(r.startedAt)}. Result: <strong>${r.passed ? 'PASS' : 'FAIL'}</strong>.</p>
<table><thead><tr><th>offered req/s</th><th>s</th><th>served rps</th><th>requests</th><th>errors</th><th>p50 ms</th><th>p90 ms</th><th>p99 ms</th><th>max ms</th><th>statuses</th><th></th></tr></thead>
<tbody>${rows}</tbody></table>
<h2>Over time</h2>
${chart(r)}
</body></html>
`;
}

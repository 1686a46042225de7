// npm run loadtest -- --target URL --scenario NAME [options] (see --help)
// Runs a scenario of loadtest/lib/traffic.js with the Node load generator (open loop, like
// k6's constant-arrival-rate; src/loadtest/runner.ts), after measuring the floor (bare
// node:http at the same rate). Prints each stage; writes DIR/<scenario>-<time>.json and
// .html. Exits 1 when the scenario's thresholds are missed.
import fs from 'node:fs';
import path from 'node:path';
import { stopChildrenOnSignals } from '../src/cluster/processes';
import { parseArgs, runCli, UsageError } from '../src/lib/cli';
import { breakdownLines, htmlReport, stageLine } from '../loadtest/node/report';
import { runLoad, type StageResult } from '../loadtest/node/runner';
import { withBareServer } from '../bench/bare-server';
import { fromRoot } from '../src/lib/paths';
// eslint-disable-next-line @typescript-eslint/no-require-imports
const { SCENARIOS, FULL_SCALE_PRODUCTS, ACCEPT_ENCODING } = require('../loadtest/lib/traffic.js') as typeof import('../loadtest/lib/traffic.js');

runCli(async () => {
  const a = parseArgs({
    target: { type: 'string', required: true, arg: 'URL', help: 'base URL on loopback, e.g. http://127.0.0.1:8080' },
    scenario: { type: 'string', default: 'smoke', arg: 'NAME', help: Object.keys(SCENARIOS).join(', ') },
    rate: { type: 'number', arg: 'R', help: "req/s for every stage (default: the scenario's)" },
    duration: { type: 'number', arg: 'S', help: "seconds per stage (default: the scenario's)" },
    distribution: { type: 'string', default: 'zipf', arg: 'D', help: 'product choice: zipf or uniform-last-10pct' },
    products: { type: 'number', default: FULL_SCALE_PRODUCTS, help: 'product ids to draw from' },
    connections: { type: 'number', arg: 'C', help: 'open loop: most sockets at once (default 1024); max rate (rate 0): concurrent loops (default 64)' },
    seed: { type: 'number', default: 1, help: 'random seed of the traffic' },
    'accept-encoding': { type: 'string', default: ACCEPT_ENCODING, arg: 'VALUE', help: "Accept-Encoding on every request, as browsers send it ('' sends none)" },
    out: { type: 'string', default: 'loadtest/results', arg: 'DIR', help: 'where the JSON and HTML reports go' },
    'floor-seconds': { type: 'number', default: 10, arg: 'S', help: 'first measure the floor: bare node:http at the same rate for S seconds (0 skips)' },
  }, {
    usage: 'npm run loadtest -- --target URL [options]',
    about: 'Runs a scenario of loadtest/lib/traffic.js with the Node load generator (for machines without k6);\nexits 1 when the thresholds are missed.',
    notes: ['LOADTEST_ALLOW_REMOTE=1 allows a non-loopback target you own.'],
  });
  const scenario = SCENARIOS[a.scenario as keyof typeof SCENARIOS];
  if (!scenario) throw new UsageError(`unknown scenario "${a.scenario}" (${Object.keys(SCENARIOS).join(', ')})`);
  if (!/^https?:\/\/(127\.\d+\.\d+\.\d+|localhost|\[::1\])(:\d+)?\/?$/.test(a.target) && !process.env.LOADTEST_ALLOW_REMOTE) {
    throw new UsageError('--target must be a loopback URL (set LOADTEST_ALLOW_REMOTE=1 to load another host you own)');
  }
  const stages = scenario.stages.map((s) => ({ rate: a.rate ?? s.rate, duration: a.duration ?? s.duration }));
  console.log(`[loadtest] ${a.scenario} against ${a.target}: ${stages.map((s) => `${s.rate} req/s × ${s.duration} s`).join(', ')}`);
  // The floor of this run: the same generator, the same rate, against a bare node:http that
  // answers a constant. The service's p99 means something only beside it (this box's noise).
  let floor: StageResult | undefined;
  if (a['floor-seconds'] > 0) {
    const rate = stages.find((s) => s.rate > 0)?.rate ?? 1000;
    stopChildrenOnSignals();
    floor = await withBareServer(async ({ url }) => (await runLoad({ target: url, stages: [{ rate, duration: a['floor-seconds'] }], products: a.products, mix: [{ op: 'list', weight: 1 }], seed: a.seed })).stages[0]);
    console.log(`[loadtest] floor, bare node:http at ${rate} req/s: p50 ${floor.latencyMs.p50.toFixed(1)} ms, p99 ${floor.latencyMs.p99.toFixed(1)} ms, max ${floor.latencyMs.max.toFixed(1)} ms`);
  }
  const result = await runLoad({
    target: a.target.replace(/\/$/, ''), stages, thresholds: scenario.thresholds, stopOnFailure: 'stopOnFailure' in scenario,
    distribution: a.distribution, products: a.products, connections: a.connections, seed: a.seed, acceptEncoding: a['accept-encoding'] || undefined,
    onStage: (s) => console.log([`[loadtest] ${stageLine(s)}`, ...breakdownLines(s)].join('\n')),
  });
  const out = path.resolve(fromRoot(), a.out);
  fs.mkdirSync(out, { recursive: true });
  const base = path.join(out, `${a.scenario}-${result.startedAt.replace(/[:.]/g, '-')}`);
  fs.writeFileSync(`${base}.json`, JSON.stringify({ scenario: a.scenario, thresholds: scenario.thresholds, floor, ...result }, null, 2));
  fs.writeFileSync(`${base}.html`, htmlReport(result, `Atelier reviews load test: ${a.scenario}`));
  const t = scenario.thresholds as { errorRate: number; p99Ms: number; maxMs?: number; readP99Ms?: number };
  const limits = [`errors ≤ ${t.errorRate * 100} %`, `p99 ≤ ${t.p99Ms} ms`, ...(t.maxMs ? [`max ≤ ${t.maxMs} ms`] : []), ...(t.readP99Ms ? [`reads p99 ≤ ${t.readP99Ms} ms`] : [])];
  if (floor) console.log(`[loadtest] p99 ${result.stages.map((s) => s.latencyMs.p99.toFixed(1)).join(' / ')} ms beside the floor's ${floor.latencyMs.p99.toFixed(1)} ms (same run)`);
  console.log(`[loadtest] ${result.passed ? 'PASS' : 'FAIL'} (thresholds: ${limits.join(', ')}); wrote ${base}.json and .html`);
  process.exitCode = result.passed ? 0 : 1;
});

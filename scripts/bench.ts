// npm run bench -- [--scale S] [--duration SECONDS]
// One run on one generated dataset: the HTTP ceiling of this box (bare node:http), one
// API host uncached (max rate for /reviews and /meta, then the old system's 1000 req/s),
// and the nginx cluster with its cache under the Zipf mix. Prints a table and writes
// bench/results/api-scale-S.json.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { parseArgs, runCli, formatNumber as fmt } from '../src/cli';
import { freePort, startCluster, startHost } from '../src/cluster/cluster';
import { loadConfig } from '../src/config';
import { resolveDatabase } from '../src/database';
import { withClient } from '../src/db';
import { benchmarkExport, FULL_SCALE_PRODUCTS } from '../src/etl/generate';
import { load } from '../src/etl/load';
import { runLoad, type StageResult } from '../src/loadtest/runner';
import { migrate } from '../src/migrate';
import { fromRoot } from '../src/paths';


interface Row {
  name: string;
  stage: StageResult;
  ratio?: number;
}

runCli(async () => {
  const a = parseArgs({ scale: { type: 'number', default: 0.1 }, duration: { type: 'number', default: 10 }, seed: { type: 'number', default: 1 } });
  const products = Math.max(1, Math.round(FULL_SCALE_PRODUCTS * a.scale));
  const log = (l: string) => console.log(`[bench] ${l}`);
  const config = loadConfig();

  // The dataset: generated once per scale, imported into its own database.
  const dir = await benchmarkExport(a.scale, a.seed, log);
  const database = await resolveDatabase(config, log);
  let url = database.url;
  if (database.embedded) {
    const name = `bench_scale_${String(a.scale).replace('.', '_')}`;
    await database.embedded.ensureDatabase(name);
    url = database.embedded.url(name);
    await migrate(url);
  }
  const marker = path.join(dir, `loaded-${Buffer.from(url).toString('base64url').slice(-24)}`);
  const countReviews = () => withClient(url, async (c) => Number((await c.query('SELECT count(*) AS n FROM atelier.reviews')).rows[0].n));
  if (!fs.existsSync(marker) || (await countReviews()) === 0) {
    log('importing the dataset');
    await load({ dir, databaseUrl: url, rejectsFile: path.join(dir, 'rejects.csv') });
    fs.writeFileSync(marker, new Date().toISOString());
  }
  const reviews = await countReviews();
  log(`dataset: ${fmt(reviews)} reviews`);

  const rows: Row[] = [];
  const d = a.duration;
  const only = (op: string) => [{ op, weight: 1 }];

  // 1. The box's HTTP ceiling.
  const basePort = await freePort();
  const baseline = spawn(process.execPath, [fromRoot('dist', 'src', 'bench', 'baseline-server.js'), String(basePort)], { stdio: ['ignore', 'pipe', 'inherit'] });
  await new Promise((r) => baseline.stdout!.once('data', r));
  try {
    log('baseline: bare node:http, fixed 1 KB JSON');
    const r = await runLoad({ target: `http://127.0.0.1:${basePort}`, stages: [{ rate: 0, duration: d }], products, connections: 32, mix: only('list') });
    rows.push({ name: 'baseline: bare node:http, 1 KB JSON', stage: r.stages[0] });
  } finally {
    baseline.kill('SIGTERM');
  }
  const ceiling = rows[0].stage.rps;

  // 2. One host, uncached, uniform over the last 10 % of product ids.
  const host = await startHost({ port: await freePort(), databaseUrl: url, env: { LOG_FORMAT: 'off' } });
  try {
    const target = `http://${host.address}`;
    for (const [op, label] of [['list', 'GET /reviews'], ['meta', 'GET /reviews/meta']] as const) {
      log(`one host, uncached, max rate: ${label}`);
      const r = await runLoad({ target, stages: [{ rate: 0, duration: d }], products, connections: 32, distribution: 'uniform-last-10pct', mix: only(op) });
      rows.push({ name: `one host, uncached, max rate: ${label}`, stage: r.stages[0], ratio: r.stages[0].rps / ceiling });
    }
    log('one host, uncached, 1000 req/s, full mix');
    const r = await runLoad({ target, stages: [{ rate: 1000, duration: d * 3 }], products, connections: 16, distribution: 'uniform-last-10pct' });
    rows.push({ name: 'one host, uncached, fixed 1000 req/s, full mix', stage: r.stages[0] });
  } finally {
    await host.stop();
  }

  // 3. The cluster: nginx + cache in front of two hosts, Zipf mix.
  const cluster = await startCluster({
    databaseUrl: url, port: await freePort(), hostPorts: [await freePort(), await freePort()],
    prefix: fromRoot('.data', 'bench', 'nginx'), hostEnv: { LOG_FORMAT: 'off' },
    // All load comes from one address here; the production limit (10 writes/s per client)
    // would turn the mix's writes into 429s.
    writeRate: '100000r/s',
  });
  try {
    log('cluster through nginx with cache, Zipf mix, max rate');
    const r = await runLoad({ target: cluster.url, stages: [{ rate: 0, duration: d }], products, connections: 64, distribution: 'zipf' });
    rows.push({ name: 'nginx + 2 hosts, cached, Zipf mix, max rate', stage: r.stages[0], ratio: r.stages[0].rps / ceiling });
  } finally {
    await cluster.stop();
    await database.stop();
  }

  const lines = [
    `Scale ${a.scale} (${fmt(products)} products, ${fmt(reviews || 0)} reviews), ${d} s per max-rate row, everything on this 2-core box (load generator included).`,
    '',
    '| run | rps | p50 ms | p99 ms | max ms | errors | vs baseline | cache hits |',
    '|---|---:|---:|---:|---:|---:|---:|---:|',
    ...rows.map(({ name, stage: s, ratio }) =>
      `| ${name} | ${fmt(s.rps)} | ${fmt(s.latencyMs.p50, 1)} | ${fmt(s.latencyMs.p99, 1)} | ${fmt(s.latencyMs.max, 1)} | ${fmt(s.errors)} | ${ratio ? fmt(ratio, 2) : ''} | ${s.cacheHits ? `${fmt((100 * s.cacheHits) / Math.max(1, s.requests - s.errors), 1)} %` : ''} |`),
  ];
  console.log('\n' + lines.join('\n'));
  const out = fromRoot('bench', 'results', `api-scale-${a.scale}.json`);
  fs.mkdirSync(path.dirname(out), { recursive: true });
  fs.writeFileSync(out, JSON.stringify({ date: new Date().toISOString(), scale: a.scale, products, durationSeconds: d, rows }, null, 2) + '\n');
  log(`written to ${path.relative(process.cwd(), out)}`);
});

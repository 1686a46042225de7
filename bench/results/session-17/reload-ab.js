// Ad hoc: the meta table reloading under the mix, old build (A) against new (B), each on a fresh
// full-scale cluster as deployed but for META_MEMORY_MAX_AGE_S=300 (a reload every 180-240 s per
// host, at random), from the dataset as imported. Usage: SIDE=A DIST=/tmp/old/dist node reload-ab.js
const MAIN = '/work/main/dist';
const D = process.env.DIST || MAIN;
const { prepareBenchDatabase } = require(MAIN + '/bench/dataset.js');
const { startCluster, freePort } = require(D + '/src/cluster/cluster.js');
const { asDeployed, processGroups } = require(D + '/bench/api-bench.js');
const { withCpu } = require(D + '/bench/cpu.js');
const { runLoad } = require(D + '/loadtest/node/runner.js');
const { fromRoot } = require(D + '/src/lib/paths.js');
const { ACCEPT_ENCODING } = require('/work/main/loadtest/lib/traffic.js');
const side = process.env.SIDE || 'B';
const log = (l) => console.log(`[reload ${side}] ${new Date().toISOString()} ${l}`);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
(async () => {
  log(`build ${D}`);
  const { url, products, stop } = await prepareBenchDatabase(1, 1, log);
  const cluster = await startCluster({ databaseUrl: url, port: await freePort(), hostPorts: [await freePort(), await freePort()], prefix: fromRoot('.data', 'bench', 'nginx'),
    ...asDeployed('nginx', { META_MEMORY_MAX_AGE_S: '300' }), writeRate: '1000000r/s', readRate: '1000000r/s' });
  const pids = cluster.hosts.map((h) => h.process.pid);
  const metrics = async () => {
    const sum = {};
    for (const h of cluster.hosts) {
      const t = await (await fetch(`http://${h.address}/metrics`)).text();
      for (const m of t.matchAll(/^atelier_(review|meta)_memory_events_total\{event="(\w+)"\} ([\d.e+-]+)$/gm)) sum[`${m[1]}.${m[2]}`] = (sum[`${m[1]}.${m[2]}`] ?? 0) + Number(m[3]);
    }
    return sum;
  };
  for (;;) { const t = await Promise.all(cluster.hosts.map((h) => fetch(`http://${h.address}/metrics`).then((r) => r.text()))); if (t.every((x) => !/memory_size\{measure="max_product"\} 0$/m.test(x))) break; await sleep(500); }
  log('tables loaded');
  await runLoad({ acceptEncoding: ACCEPT_ENCODING, target: cluster.url, stages: [{ rate: 500, duration: 10 }], products, distribution: 'zipf', seed: 6999 });
  const rate = Number(process.env.RATE || 3500);
  const rows = [];
  for (let i = 0; i < Number(process.env.ROUNDS || 20); i++) {
    const before = await metrics();
    const { result, cpuMs } = await withCpu(processGroups(pids, true), (restart) => runLoad({ acceptEncoding: ACCEPT_ENCODING, target: cluster.url, stages: [{ rate, duration: 30, leadIn: 2 }], products, distribution: 'zipf', seed: 9000 + i, onMeasureStart: restart }));
    const after = await metrics();
    const o = result.stages[0];
    const per = Object.fromEntries(Object.entries(cpuMs).map(([k, v]) => [k, Math.round((v * 1000) / o.requests)]));
    const metaLoads = (after['meta.loads'] ?? 0) - (before['meta.loads'] ?? 0);
    const row = { round: i + 1, p99: +o.latencyMs.p99.toFixed(1), max: Math.round(o.latencyMs.max), errors: o.errors, metaLoads, cpu: per };
    rows.push(row);
    log(JSON.stringify(row));
  }
  const med = (a) => { const s = [...a].sort((x, y) => x - y); return s.length ? s[Math.floor((s.length - 1) / 2)] : NaN; };
  for (const [name, sel] of [['rounds in which a meta load ended', (r) => r.metaLoads > 0], ['the other rounds', (r) => r.metaLoads === 0]]) {
    const r = rows.filter(sel);
    log(`${name}: ${r.length}; errors ${r.reduce((s, x) => s + x.errors, 0)}; median p99 ${med(r.map((x) => x.p99))} ms; max ${Math.max(...r.map((x) => x.max))} ms; median PostgreSQL µs/request ${med(r.map((x) => x.cpu.postgres))}`);
  }
  log(`all rounds: errors ${rows.reduce((s, x) => s + x.errors, 0)}; rounds with errors ${rows.filter((x) => x.errors).length}; median p99 ${med(rows.map((x) => x.p99))} ms`);
  await cluster.stop();
  await stop();
  process.exit(0);
})().catch((e) => { console.error(e); process.exit(1); });

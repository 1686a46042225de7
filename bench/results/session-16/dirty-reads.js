// Ad hoc: where the review table's dirty reads come from at one rate (fresh full-scale cluster as deployed).
const D = '/work/main/dist';
const { prepareBenchDatabase } = require(D + '/bench/dataset.js');
const { startCluster, freePort } = require(D + '/src/cluster/cluster.js');
const { asDeployed, processGroups } = require(D + '/bench/api-bench.js');
const { withCpu } = require(D + '/bench/cpu.js');
const { runLoad } = require(D + '/loadtest/node/runner.js');
const { fromRoot } = require(D + '/src/lib/paths.js');
const { ACCEPT_ENCODING } = require('/work/main/loadtest/lib/traffic.js');
const { Client } = require('/work/main/node_modules/pg');
const log = (l) => console.log(`[dirty ${process.env.HOSTENV || 'default'}] ${new Date().toISOString()} ${l}`);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
(async () => {
  const { url, products, stop } = await prepareBenchDatabase(1, 1, log);
  const cluster = await startCluster({ databaseUrl: url, port: await freePort(), hostPorts: [await freePort(), await freePort()], prefix: fromRoot('.data', 'bench', 'nginx'),
    ...asDeployed('nginx', Object.fromEntries((process.env.HOSTENV || '').split(',').filter(Boolean).map((kv) => kv.split('=')))), writeRate: '1000000r/s', readRate: '1000000r/s' });
  const pids = cluster.hosts.map((h) => h.process.pid);
  const events = async () => {
    const sum = {};
    for (const h of cluster.hosts) {
      const t = await (await fetch(`http://${h.address}/metrics`)).text();
      for (const m of t.matchAll(/^atelier_(review|meta)_memory_events_total\{event="(\w+)"\} ([\d.e+-]+)$/gm)) sum[`${m[1]}.${m[2]}`] = (sum[`${m[1]}.${m[2]}`] ?? 0) + Number(m[3]);
      for (const m of t.matchAll(/^atelier_response_cache_events_total\{event="(\w+)"\} ([\d.e+-]+)$/gm)) sum[`cache.${m[1]}`] = (sum[`cache.${m[1]}`] ?? 0) + Number(m[2]);
    }
    return sum;
  };
  for (;;) { const t = await Promise.all(cluster.hosts.map((h) => fetch(`http://${h.address}/metrics`).then((r) => r.text()))); if (t.every((x) => !/memory_size\{measure="max_product"\} 0$/m.test(x))) break; await sleep(500); }
  log('tables loaded');
  const pg = new Client({ connectionString: url }); await pg.connect();
  await runLoad({ acceptEncoding: ACCEPT_ENCODING, target: cluster.url, stages: [{ rate: 500, duration: 10 }], products, distribution: 'zipf', seed: 6999 });
  const rate = Number(process.env.RATE || 4500);
  for (let i = 0; i < Number(process.env.ROUNDS || 3); i++) {
    const before = await events();
    const { result, cpuMs } = await withCpu(processGroups(pids, true), (restart) => runLoad({ acceptEncoding: ACCEPT_ENCODING, target: cluster.url, stages: [{ rate, duration: 60, leadIn: 5 }], products, distribution: 'zipf', seed: 9000 + i, onMeasureStart: restart }));
    const after = await events();
    const o = result.stages[0];
    const per = Object.fromEntries(Object.entries(cpuMs).map(([k, v]) => [k, Math.round((v * 1000) / o.requests)]));
    log(`round ${i}: ${o.requests} requests, p99 ${o.latencyMs.p99.toFixed(1)} errors ${o.errors} cpu µs/req ${JSON.stringify(per)}`);
    log(`  events (both hosts, this round incl. lead-in): ${JSON.stringify(Object.fromEntries(Object.keys(after).map((k) => [k, after[k] - (before[k] ?? 0)]).filter(([, v]) => v)))}`);
  }
  const top = (await pg.query('SELECT product_id, count(*)::int AS n FROM atelier.reviews WHERE product_id <= 2000 AND NOT reported GROUP BY 1 ORDER BY 1')).rows;
  const by = (lo, hi) => top.filter((r) => r.product_id >= lo && r.product_id <= hi);
  for (const [lo, hi] of [[1, 1], [2, 10], [11, 100], [101, 1000], [1001, 2000]]) { const r = by(lo, hi); log(`products ${lo}-${hi}: reviews min ${Math.min(...r.map((x) => x.n))} max ${Math.max(...r.map((x) => x.n))}, over 64: ${r.filter((x) => x.n > 64).length} of ${r.length}`); }
  await pg.end();
  await cluster.stop();
  await stop();
  process.exit(0);
})().catch((e) => { console.error(e); process.exit(1); });

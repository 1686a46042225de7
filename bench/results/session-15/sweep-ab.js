// Ad hoc: does the cost per request grow round after round at one rate? CPU per group, hosts' dirty products and read-backs, PostgreSQL's dead rows.
const D = '/work/main/dist';
const { prepareBenchDatabase } = require(D + '/bench/dataset.js');
const { startCluster, freePort } = require(D + '/src/cluster/cluster.js');
const { asDeployed, processGroups } = require(D + '/bench/api-bench.js');
const { withCpu } = require(D + '/bench/cpu.js');
const { runLoad } = require(D + '/loadtest/node/runner.js');
const { fromRoot } = require(D + '/src/lib/paths.js');
const { ACCEPT_ENCODING } = require('/work/main/loadtest/lib/traffic.js');
const { Client } = require('/work/main/node_modules/pg');
const log = (l) => console.log(`[drift ${process.env.HOSTENV || 'default'}] ${new Date().toISOString()} ${l}`);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
(async () => {
  const { url, products, stop } = await prepareBenchDatabase(1, 1, log);
  const cluster = await startCluster({ databaseUrl: url, port: await freePort(), hostPorts: [await freePort(), await freePort()], prefix: fromRoot('.data', 'bench', 'nginx'),
    ...asDeployed('nginx', Object.fromEntries((process.env.HOSTENV || '').split(',').filter(Boolean).map((kv) => kv.split('=')))), writeRate: '1000000r/s', readRate: '1000000r/s' });
  const pids = cluster.hosts.map((h) => h.process.pid);
  const metrics = async () => (await Promise.all(cluster.hosts.map((h) => fetch(`http://${h.address}/metrics`).then((r) => r.text())))).map((t) => t.split('\n').filter((l) => /^atelier_(review|meta)_memory_(size|events_total)|^atelier_db_reads_total|^atelier_response_cache_events_total/.test(l)).map((l) => l.replace(/^atelier_/, '')).join('; '));
  for (;;) { const t = await Promise.all(cluster.hosts.map((h) => fetch(`http://${h.address}/metrics`).then((r) => r.text()))); if (t.every((x) => !/memory_size\{measure="max_product"\} 0$/m.test(x))) break; await sleep(500); }
  log('tables loaded');
  const pg = new Client({ connectionString: url }); await pg.connect();
  const dead = async () => (await pg.query("SELECT relname, n_live_tup, n_dead_tup, n_tup_upd, n_tup_hot_upd, n_tup_ins FROM pg_stat_user_tables WHERE relname IN ('reviews','characteristic_reviews','characteristics','review_requests') ORDER BY relname")).rows.map((r) => `${r.relname} live ${r.n_live_tup} dead ${r.n_dead_tup} upd ${r.n_tup_upd} hot ${r.n_tup_hot_upd} ins ${r.n_tup_ins}`).join('; ');
  await runLoad({ acceptEncoding: ACCEPT_ENCODING, target: cluster.url, stages: [{ rate: 500, duration: 10 }], products, distribution: 'zipf', seed: 6999 });
  const rate = Number(process.env.RATE || 3000);
  for (let i = 0; i < Number(process.env.ROUNDS || 10); i++) {
    const { result, cpuMs } = await withCpu(processGroups(pids, true), (restart) => runLoad({ acceptEncoding: ACCEPT_ENCODING, target: cluster.url, stages: [{ rate, duration: 60, leadIn: 5 }], products, distribution: 'zipf', seed: 9000 + i, onMeasureStart: restart }));
    const o = result.stages[0];
    const per = Object.fromEntries(Object.entries(cpuMs).map(([k, v]) => [k, Math.round((v * 1000) / o.requests)]));
    log(`round ${i}: p99 ${o.latencyMs.p99.toFixed(1)} errors ${o.errors} cpu µs/req ${JSON.stringify(per)}`);
    log(`  hosts: ${(await metrics()).join(' || ')}`);
    log(`  pg: ${await dead()}`);
  }
  await pg.end();
  await cluster.stop();
  await stop();
  process.exit(0);
})().catch((e) => { console.error(e); process.exit(1); });

// Ad hoc (21st session): does the deployed cluster get dearer per request as it serves?
// One cluster as deployed, from the dataset as imported; windows of the mix at 2,000 req/s (30 s
// measured after a 5 s lead-in), each after the bare node:http floor at the same rate (the
// benchmark's floor: GET /reviews only, 10 s after a 5 s lead-in); between windows, OVERLOADS
// rounds of the knee run's failing steps (8,000, 6,000, 5,000, 4,500, 4,250 req/s, 35 s each),
// and a quiet minute before the last. Per window, counted from the end of the lead-in: CPU per
// request by process group (/proc), the hosts' GC seconds, heap used, the tables' counters.
// drift.txt is the first version's output (one 8,000 req/s overload, the floor on the whole mix
// for 15 s, and the lead-ins' CPU counted over the measured requests: its figures are ~7/6 too
// high, the floor's ~4/3; windows compare among themselves); drift-2.txt is this version's, before it
// printed the levels line; drift-3.txt is this version's.
// Run from the repository root after `npm run build`: node --initial-old-space-size=256 bench/results/session-21/drift.js [OVERLOADS]
// Changed after the runs: the tables' wait is the benchmark's own tablesLoaded (bench/api-benchmark.ts), CPU is
// read with bench/cpu.ts's cpuMs and pidsNamed (the same /proc fields), and an error stops the cluster; what they
// measure is as run.
const path = require('node:path');
const { asDeployed, only } = require('../../../dist/bench/api-bench.js');
const { startCluster, freePort } = require('../../../dist/src/cluster/cluster.js');
const { prepareBenchDatabase } = require('../../../dist/bench/dataset.js');
const { tablesLoaded } = require('../../../dist/bench/api-benchmark.js');
const { withBareServer } = require('../../../dist/bench/bare-server.js');
const { stopChildrenOnSignals } = require('../../../dist/src/cluster/processes.js');
const { runLoad } = require('../../../dist/loadtest/node/runner.js');
const traffic = require('../../../dist/loadtest/lib/traffic.js');
const { cpuMs, pidsNamed } = require('../../../dist/bench/cpu.js');
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
/** CPU ms so far by group: the hosts and the floor server by pid, PostgreSQL and nginx by name, the generator (this process). */
function cpuByGroup(pids) {
  const sum = (list) => list.reduce((n, pid) => n + cpuMs(pid), 0);
  const out = { hosts: sum(pids.hosts), postgres: sum(pidsNamed('postgres')), nginx: sum(pidsNamed('nginx')), generator: cpuMs(process.pid) };
  if (pids.floor !== undefined) out.floor = cpuMs(pids.floor);
  return out;
}
async function hostCounters(cluster) {
  const sum = {};
  for (const h of cluster.hosts) {
    const t = await (await fetch(`http://${h.address}/metrics`)).text();
    for (const line of t.split('\n')) {
      let m = /^nodejs_gc_duration_seconds_sum\{kind="(\w+)"\} ([\d.e+-]+)$/.exec(line);
      if (m) sum[`gc_${m[1]}_s`] = (sum[`gc_${m[1]}_s`] ?? 0) + Number(m[2]);
      m = /^nodejs_heap_size_used_bytes ([\d.e+-]+)$/.exec(line);
      if (m) sum.heap_used_mb = (sum.heap_used_mb ?? 0) + Number(m[1]) / 1e6;
      m = /^nodejs_heap_space_size_used_bytes\{space="old"\} ([\d.e+-]+)$/.exec(line);
      if (m) sum.old_space_size_mb = (sum.old_space_size_mb ?? 0) + Number(m[1]) / 1e6;
      m = /^atelier_response_cache_size\{measure="(entries|bytes)"\} ([\d.e+-]+)$/.exec(line);
      if (m) sum[`response_cache_size_${m[1]}`] = (sum[`response_cache_size_${m[1]}`] ?? 0) + Number(m[2]);
      m = /^atelier_(review|meta)_memory_(\w+)\{?([^}]*)\}? ([\d.e+-]+)$/.exec(line);
      if (m && /dirty|refresh|served|fresh|product|bytes/.test(m[2] + m[3])) { const k = `${m[1]}_${m[2]}${m[3] ? `{${m[3]}}` : ''}`; sum[k] = (sum[k] ?? 0) + Number(m[4]); }
    }
  }
  return sum;
}
(async () => {
  stopChildrenOnSignals();
  const { url, products, stop } = await prepareBenchDatabase(1, 1, console.log, { keep: false });
  const cluster = await startCluster({
    databaseUrl: url, port: await freePort(), hostPorts: [await freePort(), await freePort()], prefix: path.resolve(__dirname, '../../../.data/bench/drift'),
    ...asDeployed('drift'), writeRate: '1000000r/s', readRate: '1000000r/s',
  });
  const t0 = performance.now();
  if (!(await tablesLoaded(cluster.hosts, 900_000))) throw new Error('tables not loaded in 15 minutes');
  console.log(`tables loaded after ${((performance.now() - t0) / 1000).toFixed(0)} s`);
  const pids = { hosts: cluster.hosts.map((h) => h.process.pid) };
  let seed = 21;
  const load = (target, rate, s, onMeasureStart, mix) => runLoad({ target, acceptEncoding: traffic.ACCEPT_ENCODING, stages: [{ rate, duration: s, leadIn: 5 }], products, distribution: 'zipf', seed: seed++, onMeasureStart, mix });
  const OVERLOADS = Number(process.argv[2] ?? 2);
  const window = async (label, rate) => {
    const floor = await withBareServer(async (srv) => {
      let a; const r = await load(srv.url, rate, 10, () => { a = cpuByGroup({ hosts: [], floor: srv.pid }); }, only('list')); const b = cpuByGroup({ hosts: [], floor: srv.pid });
      return { server: (b.floor - a.floor) * 1000 / r.stages[0].requests, p99: r.stages[0].latencyMs.p99 };
    });
    // Counters from the end of the lead-in: read now, and their CPU taken at that moment (a fetch
    // would not fit in the synchronous callback, so the counters' lead-in part is subtracted by rate).
    let a;
    const cStart = await hostCounters(cluster);
    const r = await load(cluster.url, rate, 30, () => { a = cpuByGroup(pids); });
    const b = cpuByGroup(pids); const c1 = await hostCounters(cluster);
    const c0 = Object.fromEntries(Object.keys(c1).map((k) => [k, (cStart[k] ?? 0) + ((c1[k] - (cStart[k] ?? 0)) * 5) / 35]));
    const n = r.stages[0].requests;
    const cpu = Object.fromEntries(Object.keys(b).filter((k) => k !== 'floor').map((k) => [k, Math.round((b[k] - (a[k] ?? 0)) * 1000 / n)]));
    const box = Object.values(cpu).reduce((x, y) => x + y, 0);
    const delta = Object.fromEntries(Object.keys(c1).filter((k) => !/heap|size/.test(k)).map((k) => [k, +(c1[k] - (c0[k] ?? 0)).toFixed(3)]).filter(([, v]) => v));
    console.log(`${label} @${rate}: ${n} req, p99 ${r.stages[0].latencyMs.p99.toFixed(1)} ms, errors ${r.stages[0].errors}; box ${box} µs/req ${JSON.stringify(cpu)}; floor server ${floor.server.toFixed(0)} µs, p99 ${floor.p99.toFixed(1)}; heap ${c1.heap_used_mb.toFixed(0)} MB; ${JSON.stringify(delta)}`);
    // Levels at the window's end, both hosts together: the tables' dirty products and bytes, the response cache, V8's old space.
    console.log(`  levels: ${JSON.stringify(Object.fromEntries(Object.entries(c1).filter(([k]) => /size/.test(k)).map(([k, v]) => [k, Math.round(v)])))}`);
  };
  await load(cluster.url, 2000, 10);
  await window('A fresh', 2000);
  for (let o = 1; o <= OVERLOADS; o++) {
    for (const rate of [8000, 6000, 5000, 4500, 4250]) {
      const r = await load(cluster.url, rate, 30);
      console.log(`  overload ${o}: ${rate} req/s, p99 ${r.stages[0].latencyMs.p99.toFixed(0)} ms, errors ${r.stages[0].errors}`);
    }
    await window(`after overload round ${o}`, 2000);
  }
  await sleep(60_000); console.log('a quiet minute');
  await window('after a quiet minute', 2000);
  await cluster.stop();
  await stop();
  process.exit(0);
// On an error, SIGTERM to itself: stopChildrenOnSignals stops the hosts and nginx, then exits (changed
// after the runs; the error path only).
})().catch((e) => { console.error(e); process.kill(process.pid, 'SIGTERM'); });

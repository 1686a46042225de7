// Ad hoc (21st session): one cluster as deployed, host 1 with the deployed V8 flags, host 2 with
// FLAG added (or the reverse with SWAP=1); the mix at RATE req/s; per window each host's CPU
// (all threads, /proc), its GC pauses by kind (/metrics), its requests (/metrics).
// Run from the repository root after `npm run build`: node --initial-old-space-size=256 bench/results/session-21/gc-ab.js [RATE] [FLAG] [WINDOWS]
// (gc-ab-single-threaded-gc.txt: RATE 4000, FLAG --single-threaded-gc, 4 windows).
// Changed after the runs: the tables' wait is the benchmark's own tablesLoaded (bench/api-benchmark.ts), CPU is
// read with bench/cpu.ts's cpuMs and pidsNamed (the same /proc fields), and an error stops the cluster; what they
// measure is as run.
const fs = require('node:fs');
const { asDeployed } = require('../../../dist/bench/api-bench.js');
const { clusterHostEnv } = require('../../../dist/src/cluster/cluster.js');
const { startHost } = require('../../../dist/src/cluster/host.js');
const { startNginx } = require('../../../dist/src/cluster/nginx-process.js');
const { freePort, stopChildrenOnSignals } = require('../../../dist/src/cluster/processes.js');
const { prepareBenchDatabase } = require('../../../dist/bench/dataset.js');
const { tablesLoaded } = require('../../../dist/bench/api-benchmark.js');
const { runLoad } = require('../../../dist/loadtest/node/runner.js');
const traffic = require('../../../dist/loadtest/lib/traffic.js');
const RATE = Number(process.argv[2] ?? 4000);
const FLAG = process.argv[3] ?? '--single-threaded-gc';
const WINDOWS = Number(process.argv[4] ?? 4);
const SWAP = process.env.SWAP === '1';
const { cpuMs } = require('../../../dist/bench/cpu.js');
async function stats(h) {
  const t = await (await fetch(`http://${h.address}/metrics`)).text();
  const gc = {}; let reqs = 0;
  for (const line of t.split('\n')) {
    let m = /^nodejs_gc_duration_seconds_(sum|count)\{kind="(\w+)"\} ([\d.e+-]+)$/.exec(line);
    if (m) { gc[m[2]] ??= { sum: 0, count: 0 }; gc[m[2]][m[1]] = Number(m[3]); }
    m = /^http_request_duration_seconds_count\{[^}]*\} ([\d.e+-]+)$/.exec(line);
    if (m) reqs += Number(m[1]);
  }
  return { cpu: cpuMs(h.process.pid), gc, reqs };
}
(async () => {
  stopChildrenOnSignals();
  const { url, products, stop } = await prepareBenchDatabase(1, 1, console.log, { keep: true });
  const d = asDeployed('gcab');
  const env = clusterHostEnv({ ...d, databaseUrl: url, readRate: '1000000r/s', writeRate: '1000000r/s' });
  const flagged = SWAP ? 0 : 1;
  const hosts = [];
  for (let i = 0; i < 2; i++) {
    const port = await freePort();
    hosts.push(await startHost({ port, databaseUrl: url, env, logFile: `${d.hostLogDir}/host-${i + 1}.log`,
      wrap: i === flagged ? (a) => [a[0], ...FLAG.split(' '), ...a.slice(1)] : undefined }));
  }
  console.log(`host ${flagged + 1} runs with ${FLAG}; pids ${hosts.map((h) => h.process.pid)}; cmdlines:`, hosts.map((h) => fs.readFileSync(`/proc/${h.process.pid}/cmdline`, 'utf8').replace(/\0/g, ' ')));
  const nginx = await startNginx({ prefix: require('node:path').resolve(__dirname, '../../../.data/bench/gcab'), corsOrigins: d.corsOrigins, listen: `127.0.0.1:${await freePort()}`, upstreams: hosts.map((h) => h.address), writeRate: '1000000r/s', readRate: '1000000r/s' });
  const t0 = performance.now();
  if (!(await tablesLoaded(hosts, 900_000))) throw new Error('tables not loaded in 15 minutes');
  console.log(`tables loaded after ${((performance.now() - t0) / 1000).toFixed(0)} s`);
  let seed = 11;
  const load = (s) => runLoad({ target: nginx.url, acceptEncoding: traffic.ACCEPT_ENCODING, stages: [{ rate: RATE, duration: s }], products, distribution: 'zipf', seed: seed++ });
  await load(20);
  for (let w = 1; w <= WINDOWS; w++) {
    const a = await Promise.all(hosts.map(stats));
    const r = await load(30);
    const b = await Promise.all(hosts.map(stats));
    const st = r.stages[0];
    const parts = hosts.map((h, i) => {
      const n = b[i].reqs - a[i].reqs;
      const cpu = b[i].cpu - a[i].cpu;
      const gc = Object.keys(b[i].gc).map((k) => { const c = b[i].gc[k].count - (a[i].gc[k]?.count ?? 0); const s = b[i].gc[k].sum - (a[i].gc[k]?.sum ?? 0); return c ? `${k} ${c} (${(s * 1000).toFixed(0)} ms, mean ${(s * 1000 / c).toFixed(1)})` : ''; }).filter(Boolean).join(', ');
      return `host ${i + 1}${i === flagged ? ' [flag]' : ''}: ${n} requests, ${(cpu * 1000 / n).toFixed(1)} µs CPU per request; GC ${gc}`;
    });
    console.log(`window ${w}: ${st.requests} sent, p99 ${st.latencyMs.p99.toFixed(1)} ms, statuses ${JSON.stringify(st.statuses)}\n  ${parts.join('\n  ')}`);
  }
  await nginx.stop();
  await Promise.all(hosts.map((h) => h.stop()));
  await stop();
  process.exit(0);
// On an error, SIGTERM to itself: stopChildrenOnSignals stops the hosts and nginx, then exits.
})().catch((e) => { console.error(e); process.kill(process.pid, 'SIGTERM'); });

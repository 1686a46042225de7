// Ad hoc (21st session): a system-wide perf profile of the deployed cluster under the mix (perf-4000.txt).
// As run, it then waited for perf to exit after perf had already exited (it hung after the load, and was
// killed, its cluster stopped by hand); fixed here, with a stop of the cluster on SIGTERM, SIGHUP or an error,
// and a bound on the tables' wait. perf.data goes to .data/bench/prof/ (git-ignored). The hosts' --perf-basic-prof
// writes /tmp/perf-PID.map (perf reads them) and isolate-*-v8.log files in the current folder: remove them after.
// Run from the repository root after `npm run build`: node --initial-old-space-size=256 bench/results/session-21/profile.js [RATE]
// Changed after the runs: the tables' wait is the benchmark's own tablesLoaded (bench/api-benchmark.ts), CPU is
// read with bench/cpu.ts's cpuMs and pidsNamed (the same /proc fields), and an error stops the cluster; what they
// measure is as run.

const { spawn } = require('node:child_process');
const { asDeployed } = require('../../../dist/bench/api-bench.js');
const { startCluster, freePort } = require('../../../dist/src/cluster/cluster.js');
const { stopChildrenOnSignals } = require('../../../dist/src/cluster/processes.js');
const { prepareBenchDatabase } = require('../../../dist/bench/dataset.js');
const { tablesLoaded } = require('../../../dist/bench/api-benchmark.js');
const { runLoad } = require('../../../dist/loadtest/node/runner.js');
const traffic = require('../../../dist/loadtest/lib/traffic.js');
const RATE = Number(process.argv[2] ?? 4000);
(async () => {
  stopChildrenOnSignals();
  const { url, products, stop } = await prepareBenchDatabase(1, 1, console.log, { keep: true });
  const d = asDeployed('prof', { NODE_OPTIONS: '--perf-basic-prof' });
  const cluster = await startCluster({
    databaseUrl: url, port: await freePort(), hostPorts: [await freePort(), await freePort()], prefix: require('node:path').resolve(__dirname, '../../../.data/bench/prof'),
    ...d, writeRate: '1000000r/s', readRate: '1000000r/s',
  });
  if (!(await tablesLoaded(cluster.hosts, 900_000))) throw new Error('tables not loaded in 15 minutes');
  console.log('hosts', cluster.hosts.map((h) => h.process.pid));
  await runLoad({ target: cluster.url, acceptEncoding: traffic.ACCEPT_ENCODING, stages: [{ rate: RATE, duration: 20 }], products, distribution: 'zipf', seed: 5 });
  const perf = spawn('perf', ['record', '-F', '499', '-a', '-g', '-o', require('node:path').resolve(__dirname, '../../../.data/bench/prof/perf.data'), '--', 'sleep', '20'], { stdio: 'inherit' });
  const perfDone = new Promise((res) => { perf.on('exit', res); perf.on('error', (e) => { console.error(`perf: ${e.message}`); res(); }); });
  const r = await runLoad({ target: cluster.url, acceptEncoding: traffic.ACCEPT_ENCODING, stages: [{ rate: RATE, duration: 25 }], products, distribution: 'zipf', seed: 6 });
  await perfDone;
  const st = r.stages[0];
  console.log(JSON.stringify({ rps: st.rps, p99: st.latencyMs.p99, statuses: st.statuses, hits: st.cacheHits, hostHits: st.hostCacheHits }));
  await cluster.stop();
  await stop();
  process.exit(0);
// On an error, SIGTERM to itself: stopChildrenOnSignals stops the hosts and nginx, then exits.
})().catch((e) => { console.error(e); process.kill(process.pid, 'SIGTERM'); });

// Ad hoc (nineteenth session): what the cluster as deployed costs with no traffic at all, per
// process (hosts, nginx, each PostgreSQL process by its title), over three 30 s windows after
// the tables are loaded and a minute has passed. Run from the repository root, after
// `npm run build`: node bench/results/session-19/idle-cost.js (the benchmark's database, as the last
// run left it).
const fs = require('node:fs');
const { execFileSync } = require('node:child_process');
const { asDeployed } = require('/work/main/dist/bench/api-bench.js');
const { startCluster, freePort } = require('/work/main/dist/src/cluster/cluster.js');
const { prepareBenchDatabase } = require('/work/main/dist/bench/dataset.js');
const TICK_MS = 1000 / Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }));
function snapshot() {
  const out = new Map();
  for (const pid of fs.readdirSync('/proc').filter((p) => /^\d+$/.test(p))) {
    try {
      const comm = fs.readFileSync(`/proc/${pid}/comm`, 'utf8').trim();
      if (!['postgres', 'node', 'nginx'].includes(comm)) continue;
      const cmd = fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').replace(/\0/g, ' ').trim();
      const st = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
      const f = st.slice(st.lastIndexOf(')') + 2).split(' ');
      const sw = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
      const switches = Number(/voluntary_ctxt_switches:\s+(\d+)/.exec(sw)[1]) + Number(/nonvoluntary_ctxt_switches:\s+(\d+)/.exec(sw)[1]);
      out.set(Number(pid), { comm, cmd, ms: (Number(f[11]) + Number(f[12])) * TICK_MS, switches });
    } catch { /* gone */ }
  }
  return out;
}
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
(async () => {
  // The benchmark's database as the last run left it (keep: no copy from the dataset as imported).
  const { url, stop } = await prepareBenchDatabase(1, 1, console.log, { keep: true });
  const cluster = await startCluster({
    databaseUrl: url, port: await freePort(), hostPorts: [await freePort(), await freePort()], prefix: '/work/main/.data/bench/idle',
    ...asDeployed('idle'), writeRate: '1000000r/s', readRate: '1000000r/s',
  });
  const hostPids = new Set(cluster.hosts.map((h) => h.process.pid));
  const label = (pid, p) => (hostPids.has(pid) ? 'host' : p.comm === 'node' ? null : p.comm === 'nginx' ? `nginx ${p.cmd.split(' ')[1]}` : p.cmd.replace(/\(\d+\)/, '').replace(/ (idle|active|idle in transaction)$/, '').replace(/^\/\S+\/postgres .*/, 'postmaster'));
  // Loaded: both hosts' tables hold products (the benchmark's own wait, bench/api-benchmark.ts tablesLoaded).
  const t = performance.now();
  for (;;) {
    const texts = await Promise.all(cluster.hosts.map((h) => fetch(`http://${h.address}/metrics`).then((r) => r.text(), () => '')));
    if (texts.every((x) => x && !/^atelier_(meta|review)_memory_size\{measure="max_product"\} 0$/m.test(x))) break;
    await sleep(250);
  }
  console.log(`started; tables loaded after ${((performance.now() - t) / 1000).toFixed(0)} s; waiting 60 s more`);
  await sleep(60_000);
  for (let w = 0; w < 3; w++) {
    const a = snapshot();
    const t0 = performance.now();
    await sleep(30_000);
    const b = snapshot();
    const s = (performance.now() - t0) / 1000;
    const groups = new Map();
    for (const [pid, p] of b) {
      const l = label(pid, p);
      if (!l) continue;
      const before = a.get(pid) ?? { ms: 0, switches: 0 };
      const g = groups.get(l) ?? { ms: 0, switches: 0, n: 0 };
      g.ms += p.ms - before.ms; g.switches += p.switches - before.switches; g.n++;
      groups.set(l, g);
    }
    console.log(`window ${w + 1} (${s.toFixed(1)} s), CPU ms per second and wake-ups per second, idle:`);
    for (const [l, g] of [...groups].sort((x, y) => y[1].ms - x[1].ms)) console.log(`  ${(g.ms / s).toFixed(2).padStart(7)} ms/s  ${(g.switches / s).toFixed(1).padStart(7)} switches/s  ${l} (${g.n})`);
  }
  await cluster.stop();
  await stop();
  process.exit(0);
})().catch((e) => { console.error(e); process.exit(1); });

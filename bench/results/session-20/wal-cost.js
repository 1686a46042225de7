// Ad hoc (twentieth session): what PostgreSQL's full-page images cost under the storefront mix.
// The cluster as deployed on the benchmark's database (as the last run left it), the mix at
// RATE req/s open loop; three 60 s windows: the first as it comes, then CHECKPOINT and the
// second right after it (every page's first change logs a full 8 KB image), then the third.
// Per window: pg_stat_wal (records, full-page images, bytes), and each PostgreSQL process's
// CPU by its title, per mix request. Run from the repository root after `npm run build`:
// node --initial-old-space-size=256 bench/results/session-20/wal-cost.js [RATE]
const fs = require('node:fs');
const { execFileSync } = require('node:child_process');
const { Client } = require('pg');
const { asDeployed } = require('/work/main/dist/bench/api-bench.js');
const { startCluster, freePort } = require('/work/main/dist/src/cluster/cluster.js');
const { prepareBenchDatabase } = require('/work/main/dist/bench/dataset.js');
const { runLoad } = require('/work/main/dist/loadtest/node/runner.js');
const traffic = require('/work/main/dist/loadtest/lib/traffic.js');
const RATE = Number(process.argv[2] ?? 4000);
const TICK_MS = 1000 / Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }));
function pgCpu() {
  const out = new Map();
  for (const pid of fs.readdirSync('/proc').filter((p) => /^\d+$/.test(p))) {
    try {
      if (fs.readFileSync(`/proc/${pid}/comm`, 'utf8').trim() !== 'postgres') continue;
      const cmd = fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').replace(/\0/g, ' ').trim();
      const st = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
      const f = st.slice(st.lastIndexOf(')') + 2).split(' ');
      const label = cmd.startsWith('/') ? 'postmaster' : cmd.replace(/^postgres: /, '').replace(/atelier \S+ \S+ .*$/, 'client backends').replace(/\(\d+\)/, '');
      out.set(Number(pid), { label, ms: (Number(f[11]) + Number(f[12])) * TICK_MS });
    } catch { /* gone */ }
  }
  return out;
}
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
(async () => {
  const { url, products, stop } = await prepareBenchDatabase(1, 1, console.log, { keep: true });
  const db = new Client({ connectionString: url });
  await db.connect();
  console.log((await db.query("SELECT string_agg(name || '=' || setting || coalesce(unit, ''), ', ') AS s FROM pg_settings WHERE name IN ('checkpoint_timeout','max_wal_size','full_page_writes','wal_compression','shared_buffers','synchronous_commit','wal_level')")).rows[0].s);
  const cluster = await startCluster({
    databaseUrl: url, port: await freePort(), hostPorts: [await freePort(), await freePort()], prefix: '/work/main/.data/bench/idle',
    ...asDeployed('wal'), writeRate: '1000000r/s', readRate: '1000000r/s',
  });
  const t = performance.now();
  for (;;) {
    const texts = await Promise.all(cluster.hosts.map((h) => fetch(`http://${h.address}/metrics`).then((r) => r.text(), () => '')));
    if (texts.every((x) => x && !/^atelier_(meta|review)_memory_size\{measure="max_product"\} 0$/m.test(x))) break;
    await sleep(250);
  }
  console.log(`tables loaded after ${((performance.now() - t) / 1000).toFixed(0)} s`);
  let seed = 7;
  const load = (s) => runLoad({ target: cluster.url, acceptEncoding: traffic.ACCEPT_ENCODING, stages: [{ rate: RATE, duration: s }], products, distribution: 'zipf', seed: seed++ });
  await load(20);
  const wal = async () => (await db.query('SELECT wal_records::float8 AS records, wal_fpi::float8 AS fpi, wal_bytes::float8 AS bytes FROM pg_stat_wal')).rows[0];
  for (const w of ['as it comes', 'right after a CHECKPOINT', 'a minute after it']) {
    if (w.startsWith('right')) { const c0 = performance.now(); await db.query('CHECKPOINT'); console.log(`CHECKPOINT took ${((performance.now() - c0) / 1000).toFixed(1)} s`); }
    const a = pgCpu(); const wa = await wal();
    const r = await load(60);
    const b = pgCpu(); const wb = await wal();
    const st = r.stages[0];
    const n = st.requests;
    const groups = new Map();
    for (const [pid, p] of b) { const before = a.get(pid)?.ms ?? 0; groups.set(p.label, (groups.get(p.label) ?? 0) + p.ms - before); }
    const total = [...groups.values()].reduce((x, y) => x + y, 0);
    console.log(`window "${w}": ${n} requests, statuses ${JSON.stringify(st.statuses)}, p99 ${st.latencyMs.p99.toFixed(1)} ms, writes p99 ${st.writes.p99.toFixed(1)} ms; ` +
      `WAL ${((wb.bytes - wa.bytes) / 1e6).toFixed(1)} MB, ${(wb.records - wa.records)} records, ${(wb.fpi - wa.fpi)} full-page images (${((wb.bytes - wa.bytes) / n).toFixed(0)} bytes per mix request)`);
    console.log(`  PostgreSQL ${(total * 1000 / n).toFixed(1)} µs per mix request: ` + [...groups].sort((x, y) => y[1] - x[1]).filter(([, ms]) => ms > 0).map(([l, ms]) => `${l} ${(ms * 1000 / n).toFixed(1)}`).join(', '));
  }
  await db.end();
  await cluster.stop();
  await stop();
  process.exit(0);
})().catch((e) => { console.error(e); process.exit(1); });

// Ad hoc: one host on the full-scale dataset, review table off, no traffic: the event loop's longest delay and GCs while the meta table loads.
const D = '/work/main/dist';
const { prepareBenchDatabase } = require(D + '/bench/dataset.js');
const { spawn } = require('child_process');
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
(async () => {
  const db = await prepareBenchDatabase(1, 1, (l) => console.log(l), { keep: true });
  const port = 39123;
  const child = spawn(process.execPath, ['--initial-old-space-size=256', '--trace-gc', D + '/src/server.js'], { env: { ...process.env, DATABASE_URL: db.url, PORT: String(port), REVIEW_MEMORY_MB: '0', LOG_FORMAT: 'off' }, stdio: ['ignore', 'pipe', 'inherit'] });
  let marks = 0, scav = 0; const big = [];
  child.stdout.on('data', (b) => { for (const l of b.toString().split('\n')) { if (/Mark-Compact|Mark-sweep/i.test(l)) { marks++; big.push(l.trim().slice(0, 160)); } else if (/Scavenge/.test(l)) scav++; } });
  const began = Date.now();
  let loaded = false, maxLag = 0;
  for (let i = 0; i < 300 && !loaded; i++) {
    await sleep(200);
    try {
      const t = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
      const lag = /^nodejs_eventloop_lag_max_seconds ([\d.e+-]+)$/m.exec(t);
      if (lag) maxLag = Math.max(maxLag, Number(lag[1]));
      loaded = /^atelier_meta_memory_size\{measure="max_product"\} [1-9]/m.test(t);
      if (loaded) console.log(`meta loaded after ${(Date.now() - began) / 1000} s; event loop max lag seen ${Math.round(maxLag * 1000)} ms; mark-compacts ${marks}, scavenges ${scav}`);
    } catch { /* not listening yet */ }
  }
  for (const l of big) console.log('  ' + l);
  child.kill('SIGTERM');
  await sleep(1000);
  await db.stop();
  process.exit(0);
})().catch((e) => { console.error(e); process.exit(1); });

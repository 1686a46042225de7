// Ad hoc: PostgreSQL's CPU for one read-back statement of N products (the sweep's batch), review and meta, on the full-scale data.
const D = '/work/main/dist';
const fs = require('fs');
const { prepareBenchDatabase } = require(D + '/bench/dataset.js');
// The read-back statements exactly as the hosts send them (exported by the two tables' modules).
const { LISTED_SQL } = require(D + '/src/reviews/review-memory.js');
const { PRODUCTS_SQL } = require(D + '/src/reviews/meta-memory.js');
const { Client } = require('/work/main/node_modules/pg');
const cpu = (pid) => { const f = fs.readFileSync(`/proc/${pid}/stat`, 'utf8'); const x = f.slice(f.lastIndexOf(')') + 2).split(' '); return (Number(x[11]) + Number(x[12])) * 10; };
(async () => {
  const { url, stop } = await prepareBenchDatabase(1, 1, console.log);
  const c = new Client({ connectionString: url }); await c.connect();
  const pid = (await c.query('SELECT pg_backend_pid() AS p')).rows[0].p;
  const N = Number(process.env.N || 64), K = 40;
  // Products as the sweep meets them: a random product in 2..1,000,011 with at most 64 visible reviews (the tail).
  const pick = () => Array.from({ length: N }, () => 1001 + Math.floor(Math.random() * 999000));
  for (const [name, sql] of [['review', LISTED_SQL], ['meta', PRODUCTS_SQL], ['review', LISTED_SQL], ['meta', PRODUCTS_SQL]]) {
    for (let i = 0; i < 5; i++) await c.query(sql, [pick()]);
    const c0 = cpu(pid), t0 = performance.now();
    for (let i = 0; i < K; i++) await c.query(sql, [pick()]);
    console.log(`${name}: ${K} statements of ${N} products: backend CPU ${((cpu(pid) - c0) / K).toFixed(2)} ms, wall ${((performance.now() - t0) / K).toFixed(2)} ms a statement`);
  }
  await c.end(); await stop(); process.exit(0);
})().catch((e) => { console.error(e); process.exit(1); });

// Ad hoc: PostgreSQL's CPU for one read-back statement of N products (the sweep's batch), review and meta, on the full-scale data.
const D = '/work/main/dist';
const fs = require('fs');
const { prepareBenchDatabase } = require(D + '/bench/dataset.js');
const { ORDER_BY, REVIEW_OBJECT_SQL } = require(D + '/src/reviews/repository.js');
const { SORTS } = require(D + '/src/reviews/schemas.js');
const { Client } = require('/work/main/node_modules/pg');
const rank = (sort) => `row_number() OVER (PARTITION BY r.product_id ORDER BY ${ORDER_BY[sort]})`;
// As src/reviews/review-memory.ts's productsSql and src/reviews/meta-memory.ts's aggregatesSql (copied).
const productsSql = (which) => `
WITH v AS MATERIALIZED (
  SELECT r.product_id, r.id, r.rating, ${SORTS.map((s) => `${rank(s)} AS rank_${s}`).join(', ')},
         convert_to((${REVIEW_OBJECT_SQL})::text, 'UTF8') AS j
  FROM atelier.reviews r
  WHERE ${which.replaceAll('product_id', 'r.product_id')} AND NOT r.reported)
SELECT (SELECT count(*)::int FROM v) AS n,
       (SELECT string_agg(int4send(product_id) || int4send(rating::int) || ${SORTS.map((s) => `int4send(rank_${s}::int)`).join(' || ')}
                          || int4send(octet_length(j)), ''::bytea ORDER BY product_id, id) FROM v) AS rb,
       (SELECT string_agg(j, ''::bytea ORDER BY product_id, id) FROM v) AS tb,
       (SELECT count(*)::int FROM atelier.product_ratings WHERE ${which}) AS pn,
       (SELECT string_agg(int4send(product_id) || int4send(r1) || int4send(r2) || int4send(r3) || int4send(r4) || int4send(r5), ''::bytea ORDER BY product_id)
        FROM atelier.product_ratings WHERE ${which}) AS pb`;
const aggregatesSql = (where) =>
  `WITH c AS MATERIALIZED (SELECT product_id, id, name, rating_sum, rating_count FROM atelier.characteristics WHERE ${where}),
        named AS (SELECT coalesce(array_agg(DISTINCT name COLLATE "C"), '{}') AS names FROM c)
   SELECT r.n AS rn, r.b AS rb, named.names, (SELECT count(*)::int FROM c) AS cn,
          (SELECT string_agg(int4send(c.product_id) || int4send(c.id) || int8send(c.rating_sum) || int4send(c.rating_count)
                             || int4send(array_position(named.names, c.name)), ''::bytea ORDER BY c.product_id, c.id) FROM c) AS cb
   FROM named, (SELECT count(*)::int AS n, string_agg(int4send(product_id) || int4send(r1) || int4send(r2) || int4send(r3) || int4send(r4)
                                             || int4send(r5) || int4send(recommended) || int4send(not_recommended), ''::bytea) AS b
                FROM atelier.product_ratings WHERE ${where}) r`;
const cpu = (pid) => { const f = fs.readFileSync(`/proc/${pid}/stat`, 'utf8'); const x = f.slice(f.lastIndexOf(')') + 2).split(' '); return (Number(x[11]) + Number(x[12])) * 10; };
(async () => {
  const { url, stop } = await prepareBenchDatabase(1, 1, console.log);
  const c = new Client({ connectionString: url }); await c.connect();
  const pid = (await c.query('SELECT pg_backend_pid() AS p')).rows[0].p;
  const N = Number(process.env.N || 64), K = 40;
  // Products as the sweep meets them: a random product in 2..1,000,011 with at most 64 visible reviews (the tail).
  const pick = () => Array.from({ length: N }, () => 1001 + Math.floor(Math.random() * 999000));
  for (const [name, sql] of [['review', productsSql('product_id = ANY($1::int[])')], ['meta', aggregatesSql('product_id = ANY($1::integer[])')], ['review', productsSql('product_id = ANY($1::int[])')], ['meta', aggregatesSql('product_id = ANY($1::integer[])')]]) {
    for (let i = 0; i < 5; i++) await c.query(sql, [pick()]);
    const c0 = cpu(pid), t0 = performance.now();
    for (let i = 0; i < K; i++) await c.query(sql, [pick()]);
    console.log(`${name}: ${K} statements of ${N} products: backend CPU ${((cpu(pid) - c0) / K).toFixed(2)} ms, wall ${((performance.now() - t0) / K).toFixed(2)} ms a statement`);
  }
  await c.end(); await stop(); process.exit(0);
})().catch((e) => { console.error(e); process.exit(1); });

// Every read query must be served by indexes: on a table big enough for the planner to
// care, no plan may sequentially scan reviews, photos, ratings or characteristics.
import fs from 'node:fs';
import { fromRoot } from '../../src/lib/paths';
import { Db } from '../../src/db';
import { listSql, ratingMask, ReviewRepository } from '../../src/reviews/repository';
import { createTestDatabase, type TestDatabase } from '../helpers/test-db';
import { rebuildAggregates } from '../../src/reviews/aggregates';

let t: TestDatabase;

const sql = (name: string) => fs.readFileSync(fromRoot('src', 'reviews', 'sql', name), 'utf8');
const GUARDED = ['reviews', 'reviews_photos', 'characteristic_reviews', 'characteristics', 'product_ratings'];

beforeAll(async () => {
  t = await createTestDatabase({ statementTimeoutMs: 120_000 });
  // 80,000 reviews over 4,000 products, a third with photos, 3 ratings each.
  await t.db.query(`INSERT INTO atelier.characteristics (id, product_id, name)
    SELECT g, (g - 1) / 3 + 1, (ARRAY['Fit','Length','Quality'])[(g - 1) % 3 + 1] FROM generate_series(1, 12000) g`);
  await t.db.query(`INSERT INTO atelier.reviews (id, product_id, rating, date, body, recommend, reported, reviewer_name, reviewer_email, helpfulness)
    SELECT g, g % 4000 + 1, g % 5 + 1, timestamptz '2020-01-01' + (g % 700) * interval '1 day', 'body', g % 3 > 0, g % 50 = 0, 'n', 'e', g % 17
    FROM generate_series(1, 80000) g`);
  await t.db.query(`INSERT INTO atelier.reviews_photos (review_id, url) SELECT g, 'https://x/' || g FROM generate_series(1, 80000, 3) g`);
  await t.db.query(`INSERT INTO atelier.characteristic_reviews (characteristic_id, review_id, value)
    SELECT (r.product_id - 1) * 3 + k, r.id, (r.id + k) % 5 + 1 FROM atelier.reviews r, generate_series(1, 3) k`);
  await rebuildAggregates((q, p) => t.db.query(q, p));
  await t.db.query('ANALYZE');
}, 120_000);

afterAll(async () => {
  await t.drop();
});

type PlanNode = { 'Node Type': string; 'Relation Name'?: string; Plans?: PlanNode[] };
function seqScans(node: PlanNode, found: string[] = []): string[] {
  if (node['Node Type'] === 'Seq Scan' && GUARDED.includes(node['Relation Name'] ?? '')) found.push(node['Relation Name']!);
  for (const child of node.Plans ?? []) seqScans(child, found);
  return found;
}

async function plans(text: string, params: unknown[]): Promise<PlanNode[]> {
  const client = await t.db.connect();
  try {
    const out: PlanNode[] = [];
    // A custom plan (values known) and the generic plan a prepared statement may switch to.
    for (const mode of ['force_custom_plan', 'force_generic_plan']) {
      await client.query(`SET plan_cache_mode = ${mode}`);
      await client.query(`PREPARE q AS ${text}`);
      const args = params.map((p) => (Array.isArray(p) ? `ARRAY[${p.join(',')}]` : String(p))).join(', ');
      const res = await client.query(`EXPLAIN (FORMAT JSON) EXECUTE q(${args})`);
      out.push(res.rows[0]['QUERY PLAN'][0].Plan);
      await client.query('DEALLOCATE q');
    }
    return out;
  } finally {
    client.release();
  }
}

const queries: [string, string, unknown[]][] = [
  ...(['newest', 'helpful', 'relevant'] as const).flatMap((sort) => [
    [`GET /reviews sort=${sort}`, listSql(sort), [[1234], [5], [0], [ratingMask()]]],
    [`GET /reviews sort=${sort}&rating=4,5`, listSql(sort), [[1234], [5], [0], [ratingMask([4, 5])]]],
    [`GET /reviews sort=${sort}, a batch of 32 products`, listSql(sort), [
      Array.from({ length: 32 }, (_, i) => 100 + 37 * i), Array(32).fill(5), Array(32).fill(0), Array(32).fill(ratingMask())]],
  ] as [string, string, unknown[]][]),
  ['GET /reviews/meta', sql('review-meta.sql'), [[1234]]],
  ['GET /reviews/meta, a batch of 32 products', sql('review-meta.sql'), [Array.from({ length: 32 }, (_, i) => 100 + 37 * i)]],
  ['report: ratings of a review', 'SELECT characteristic_id, sum(value), count(*) FROM atelier.characteristic_reviews WHERE review_id = $1 GROUP BY 1', [4321]],
  ['POST: characteristics of a product', 'SELECT id FROM atelier.characteristics WHERE product_id = $1 ORDER BY id', [1234]],
];

test.each(queries)('%s uses no sequential scan of the big tables', async (_name, text, params) => {
  for (const plan of await plans(text, params)) {
    expect(seqScans(plan)).toEqual([]);
  }
});

test('the planner check itself finds a sequential scan when there is one', async () => {
  const [plan] = await plans('SELECT count(*) FROM atelier.reviews WHERE body = $1', ["'x'"]);
  expect(seqScans(plan)).toEqual(['reviews']);
});

// PostgreSQL prices the list statement's generic plan (LIMIT and OFFSET unknown) above its
// custom plans and so re-plans it on every execution, which cost more than running it. The
// API's pool runs generic plans (Db genericPlans); the plans above show they use the indexes.
// (Without the option the first five executions are custom plans on any data; on the
// full-scale data every one was.)
test.each([[true, 'planned once'], [false, 'planned anew at least five times']])('with genericPlans %s the list statement is %s', async (generic) => {
  const db = new Db({ connectionString: t.url, poolSize: 1, genericPlans: generic });
  try {
    const repo = new ReviewRepository(db);
    for (let i = 0; i < 8; i++) await repo.list(100 + i, 'relevant', 5, 0);
    const { rows } = await db.query<{ generic_plans: string; custom_plans: string }>(
      "SELECT generic_plans, custom_plans FROM pg_prepared_statements WHERE name = 'list-relevant'");
    const [generics, customs] = [Number(rows[0].generic_plans), Number(rows[0].custom_plans)];
    if (generic) expect([generics, customs]).toEqual([8, 0]);
    else expect(customs).toBeGreaterThanOrEqual(5);
  } finally {
    await db.close();
  }
});

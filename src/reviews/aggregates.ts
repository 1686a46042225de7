// State derived from the raw rows: the meta aggregates (product_ratings and the
// characteristics' rating_sum/rating_count) and the id sequences. Recomputed with
// set-based SQL to audit and repair them (`npm run verify`) and by tests that arrange rows
// directly; the import counts them while streaming and moves the sequences with this.
import Cursor from 'pg-cursor';
import type { Client, Db, pg } from '../db';

type Run = (text: string, params?: unknown[]) => Promise<unknown>;
const runner = (run: Run | Client): Run => (typeof run === 'function' ? run : (t, p) => run.query(t, p));

/**
 * SELECT of the true per-product counts over visible reviews, in product_ratings'
 * column order; `onlyProducts` restricts it to the products in array parameter $1.
 */
export const productTotalsSql = (schema: string, onlyProducts = false) => `
  SELECT product_id,
         count(*) FILTER (WHERE rating = 1)::int AS r1, count(*) FILTER (WHERE rating = 2)::int AS r2,
         count(*) FILTER (WHERE rating = 3)::int AS r3, count(*) FILTER (WHERE rating = 4)::int AS r4,
         count(*) FILTER (WHERE rating = 5)::int AS r5,
         count(*) FILTER (WHERE recommend)::int AS recommended,
         count(*) FILTER (WHERE NOT recommend)::int AS not_recommended
  FROM ${schema}.reviews
  WHERE NOT reported ${onlyProducts ? 'AND product_id = ANY($1::int[])' : ''}
  GROUP BY product_id`;

/** SELECT of the true per-characteristic sum and count over visible reviews. */
export const characteristicTotalsSql = (schema: string, onlyProducts = false) => `
  SELECT cr.characteristic_id, sum(cr.value)::bigint AS rating_sum, count(*)::int AS rating_count
  FROM ${schema}.characteristic_reviews cr
  JOIN ${schema}.reviews r ON r.id = cr.review_id
  WHERE NOT r.reported ${onlyProducts ? 'AND r.product_id = ANY($1::int[])' : ''}
  GROUP BY cr.characteristic_id`;

const PRODUCT_COLUMNS = 'product_id, r1, r2, r3, r4, r5, recommended, not_recommended';

/** Rewrites every aggregate of `schema` from its raw rows (or only those of `productIds`). */
export async function rebuildAggregates(run: Run | Client, schema = 'atelier', productIds?: number[]): Promise<void> {
  const q = runner(run);
  const only = productIds !== undefined;
  const params = only ? [productIds] : undefined;
  if (only) {
    // Same lock order as the API's writers: characteristics rows, then product_ratings. The
    // product_ratings rows are locked too (a product without characteristics has nothing
    // else to lock) and rewritten in place, never deleted: a writer waiting on a row then
    // applies its change to the rewritten row. Deleted and inserted anew, a report waiting
    // on the old row found it gone and its decrement was lost (found by a test).
    // Each statement below takes a new snapshot, after the locks: every writer that held
    // them has committed and is counted; one still to come applies its delta afterwards.
    await q(`SELECT 1 FROM ${schema}.characteristics WHERE product_id = ANY($1::int[]) ORDER BY id FOR UPDATE`, params);
    await q(`SELECT 1 FROM ${schema}.product_ratings WHERE product_id = ANY($1::int[]) ORDER BY product_id FOR UPDATE`, params);
    await q(`INSERT INTO ${schema}.product_ratings (${PRODUCT_COLUMNS})
             SELECT k.p, coalesce(t.r1, 0), coalesce(t.r2, 0), coalesce(t.r3, 0), coalesce(t.r4, 0), coalesce(t.r5, 0),
                    coalesce(t.recommended, 0), coalesce(t.not_recommended, 0)
             FROM (SELECT DISTINCT unnest($1::int[]) AS p) k LEFT JOIN (${productTotalsSql(schema, true)}) t ON t.product_id = k.p
             ORDER BY k.p
             ON CONFLICT (product_id) DO UPDATE SET r1 = EXCLUDED.r1, r2 = EXCLUDED.r2, r3 = EXCLUDED.r3, r4 = EXCLUDED.r4,
               r5 = EXCLUDED.r5, recommended = EXCLUDED.recommended, not_recommended = EXCLUDED.not_recommended`, params);
  } else {
    await q(`TRUNCATE ${schema}.product_ratings`);
    await q(`INSERT INTO ${schema}.product_ratings (${PRODUCT_COLUMNS}) ${productTotalsSql(schema)}`);
  }
  await q(`UPDATE ${schema}.characteristics c
           SET rating_sum = coalesce(t.rating_sum, 0), rating_count = coalesce(t.rating_count, 0)
           FROM ${schema}.characteristics c2
           LEFT JOIN (${characteristicTotalsSql(schema, only)}) t ON t.characteristic_id = c2.id
           WHERE c.id = c2.id ${only ? 'AND c2.product_id = ANY($1::int[])' : ''}
             AND (c.rating_sum, c.rating_count) IS DISTINCT FROM (coalesce(t.rating_sum, 0), coalesce(t.rating_count, 0))`, params);
}

export const ID_TABLES = ['reviews', 'reviews_photos', 'characteristics', 'characteristic_reviews'] as const;

/** Moves each id sequence past the largest id present, so the next insert cannot collide. */
export async function advanceSequences(run: Run | Client, schema = 'atelier'): Promise<void> {
  const q = runner(run);
  for (const table of ID_TABLES) {
    await q(`SELECT setval(pg_get_serial_sequence('${schema}.${table}', 'id'),
                           coalesce((SELECT max(id) FROM ${schema}.${table}), 0) + 1, false)`);
  }
}

export interface AuditReport {
  productsChecked: number;
  characteristicsChecked: number;
  /** Every product whose stored aggregates differ from its raw rows, ascending. */
  drifted: number[];
  /** The first few differences, for people. */
  examples: string[];
  seconds: number;
  rowsPerSecond: number;
}

const BATCH = 5000;

/** Reads a query through a server-side cursor, BATCH rows at a time (bounded memory). */
async function stream<R>(client: pg.Client, text: string, each: (row: R) => void): Promise<number> {
  const cursor = client.query(new Cursor<R>(text));
  let n = 0;
  try {
    for (;;) {
      const rows = await cursor.read(BATCH);
      if (rows.length === 0) return n;
      for (const row of rows) each(row);
      n += rows.length;
    }
  } finally {
    await cursor.close();
  }
}

/**
 * Recomputes every product's counts and every characteristic's sum/count from the raw
 * rows and compares them with the stored aggregates, streaming both with cursors.
 */
export async function auditAggregates(db: Db, schema = 'atelier', onProgress?: (rows: number) => void): Promise<AuditReport> {
  const started = performance.now();
  const drifted = new Set<number>();
  const examples: string[] = [];
  const note = (product: number, what: string) => {
    drifted.add(product);
    if (examples.length < 20) examples.push(`product ${product}: ${what}`);
  };
  let rows = 0;
  const tick = () => {
    if (++rows % 100_000 === 0) onProgress?.(rows);
  };
  return db.withDedicatedClient(async (client) => {
    await client.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
    await client.query('SET LOCAL statement_timeout = 0');
    type P = Record<'product_id' | 's' | 't', string>;
    const productsChecked = await stream<P>(client, `
      SELECT coalesce(s.product_id, t.product_id) AS product_id,
             concat_ws(' ', s.r1, s.r2, s.r3, s.r4, s.r5, s.recommended, s.not_recommended) AS s,
             concat_ws(' ', t.r1, t.r2, t.r3, t.r4, t.r5, t.recommended, t.not_recommended) AS t
      FROM ${schema}.product_ratings s
      FULL JOIN (${productTotalsSql(schema)}) t USING (product_id)`, (r) => {
      tick();
      const stored = r.s || '0 0 0 0 0 0 0';
      const truth = r.t || '0 0 0 0 0 0 0';
      if (stored !== truth) note(Number(r.product_id), `ratings r1..r5/recommended/not stored [${stored}] but raw rows give [${truth}]`);
    });
    type C = { id: number; product_id: number; s: string; t: string };
    const characteristicsChecked = await stream<C>(client, `
      SELECT c.id, c.product_id,
             c.rating_sum || '/' || c.rating_count AS s,
             coalesce(t.rating_sum, 0) || '/' || coalesce(t.rating_count, 0) AS t
      FROM ${schema}.characteristics c
      LEFT JOIN (${characteristicTotalsSql(schema)}) t ON t.characteristic_id = c.id`, (r) => {
      tick();
      if (r.s !== r.t) note(r.product_id, `characteristic ${r.id} sum/count stored ${r.s} but raw rows give ${r.t}`);
    });
    await client.query('COMMIT');
    const seconds = (performance.now() - started) / 1000;
    return {
      productsChecked,
      characteristicsChecked,
      drifted: [...drifted].sort((a, b) => a - b),
      examples,
      seconds,
      rowsPerSecond: (productsChecked + characteristicsChecked) / Math.max(seconds, 1e-6),
    };
  });
}

/** Rewrites the aggregates of the given products from their raw rows, in one transaction. */
export async function repairAggregates(db: Db, productIds: number[], schema = 'atelier'): Promise<void> {
  if (productIds.length === 0) return;
  await db.withTransaction(async (q) => {
    await q('SET LOCAL statement_timeout = 0');
    await rebuildAggregates(q, schema, productIds);
  });
}

// State derived from the raw rows, rebuilt with set-based SQL: the meta aggregates and
// the id sequences. Used by the import (after COPY), by `npm run verify -- --repair`
// and by tests that arrange rows directly.
import type { Client } from '../db';

type Run = (text: string, params?: unknown[]) => Promise<unknown>;

/** SELECT of the true per-product counts over visible reviews, in product_ratings' column order. */
export const productTotalsSql = (schema: string) => `
  SELECT product_id,
         count(*) FILTER (WHERE rating = 1)::int AS r1, count(*) FILTER (WHERE rating = 2)::int AS r2,
         count(*) FILTER (WHERE rating = 3)::int AS r3, count(*) FILTER (WHERE rating = 4)::int AS r4,
         count(*) FILTER (WHERE rating = 5)::int AS r5,
         count(*) FILTER (WHERE recommend)::int AS recommended,
         count(*) FILTER (WHERE NOT recommend)::int AS not_recommended
  FROM ${schema}.reviews WHERE NOT reported GROUP BY product_id`;

/** SELECT of the true per-characteristic sum and count over visible reviews. */
export const characteristicTotalsSql = (schema: string) => `
  SELECT cr.characteristic_id, sum(cr.value)::bigint AS rating_sum, count(*)::int AS rating_count
  FROM ${schema}.characteristic_reviews cr
  JOIN ${schema}.reviews r ON r.id = cr.review_id
  WHERE NOT r.reported
  GROUP BY cr.characteristic_id`;

/** Rewrites every aggregate of `schema` from its raw rows. */
export async function rebuildAggregates(run: Run | Client, schema = 'atelier'): Promise<void> {
  const q: Run = typeof run === 'function' ? run : (t, p) => run.query(t, p);
  await q(`TRUNCATE ${schema}.product_ratings`);
  await q(`INSERT INTO ${schema}.product_ratings (product_id, r1, r2, r3, r4, r5, recommended, not_recommended) ${productTotalsSql(schema)}`);
  await q(`UPDATE ${schema}.characteristics c
           SET rating_sum = coalesce(t.rating_sum, 0), rating_count = coalesce(t.rating_count, 0)
           FROM ${schema}.characteristics c2
           LEFT JOIN (${characteristicTotalsSql(schema)}) t ON t.characteristic_id = c2.id
           WHERE c.id = c2.id AND (c.rating_sum, c.rating_count) IS DISTINCT FROM (coalesce(t.rating_sum, 0), coalesce(t.rating_count, 0))`);
}

export const ID_TABLES = ['reviews', 'reviews_photos', 'characteristics', 'characteristic_reviews'] as const;

/** Moves each id sequence past the largest id present, so the next insert cannot collide. */
export async function advanceSequences(run: Run | Client, schema = 'atelier'): Promise<void> {
  const q: Run = typeof run === 'function' ? run : (t, p) => run.query(t, p);
  for (const table of ID_TABLES) {
    await q(`SELECT setval(pg_get_serial_sequence('${schema}.${table}', 'id'),
                           coalesce((SELECT max(id) FROM ${schema}.${table}), 0) + 1, false)`);
  }
}

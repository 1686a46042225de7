// Arranges raw rows directly in the tables (as an import would) and rebuilds the
// aggregates, so API tests start from exactly the data they describe.
import type { Db } from '../../src/db';
import { advanceSequences, rebuildAggregates } from '../../src/reviews/aggregates';

export interface ReviewRow {
  id: number;
  product_id: number;
  rating: number;
  date: string;
  summary?: string;
  body?: string;
  recommend?: boolean;
  reported?: boolean;
  reviewer_name?: string;
  reviewer_email?: string;
  response?: string | null;
  helpfulness?: number;
  photos?: { id: number; url: string }[];
  /** characteristic id -> value */
  ratings?: Partial<Record<number, number>>;
}

export async function insertCharacteristics(db: Db, rows: { id: number; product_id: number; name: string }[]): Promise<void> {
  for (const c of rows) {
    await db.query('INSERT INTO atelier.characteristics (id, product_id, name) VALUES ($1, $2, $3)', [c.id, c.product_id, c.name]);
  }
}

let ratingId = 1_000_000;

export async function insertReviews(db: Db, rows: ReviewRow[]): Promise<void> {
  for (const r of rows) {
    await db.query(
      `INSERT INTO atelier.reviews (id, product_id, rating, date, summary, body, recommend, reported,
         reviewer_name, reviewer_email, response, helpfulness)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)`,
      [r.id, r.product_id, r.rating, r.date, r.summary ?? `summary ${r.id}`, r.body ?? `body of review ${r.id}`,
       r.recommend ?? true, r.reported ?? false, r.reviewer_name ?? `user${r.id}`, r.reviewer_email ?? `user${r.id}@example.com`,
       r.response ?? null, r.helpfulness ?? 0],
    );
    for (const p of r.photos ?? []) {
      await db.query('INSERT INTO atelier.reviews_photos (id, review_id, url) VALUES ($1, $2, $3)', [p.id, r.id, p.url]);
    }
    for (const [cid, value] of Object.entries(r.ratings ?? {}).filter(([, v]) => v !== undefined)) {
      await db.query('INSERT INTO atelier.characteristic_reviews (id, characteristic_id, review_id, value) VALUES ($1, $2, $3, $4)',
        [ratingId++, Number(cid), r.id, value]);
    }
  }
}

/** Recomputes aggregates and moves the id sequences past the explicit ids used above. */
export async function finishArrange(db: Db): Promise<void> {
  await rebuildAggregates((t, p) => db.query(t, p));
  await advanceSequences((t, p) => db.query(t, p));
}

export const LONG_BODY = 'This is a review body that is comfortably longer than fifty characters.';

export function validReview(overrides: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    product_id: 1,
    rating: 4,
    summary: 'Nice',
    body: LONG_BODY,
    recommend: true,
    name: 'shopper',
    email: 'shopper@example.com',
    photos: [],
    characteristics: {},
    ...overrides,
  };
}

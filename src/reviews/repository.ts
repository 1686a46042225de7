// SQL access for the reviews domain. Long statements live in ./sql/*.sql, read once
// at start-up (a missing file fails the boot); sort orders come from a closed map.
import fs from 'node:fs';
import path from 'node:path';
import { BatchedQuery, type BatchStatement } from '../db/batched-query';
import { PRIMARY_READ, serverGone, type Db, type ReadStamp, type Stamped } from '../db';
import { HttpError, UnavailableError } from '../lib/http-error';
import type { ReplicaSet } from '../db/replicas';
import { fromRoot } from '../lib/paths';
import type { NewReview, Sort } from './schemas';

function loadSql(name: string): string {
  // Compiled code runs from dist/, the .sql files stay in src/.
  return fs.readFileSync(path.join(fromRoot('src', 'reviews', 'sql'), name), 'utf8');
}

// Each order ends with date DESC, id DESC so ties page stably, and matches its index.
export const ORDER_BY: Record<Sort, string> = {
  newest: 'date DESC, id DESC',
  helpful: 'helpfulness DESC, date DESC, id DESC',
  relevant: 'public.review_relevance(helpfulness, date) DESC, date DESC, id DESC',
};

/** One review's JSON object over a row `r` of atelier.reviews (its comment lines dropped). */
export const REVIEW_OBJECT_SQL = loadSql('review-object.sql').replace(/^--.*\n/gm, '').trim();
const listTemplate = loadSql('list-reviews.sql').replaceAll('/*REVIEW*/', REVIEW_OBJECT_SQL);
/** The list statement for a sort order (a batch of requests; see list-reviews.sql). */
export function listSql(sort: Sort): string {
  return listTemplate.replaceAll('/*ORDER*/', ORDER_BY[sort]);
}
const LIST_SQL: Record<Sort, string> = { newest: listSql('newest'), helpful: listSql('helpful'), relevant: listSql('relevant') };
/** Star ratings as the statement's bit mask (bit n: rating n); all five when not given. */
export const ratingMask = (ratings?: number[]) => (ratings ?? [1, 2, 3, 4, 5]).reduce((m, r) => m | (1 << r), 0);

interface ListInput { productId: number; count: number; offset: number; ratings: number }
export interface ListPage { results: string; total: number }

const listStatement: BatchStatement<ListInput, ListPage> = {
  build: (sort, inputs) => ({
    text: LIST_SQL[sort as Sort],
    params: [inputs.map((p) => p.productId), inputs.map((p) => p.count), inputs.map((p) => p.offset), inputs.map((p) => p.ratings)],
    name: `list-${sort}`,
  }),
  outputs: (rows) => rows as ListPage[],
};

const metaStatement: BatchStatement<number, string> = {
  build: (_kind, productIds) => ({ text: META_SQL, params: [productIds], name: 'meta' }),
  outputs: (rows) => (rows as { meta: string }[]).map((r) => r.meta),
};

const META_SQL = loadSql('review-meta.sql');
// Each write names its request in PostgreSQL: the functions (db/migrations/0005) set
// application_name to "atelier-reviews <request id>" for their transaction, so a slow or
// stuck write in pg_stat_activity (or %a in the server log) leads back to the request.
const CREATE_SQL = 'SELECT review_id, created, foreign_characteristics FROM public.create_review($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)';
const HELPFUL_SQL = 'SELECT product_id FROM public.mark_helpful($1, $2)';
const REPORT_SQL = 'SELECT product_id FROM public.report_review($1, $2)';

interface ReadTarget {
  /** Concurrent cold list reads of one sort order share a statement (src/db/batched-query.ts). */
  lists: BatchedQuery<ListInput, ListPage>;
  metas: BatchedQuery<number, string>;
}

export class ReviewRepository {
  private readonly targets = new Map<Db, ReadTarget>();

  /**
   * `writes`: the write lane's pool (its own connections and queue), `db` by default.
   * `replicas`: hot standbys for reads (src/db/replicas.ts), chosen per read; none by default.
   */
  constructor(private readonly db: Db, private readonly writes: Db = db, private readonly replicas?: ReplicaSet) {}

  private target(db: Db): ReadTarget {
    let t = this.targets.get(db);
    if (!t) this.targets.set(db, (t = { lists: new BatchedQuery(db, listStatement), metas: new BatchedQuery(db, metaStatement) }));
    return t;
  }

  /**
   * Runs a read on a standby when one may answer it exactly, else on the primary; `fresh`
   * (the reader's own write) on the primary. A server that fails the read is marked (a
   * standby skipped, the primary believed down until the next probe, only when it is gone
   * rather than overloaded or slow) and the read retried
   * on one not tried yet: the primary while it is believed up, else the standby that has
   * replayed furthest (found in a failover test: a standby failing while the primary was
   * already dead left a read with nowhere to go). A 503 only when every server failed it.
   * The answer carries the stamp of the server that gave it (src/db/read-stamp.ts).
   */
  private async read<T>(fresh: boolean, run: (t: ReadTarget) => Promise<T>): Promise<Stamped<T>> {
    const replicas = this.replicas;
    if (!replicas) return { value: await run(this.target(this.db)), stamp: PRIMARY_READ };
    let chosen: { db: Db; replica?: number; stamp: ReadStamp } | undefined = fresh ? { db: this.db, stamp: PRIMARY_READ } : replicas.choose();
    const tried = new Set<string>();
    for (;;) {
      tried.add(chosen.db.connectionString);
      try {
        return { value: await run(this.target(chosen.db)), stamp: chosen.stamp };
      } catch (err) {
        if (!(err instanceof UnavailableError)) throw err;
        if (chosen.replica !== undefined) replicas.failed(chosen.replica);
        // The primary overloaded here, slow, or fenced by an import is not the primary gone:
        // a standby read then could predate the fence.
        else if (serverGone(err)) replicas.primaryFailed();
        else throw err;
        chosen = replicas.fallback(tried);
        if (!chosen) throw err;
      }
    }
  }

  /**
   * A write on the primary. With standbys configured, a primary that cannot be reached
   * makes the 503 say what still works (reads), and sends reads to the standbys at once.
   */
  private async write<R extends Record<string, unknown>>(text: string, params: unknown[], name: string) {
    try {
      return await this.writes.query<R>(text, params, name);
    } catch (err) {
      if (!this.replicas || !serverGone(err)) throw err;
      this.replicas.primaryFailed();
      if (!this.replicas.readable) throw err;
      throw new UnavailableError('Writes are unavailable: the primary database cannot be reached; reads are served. Retry shortly.', err, 5);
    }
  }

  /**
   * The page's reviews as a JSON array text, ready to be embedded in the response, and how
   * many visible reviews (with those star ratings, when given) the product has on all pages.
   */
  list(productId: number, sort: Sort, count: number, offset: number, ratings?: number[], fresh = false): Promise<Stamped<ListPage>> {
    return this.read(fresh, (t) => t.lists.run(sort, { productId, count, offset, ratings: ratingMask(ratings) }));
  }

  /** The meta object as JSON text (concurrent cold reads share a statement too). */
  meta(productId: number, fresh = false): Promise<Stamped<string>> {
    return this.read(fresh, (t) => t.metas.run('meta', productId));
  }

  /**
   * Creates the review; returns its id and whether it was created now. With an
   * idempotency key already used, nothing is written and the first review's id returns.
   * One round trip: public.create_review (db/migrations/0004) locks, checks, writes.
   */
  async create(r: NewReview, idempotencyKey?: string, requestId = ''): Promise<{ id: number; created: boolean }> {
    const ids = Object.keys(r.characteristics).map(Number).sort((a, b) => a - b);
    const { rows } = await this.write<{ review_id: number; created: boolean; foreign_characteristics: number[] | null }>(CREATE_SQL, [
      r.product_id, r.rating, r.summary, r.body, r.recommend, r.name, r.email,
      r.photos, ids, ids.map((id) => r.characteristics[String(id)]), idempotencyKey ?? null, requestId,
    ], 'create').catch((err: { code?: string; message?: string }) => {
      // A key reused with another request (db/migrations/0005): the database names the key.
      if (err?.code === 'AT422') {
        throw new HttpError(422, `${err.message}; use a new key for a new review.`, [{ field: 'Idempotency-Key', message: 'already used with a different request' }]);
      }
      throw err;
    });
    const { review_id, created, foreign_characteristics: foreign } = rows[0];
    if (foreign) {
      throw new HttpError(400, 'Invalid review: characteristics must belong to the product.',
        foreign.map((id) => ({ field: `characteristics.${id}`, message: `characteristic ${id} does not belong to product ${r.product_id}` })));
    }
    return { id: review_id, created };
  }

  /** Of the characteristic ids given, those that are not the product's (ascending): for a 400 naming every field. */
  async foreignCharacteristics(productId: number, ids: number[]): Promise<number[]> {
    const { rows } = await this.db.query<{ id: number }>(
      'SELECT k.id FROM unnest($2::int[]) AS k(id) WHERE NOT EXISTS (SELECT 1 FROM atelier.characteristics c WHERE c.id = k.id AND c.product_id = $1) ORDER BY 1',
      [productId, ids.filter((id) => id <= 2147483647)], 'foreign-characteristics');
    return rows.map((r) => r.id);
  }

  /** The review's product; undefined when no review has this id (public.mark_helpful, db/migrations/0005). */
  async markHelpful(reviewId: number, requestId = ''): Promise<number | undefined> {
    const res = await this.write<{ product_id: number | null }>(HELPFUL_SQL, [reviewId, requestId], 'helpful');
    return res.rows[0]?.product_id ?? undefined;
  }

  /**
   * Hides the review and subtracts it from the aggregates once; returns its product,
   * undefined when no review has this id. One statement: public.report_review (0005).
   */
  async report(reviewId: number, requestId = ''): Promise<number | undefined> {
    const res = await this.write<{ product_id: number | null }>(REPORT_SQL, [reviewId, requestId], 'report');
    return res.rows[0]?.product_id ?? undefined;
  }
}

// GET /reviews/meta from the host's memory. Every product's aggregates (product_ratings,
// and each characteristic's rating_sum/rating_count) are read from the primary in one
// repeatable-read snapshot into typed arrays (outside V8's heap: 33 bytes a product id and
// 18 a characteristic, 93 MB at full scale) and rendered to exactly the text
// sql/review-meta.sql renders (tests compare the two, product by product).
//
// Exact by the response cache's rule (src/response-cache/response-cache.ts): the load
// begins only while the change feed listens, and every change heard from the moment it
// begins marks its product dirty; a dirty product is read as before (response cache,
// then PostgreSQL) until the next load. A flush, a change of trust or a promotion drops
// the whole table and loads it again; a load overtaken by one is thrown away. So an answer
// from here is one the primary gave after every change this host has heard to that product.
// Why: meta is ~30 % of the storefront's reads, and most of the reads that pass nginx ask
// for a product nobody asked for in minutes, which no response cache can answer
// (docs/benchmarks.md); a table of every product can.
import Cursor from 'pg-cursor';
import type { Db, pg } from '../db';
import { entityTag, type CacheAnswer, type ResponseCache } from '../response-cache/response-cache';

export interface MetaMemoryOptions {
  /** The primary (its pool follows a promotion). */
  db: Db;
  /** Whose change feed and trust this table follows. */
  cache: ResponseCache;
  /** Largest table to hold; a bigger one is not loaded (meta is then read as before). */
  maxBytes: number;
  log?: (line: string) => void;
  /** Load again once this share of the products is dirty (default 0.05). */
  reloadDirtyShare?: number;
  /** After a failed load, try again after this long (default 30 s). */
  retryMs?: number;
}

export interface MetaMemoryStats {
  /** Answers given from memory. */
  served: number;
  /** Reads of a dirty product (answered as before). */
  dirtyReads: number;
  loads: number;
  failedLoads: number;
  /** Products held (0 while nothing is loaded), dirty among them, and bytes held. */
  products: number;
  dirty: number;
  bytes: number;
}

/** One load: the arrays, indexed by product id (ratings: 7 a product; characteristics in CSR form). */
interface Table {
  maxProduct: number;
  /** 1 where product_ratings has a row. */
  hasRatings: Uint8Array;
  /** r1..r5, recommended, not_recommended. */
  ratings: Int32Array;
  /** Characteristics of product p: indexes charStart[p] .. charStart[p + 1] - 1, in id order. */
  charStart: Int32Array;
  charId: Int32Array;
  charName: Uint16Array;
  charSum: Float64Array;
  charCount: Int32Array;
  /** The names, each already a JSON string. */
  names: string[];
  /** Products changed since this load began. */
  dirty: Set<number>;
  bytes: number;
}

const RATING_COLUMNS = 7;
const BYTES_PER_PRODUCT = 1 + RATING_COLUMNS * 4 + 4;
const BYTES_PER_CHARACTERISTIC = 4 + 2 + 8 + 4;
const BATCH_ROWS = 50_000;

export class MetaMemory {
  private table?: Table;
  /** The load under way: the changes it must not miss are gathered here from its start. */
  private loading?: { generation: number; dirty: Set<number> };
  /** Moves on every flush and change of trust: a load begun before is thrown away. */
  private generation = 0;
  private timer?: NodeJS.Timeout;
  private closed = false;
  /** When the last load began (a reload for dirt waits a minute after it). */
  private lastLoadAt = 0;
  private readonly counters = { served: 0, dirtyReads: 0, loads: 0, failedLoads: 0 };
  private readonly log: (line: string) => void;

  constructor(private readonly o: MetaMemoryOptions) {
    this.log = o.log ?? (() => undefined);
    o.cache.onChange((product) => this.changed(product));
  }

  /** Begins the first load (when the change feed listens; else when it does). */
  start(): void {
    this.schedule(0);
  }

  close(): void {
    this.closed = true;
    clearTimeout(this.timer);
    this.table = undefined;
  }

  /** The meta answer for `product` from memory, or undefined: not loaded, untrusted, unknown or dirty. */
  answer(product: number): CacheAnswer | undefined {
    const t = this.table;
    if (!t || !this.o.cache.isTrusted || product > t.maxProduct) return undefined;
    if (t.dirty.has(product)) {
      this.counters.dirtyReads++;
      return undefined;
    }
    this.counters.served++;
    const body = Buffer.from(renderMeta(t, product));
    return { entry: { body, etag: entityTag(body) }, outcome: 'HIT', proven: true };
  }

  stats(): MetaMemoryStats {
    const t = this.table;
    return { ...this.counters, products: t ? t.maxProduct : 0, dirty: t?.dirty.size ?? 0, bytes: t?.bytes ?? 0 };
  }

  private changed(product: number | undefined): void {
    if (product === undefined) {
      // A flush (an import's swap), a change of trust, a promotion: nothing held is proven now.
      this.generation++;
      this.table = undefined;
      this.loading = undefined;
      this.schedule(0);
      return;
    }
    this.loading?.dirty.add(product);
    const t = this.table;
    if (!t) return;
    t.dirty.add(product);
    if (t.dirty.size > Math.max(1000, t.maxProduct * (this.o.reloadDirtyShare ?? 0.05)) && Date.now() - this.lastLoadAt > 60_000) this.schedule(0);
  }

  private schedule(delayMs: number): void {
    if (this.closed || this.loading) return;
    clearTimeout(this.timer);
    this.timer = setTimeout(() => void this.load(), delayMs);
    this.timer.unref();
  }

  private async load(): Promise<void> {
    // Untrusted: the feed may miss changes. The load waits for the flush that trust brings.
    if (this.closed || this.loading || !this.o.cache.isTrusted) return;
    const loading = { generation: this.generation, dirty: new Set<number>() };
    this.loading = loading;
    this.lastLoadAt = Date.now();
    try {
      const table = await this.read(loading.dirty);
      if (!table) return;
      if (loading.generation !== this.generation || this.closed) return;
      this.table = table;
      this.counters.loads++;
      this.log(`meta memory: ${table.maxProduct.toLocaleString('en-US')} products, ${(table.bytes / 2 ** 20).toFixed(0)} MB`);
    } catch (err) {
      this.counters.failedLoads++;
      this.log(`meta memory: load failed (${(err as Error).message}); meta is read from the database, next try in ${(this.o.retryMs ?? 30_000) / 1000} s`);
      if (this.loading === loading) this.loading = undefined;
      if (loading.generation === this.generation) this.schedule(this.o.retryMs ?? 30_000);
    } finally {
      if (this.loading === loading) this.loading = undefined;
    }
  }

  /** Reads every product's aggregates in one snapshot of the primary (undefined: too big to hold). */
  private read(dirty: Set<number>): Promise<Table | undefined> {
    const tooBig = (bytes: number) => {
      if (bytes <= this.o.maxBytes) return false;
      this.log(`meta memory: the table would take ${(bytes / 2 ** 20).toFixed(0)} MB, more than META_MEMORY_MB; meta is read from the database`);
      return true;
    };
    return this.o.db.withDedicatedClient(async (client) => {
      // One snapshot for both tables, taken by the first statement (after `dirty` began).
      await client.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
      try {
        await client.query("SET LOCAL statement_timeout = '300s'");
        const ratedUpTo = (await client.query<{ n: number }>('SELECT coalesce(max(product_id), 0) AS n FROM atelier.product_ratings')).rows[0].n;
        if (tooBig((ratedUpTo + 2) * BYTES_PER_PRODUCT)) return undefined;
        let hasRatings = new Uint8Array(ratedUpTo + 1);
        let ratings = new Int32Array((ratedUpTo + 1) * RATING_COLUMNS);
        await eachBatch(client, 'SELECT product_id, r1, r2, r3, r4, r5, recommended, not_recommended FROM atelier.product_ratings', (rows) => {
          for (const r of rows) {
            const p = r[0] as number;
            hasRatings[p] = 1;
            for (let i = 0; i < RATING_COLUMNS; i++) ratings[p * RATING_COLUMNS + i] = r[i + 1] as number;
          }
        });
        const { rows: [c] } = await client.query<{ max_product: number; n: number }>(
          'SELECT coalesce(max(product_id), 0) AS max_product, count(*)::int AS n FROM atelier.characteristics');
        const maxProduct = Math.max(ratedUpTo, c.max_product);
        const bytes = (maxProduct + 2) * BYTES_PER_PRODUCT + c.n * BYTES_PER_CHARACTERISTIC;
        if (tooBig(bytes)) return undefined;
        if (maxProduct > ratedUpTo) {
          // Products with characteristics past the last one with ratings.
          const grown = new Int32Array((maxProduct + 1) * RATING_COLUMNS);
          grown.set(ratings);
          ratings = grown;
          const flags = new Uint8Array(maxProduct + 1);
          flags.set(hasRatings);
          hasRatings = flags;
        }
        const t: Table = {
          maxProduct, bytes, dirty, hasRatings, ratings,
          charStart: new Int32Array(maxProduct + 2),
          charId: new Int32Array(c.n),
          charName: new Uint16Array(c.n),
          charSum: new Float64Array(c.n),
          charCount: new Int32Array(c.n),
          names: [],
        };
        const nameIndex = new Map<string, number>();
        let n = 0;
        let last = 0;
        await eachBatch(client, 'SELECT product_id, id, name, rating_sum::float8, rating_count FROM atelier.characteristics ORDER BY product_id, id', (rows) => {
          for (const r of rows) {
            const p = r[0] as number;
            // Products between the last one seen and this one have none: their range is empty.
            for (; last < p; last++) t.charStart[last + 1] = n;
            const name = r[2] as string;
            let k = nameIndex.get(name);
            if (k === undefined) {
              nameIndex.set(name, (k = t.names.length));
              t.names.push(JSON.stringify(name));
            }
            if (n >= t.charId.length || k > 0xffff) throw new Error('more characteristics (or names) than the table was sized for');
            t.charId[n] = r[1] as number;
            t.charName[n] = k;
            t.charSum[n] = r[3] as number;
            t.charCount[n] = r[4] as number;
            n++;
          }
        });
        for (; last <= maxProduct; last++) t.charStart[last + 1] = n;
        return t;
      } finally {
        await client.query('ROLLBACK').catch(() => undefined);
      }
    });
  }
}

/** Runs `sql` and hands its rows to `fn` in batches (arrays of values), through a cursor. */
async function eachBatch(client: pg.Client, sql: string, fn: (rows: unknown[][]) => void): Promise<void> {
  const cursor = client.query(new Cursor(sql, [], { rowMode: 'array' }));
  try {
    for (;;) {
      const rows = (await cursor.read(BATCH_ROWS)) as unknown[][];
      if (rows.length === 0) return;
      fn(rows);
    }
  } finally {
    await cursor.close();
  }
}

const RATING_KEYS = ['"1":', '"2":', '"3":', '"4":', '"5":'];

/** The meta object of `product`, byte for byte as sql/review-meta.sql renders it. */
function renderMeta(t: Table, product: number): string {
  let ratings = '{}';
  let recommended = '{}';
  if (t.hasRatings[product]) {
    const base = product * RATING_COLUMNS;
    const r: string[] = [];
    for (let i = 0; i < 5; i++) if (t.ratings[base + i] !== 0) r.push(`${RATING_KEYS[i]}"${t.ratings[base + i]}"`);
    ratings = `{${r.join(',')}}`;
    const rec: string[] = [];
    if (t.ratings[base + 6] !== 0) rec.push(`"false":"${t.ratings[base + 6]}"`);
    if (t.ratings[base + 5] !== 0) rec.push(`"true":"${t.ratings[base + 5]}"`);
    recommended = `{${rec.join(',')}}`;
  }
  let characteristics = '{}';
  const from = t.charStart[product];
  const to = t.charStart[product + 1];
  if (to > from) {
    const c: string[] = [];
    for (let i = from; i < to; i++) {
      const count = t.charCount[i];
      c.push(`${t.names[t.charName[i]]} : {"id" : ${t.charId[i]}, "value" : ${count === 0 ? 'null' : `"${numericRatio(t.charSum[i], count)}"`}}`);
    }
    characteristics = `{ ${c.join(', ')} }`;
  }
  return `{"product_id" : "${product}", "ratings" : ${ratings}, "recommended" : ${recommended}, "characteristics" : ${characteristics}}`;
}

const POW10: bigint[] = [];
const pow10 = (n: number) => (POW10[n] ??= 10n ** BigInt(n));

/** Weight and first digit of a positive integer in PostgreSQL's numeric base (10,000). */
function nbase(n: bigint): { weight: number; first: bigint } {
  let weight = 0;
  while (n >= 10000n) {
    n /= 10000n;
    weight++;
  }
  return { weight, first: n };
}

/**
 * `sum::numeric / count::numeric` as PostgreSQL prints it (count > 0, sum ≥ 0): the result
 * scale of numeric division (select_div_scale: at least 16 significant digits, by base-10,000
 * weights) and the quotient rounded half away from zero to that scale.
 */
export function numericRatio(sum: number, count: number): string {
  const a = BigInt(sum);
  const b = BigInt(count);
  const { weight: w1, first: f1 } = a > 0n ? nbase(a) : { weight: 0, first: 0n };
  const { weight: w2, first: f2 } = nbase(b);
  let qweight = w1 - w2;
  if (f1 <= f2) qweight--;
  const scale = Math.min(Math.max(16 - qweight * 4, 0), 1000);
  const scaled = a * pow10(scale);
  let q = scaled / b;
  if ((scaled % b) * 2n >= b) q++;
  const digits = q.toString().padStart(scale + 1, '0');
  return scale === 0 ? digits : `${digits.slice(0, -scale)}.${digits.slice(-scale)}`;
}

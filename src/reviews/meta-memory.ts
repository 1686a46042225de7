// GET /reviews/meta from the host's memory. Every product's aggregates (product_ratings,
// and each characteristic's rating_sum/rating_count) are read from the primary into typed
// arrays (outside V8's heap: 33 bytes a product id and 18 a characteristic, 89 MiB at full
// scale) and rendered to exactly the text sql/review-meta.sql renders (tests compare the
// two, product by product).
//
// Exact by the response cache's rule (src/response-cache/response-cache.ts): a load begins
// only while the change feed listens, and every change heard from the moment it begins
// marks its product dirty; each of its statements starts after that moment, so it holds
// every change heard before (and each product is read by one statement), and a dirty
// product is read as before (response cache, then
// PostgreSQL) until the next load. A flush, a change of trust or a promotion drops the whole
// table and abandons a load under way (the next begins once it has stopped); a table is
// answered from for at most `maxAgeMs` (a backstop, as the response cache's TTL is). So an
// answer from here is one the primary gave after every change this host has heard to that
// product.
// Why: meta is ~30 % of the storefront's reads, and most of the reads that pass nginx ask
// for a product nobody asked for in minutes (docs/benchmarks.md), which no response cache
// can answer; a table of every product can.
// The load reads a range of product ids a statement (both tables in one statement, so each
// product comes from one snapshot), through the pool (its admission queue and statement
// timeout), never in one long statement or transaction: an import's swap, which must lock
// these tables, waits for one range at most.
import type { Db } from '../db';
import { entityTag, type CacheAnswer, type ResponseCache } from '../response-cache/response-cache';

export interface MetaMemoryOptions {
  /** The primary (its pool follows a promotion). */
  db: Db;
  /**
   * Whose change feed and trust this table follows: a cache built untrusted, trusted only
   * while its feed listens (src/response-cache/invalidation-feed.ts).
   */
  cache: ResponseCache;
  /** Largest table to hold; a bigger one is not loaded (meta is then read as before). */
  maxBytes: number;
  /** Longest a table is answered from (META_MEMORY_MAX_AGE_S: the backstop behind the exact invalidation); reloaded at 80 % of it. */
  maxAgeMs: number;
  log?: (line: string) => void;
  /** Load again once this share of the products (and at least reloadDirtyMin) is dirty (default 0.05, 1,000). */
  reloadDirtyShare?: number;
  reloadDirtyMin?: number;
  /** After a failed load, try again after this long (default 30 s). */
  retryMs?: number;
  /**
   * Loads begin at most this often (default 60 s). A load costs the host and the primary
   * seconds of CPU; a change feed that drops and returns again and again under overload
   * must not turn each return into one more load.
   */
  minLoadIntervalMs?: number;
  /** A load after a flush waits a random delay up to this (default 5 s), so hosts do not all load at once. */
  jitterMs?: number;
  /** Product ids a statement of the load reads (default 20,000). */
  pageProducts?: number;
}

export interface MetaMemoryStats {
  /** Answers given from memory. */
  served: number;
  /** Reads of a dirty product (answered as before). */
  dirtyReads: number;
  loads: number;
  failedLoads: number;
  /** Loads abandoned for a flush, a change of trust or a close. */
  abandonedLoads: number;
  /** The highest product id held (0 while nothing is loaded), dirty products among them, and bytes held. */
  maxProduct: number;
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
  /** When its load began (performance.now()). */
  loadedAt: number;
}

/** A load under way: the changes it must not miss are gathered from its start. */
interface Loading {
  dirty: Set<number>;
  /** Set by a flush, a change of trust or close(): its pages stop, its table is not kept. */
  abandoned: boolean;
}

/** Thrown inside a load that was abandoned (not a failure). */
class Abandoned extends Error {}
/** A table this host will not hold (too big, too many names): not retried until the next flush. */
class WillNotHold extends Error {}

const RATING_COLUMNS = 7;
const BYTES_PER_PRODUCT = 1 + RATING_COLUMNS * 4 + 4;
const BYTES_PER_CHARACTERISTIC = 4 + 2 + 8 + 4;
/**
 * Product ids are dense (the export's run 1..N); a POST may name any id up to 2^31 - 1. The
 * table covers ids up to max(2^20, twice the products with ratings); products above that
 * are read as before, so one stray id cannot size (or switch off) the table.
 */
const DENSE_FLOOR = 2 ** 20;

export class MetaMemory {
  private table?: Table;
  private loading?: Loading;
  private timer?: NodeJS.Timeout;
  private started = false;
  private closed = false;
  /** When the last load began (the next waits minLoadIntervalMs after it). */
  private lastLoadAt = -Infinity;
  /** A flush asked for a load while one was being abandoned: begin it once that one stops. */
  private reloadAfterAbandon = false;
  private readonly counters = { served: 0, dirtyReads: 0, loads: 0, failedLoads: 0, abandonedLoads: 0 };
  private readonly log: (line: string) => void;

  constructor(private readonly o: MetaMemoryOptions) {
    this.log = o.log ?? (() => undefined);
    o.cache.onChange((product) => this.changed(product));
  }

  /** Loads from now on (the first once the change feed listens). */
  start(): void {
    this.started = true;
    this.schedule(0);
  }

  close(): void {
    this.closed = true;
    clearTimeout(this.timer);
    this.table = undefined;
    if (this.loading) this.loading.abandoned = true;
  }

  /** The meta answer for `product` from memory, or undefined: not loaded, too old, untrusted, not held, or dirty. */
  answer(product: number): CacheAnswer | undefined {
    const t = this.current();
    if (!t || !this.o.cache.isTrusted || product > t.maxProduct) return undefined;
    if (t.dirty.has(product)) {
      this.counters.dirtyReads++;
      return undefined;
    }
    const text = renderMeta(t, product);
    if (text === undefined) return undefined;
    this.counters.served++;
    const body = Buffer.from(text);
    return { entry: { body, etag: entityTag(body) }, outcome: 'HIT', proven: true };
  }

  stats(): MetaMemoryStats {
    const t = this.current();
    return { ...this.counters, maxProduct: t ? t.maxProduct : 0, dirty: t?.dirty.size ?? 0, bytes: t?.bytes ?? 0 };
  }

  /** The table, unless it has aged out (then it is dropped: its metrics say 0, and a load is due). */
  private current(): Table | undefined {
    const t = this.table;
    if (t && performance.now() - t.loadedAt > this.o.maxAgeMs) {
      this.table = undefined;
      this.schedule(0);
      return undefined;
    }
    return t;
  }

  private changed(product: number | undefined): void {
    if (product === undefined) {
      // A flush (an import's swap), a change of trust, a promotion: nothing held is proven now.
      this.table = undefined;
      if (this.loading) {
        this.loading.abandoned = true;
        this.reloadAfterAbandon = true;
      } else {
        this.schedule(Math.random() * (this.o.jitterMs ?? 5000));
      }
      return;
    }
    this.loading?.dirty.add(product);
    const t = this.table;
    if (!t) return;
    t.dirty.add(product);
    if (t.dirty.size > Math.max(this.o.reloadDirtyMin ?? 1000, t.maxProduct * (this.o.reloadDirtyShare ?? 0.05))) this.schedule(0);
  }

  /** A load after `delayMs`, and no sooner than minLoadIntervalMs after the last one began. */
  private schedule(delayMs: number): void {
    if (!this.started || this.closed || this.loading) return;
    clearTimeout(this.timer);
    const wait = this.waitFor(delayMs);
    this.timer = setTimeout(() => {
      this.timer = undefined;
      void this.load();
    }, wait);
    this.timer.unref();
  }

  /** How long a load asked for in `delayMs` waits, loads being spaced. */
  private waitFor(delayMs: number): number {
    return Math.max(delayMs, this.lastLoadAt + (this.o.minLoadIntervalMs ?? 60_000) - performance.now());
  }

  private async load(): Promise<void> {
    // Untrusted: the feed may miss changes. The load waits for the flush that trust brings.
    if (this.closed || this.loading || !this.o.cache.isTrusted) return;
    const loading: Loading = { dirty: new Set(), abandoned: false };
    this.loading = loading;
    this.reloadAfterAbandon = false;
    const began = (this.lastLoadAt = performance.now());
    let next: number | undefined;
    try {
      const table = await this.read(loading, began);
      if (loading.abandoned) throw new Abandoned();
      this.table = table;
      this.counters.loads++;
      this.log(`meta memory: product ids up to ${table.maxProduct.toLocaleString('en-US')}, ${(table.bytes / 2 ** 20).toFixed(0)} MiB, loaded in ${((performance.now() - began) / 1000).toFixed(1)} s`);
      // Reloaded before it is too old to answer from.
      next = this.o.maxAgeMs * 0.8;
    } catch (err) {
      if (err instanceof Abandoned || loading.abandoned) {
        this.counters.abandonedLoads++;
      } else if (err instanceof WillNotHold) {
        this.log(`meta memory: ${err.message}; meta is read from the database${this.table ? ' once the table held now ages out' : ''} (no load is tried again before a flush)`);
      } else {
        this.counters.failedLoads++;
        next = this.o.retryMs ?? 30_000;
        this.log(`meta memory: load failed (${(err as Error).message}); meta is read from the database${this.table ? ' for products changed since the last load' : ''}, next try in ${(this.waitFor(next) / 1000).toFixed(0)} s`);
      }
    } finally {
      this.loading = undefined;
    }
    if (this.reloadAfterAbandon) this.schedule(Math.random() * (this.o.jitterMs ?? 5000));
    else if (next !== undefined) this.schedule(next);
  }

  /**
   * Every product's aggregates, a range of product ids at a time: each range is one
   * statement over both tables (so each product comes from one snapshot, taken after
   * `loading` began), and no statement scans a whole table.
   */
  private async read(loading: Loading, began: number): Promise<Table> {
    const db = this.o.db;
    const span = Math.max(1, this.o.pageProducts ?? 20_000);
    // Sizes from the planner's estimates and index ends (no scan): the arrays grow if short.
    const { rows: [size] } = await db.query<{ rated: number; characteristics: number }>(
      `SELECT greatest((SELECT reltuples FROM pg_class WHERE oid = 'atelier.product_ratings'::regclass), 0)::bigint AS rated,
              greatest((SELECT reltuples FROM pg_class WHERE oid = 'atelier.characteristics'::regclass), 0)::bigint AS characteristics`);
    const cap = Math.max(DENSE_FLOOR, 2 * Number(size.rated));
    const { rows: [top] } = await db.query<{ max: number }>(
      'SELECT greatest((SELECT max(product_id) FROM atelier.product_ratings WHERE product_id <= $1), (SELECT max(product_id) FROM atelier.characteristics WHERE product_id <= $1), 0) AS max', [cap]);
    const maxProduct = top.max;
    const estimate = (maxProduct + 2) * BYTES_PER_PRODUCT + Number(size.characteristics) * BYTES_PER_CHARACTERISTIC;
    if (estimate > this.o.maxBytes) throw new WillNotHold(`the table would take ${(estimate / 2 ** 20).toFixed(0)} MiB, more than META_MEMORY_MB`);
    let room = Math.ceil(Number(size.characteristics) * 1.01) + 16;
    const bytes = () => (maxProduct + 2) * BYTES_PER_PRODUCT + room * BYTES_PER_CHARACTERISTIC;
    const t: Table = {
      maxProduct, bytes: bytes(), dirty: loading.dirty, loadedAt: began,
      hasRatings: new Uint8Array(maxProduct + 1),
      ratings: new Int32Array((maxProduct + 1) * RATING_COLUMNS),
      charStart: new Int32Array(maxProduct + 2),
      charId: new Int32Array(room),
      charName: new Uint16Array(room),
      charSum: new Float64Array(room),
      charCount: new Int32Array(room),
      names: [],
    };
    const nameIndex = new Map<string, number>();
    let n = 0;
    for (let lo = 0; lo < maxProduct; lo += span) {
      if (loading.abandoned) throw new Abandoned();
      const hi = Math.min(maxProduct, lo + span);
      // Each range's rows come as bytea of fixed-width big-endian numbers (not a JS object
      // per row: that cost a host ~6 s of CPU at full scale); characteristics name their
      // name by its place in the range's own list of names.
      const { rows: [page] } = await db.query<{ rn: number; rb: Buffer | null; names: string[]; cn: number; cb: Buffer | null }>(
        `WITH c AS MATERIALIZED (SELECT product_id, id, name, rating_sum, rating_count FROM atelier.characteristics WHERE product_id > $1 AND product_id <= $2),
              named AS (SELECT coalesce(array_agg(DISTINCT name COLLATE "C"), '{}') AS names FROM c)
         SELECT r.n AS rn, r.b AS rb, named.names, (SELECT count(*)::int FROM c) AS cn,
                (SELECT string_agg(int4send(c.product_id) || int4send(c.id) || int8send(c.rating_sum) || int4send(c.rating_count)
                                   || int4send(array_position(named.names, c.name)), ''::bytea ORDER BY c.product_id, c.id) FROM c) AS cb
         FROM named, (SELECT count(*)::int AS n, string_agg(int4send(product_id) || int4send(r1) || int4send(r2) || int4send(r3) || int4send(r4)
                                                   || int4send(r5) || int4send(recommended) || int4send(not_recommended), ''::bytea) AS b
                      FROM atelier.product_ratings WHERE product_id > $1 AND product_id <= $2) r`,
        [lo, hi], 'meta-memory-range');
      const rb = page.rb ?? Buffer.alloc(0);
      const cb = page.cb ?? Buffer.alloc(0);
      if (rb.length !== page.rn * 32 || cb.length !== page.cn * 24) throw new Error('a range came back malformed');
      const rv = new DataView(rb.buffer, rb.byteOffset, rb.length);
      for (let o = 0; o < rb.length; o += 32) {
        const p = rv.getInt32(o);
        if (p <= lo || p > hi) throw new Error('a ratings row came back outside its range');
        t.hasRatings[p] = 1;
        for (let i = 0; i < RATING_COLUMNS; i++) t.ratings[p * RATING_COLUMNS + i] = rv.getInt32(o + 4 + i * 4);
      }
      const local = page.names.map((name) => {
        let k = nameIndex.get(name);
        if (k === undefined) {
          if (t.names.length === 0x10000) throw new WillNotHold('more than 65,536 characteristic names');
          nameIndex.set(name, (k = t.names.length));
          t.names.push(JSON.stringify(name));
        }
        return k;
      });
      const cv = new DataView(cb.buffer, cb.byteOffset, cb.length);
      let last = lo;
      let lastId = 0;
      for (let o = 0; o < cb.length; o += 24) {
        const p = cv.getInt32(o);
        const id = cv.getInt32(o + 4);
        if (p <= lo || p > hi || p < last || (p === last && id <= lastId)) throw new Error('a characteristics row came back out of order');
        // Products between the last one seen and this one have none: their range is empty.
        for (; last < p; last++) t.charStart[last + 1] = n;
        lastId = id;
        if (n === room) {
          room = Math.ceil(room * 1.25);
          if (bytes() > this.o.maxBytes) throw new Error('the characteristics grew past META_MEMORY_MB while loading');
          t.charId = grow(t.charId, room);
          t.charName = grow(t.charName, room);
          t.charSum = grow(t.charSum, room);
          t.charCount = grow(t.charCount, room);
          t.bytes = bytes();
        }
        t.charId[n] = id;
        t.charName[n] = local[cv.getInt32(o + 20) - 1];
        t.charSum[n] = Number(cv.getBigInt64(o + 8));
        t.charCount[n] = cv.getInt32(o + 16);
        n++;
      }
      for (; last < hi; last++) t.charStart[last + 1] = n;
    }
    t.charStart[maxProduct + 1] = n;
    return t;
  }
}

function grow<A extends Int32Array | Uint16Array | Float64Array>(a: A, length: number): A {
  const b = new (a.constructor as new (n: number) => A)(length);
  b.set(a);
  return b;
}

const RATING_KEYS = ['"1":', '"2":', '"3":', '"4":', '"5":'];

/** The meta object of `product`, byte for byte as sql/review-meta.sql renders it (undefined: a value only PostgreSQL prints). */
function renderMeta(t: Table, product: number): string | undefined {
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
      // numericRatio is exact for sum >= 0 and count > 0 (what writes keep); anything else is PostgreSQL's to print.
      if (count < 0 || t.charSum[i] < 0 || !Number.isSafeInteger(t.charSum[i])) return undefined;
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

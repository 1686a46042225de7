// GET /reviews/meta from the host's memory. Every product's aggregates (product_ratings,
// and each characteristic's rating_sum/rating_count) are read from the primary into typed
// arrays (outside V8's heap: 33 bytes a product id and 18 a characteristic, 89 MiB at full
// scale) and rendered to exactly the text sql/review-meta.sql renders (tests compare the
// two, product by product).
//
// Exact, loaded, dropped and aged by the rules of ./memory-table.ts (shared with the
// reviews' table, ./review-memory.ts).
// Why: meta is ~30 % of the storefront's reads, and most of the reads that pass nginx ask
// for a product nobody asked for in minutes (docs/benchmarks.md), which no response cache
// can answer; a table of every product can.
// The load reads a range of product ids a statement (both tables in one statement, so each
// product comes from one snapshot), through the pool (its admission queue and statement
// timeout), never in one long statement or transaction: an import's swap, which must lock
// these tables, waits for one range at most.
import type { Db } from '../db';
import { entityTag, type CacheAnswer } from '../response-cache/response-cache';
import { Abandoned, loadPause, MemoryTable, tableExtent, WillNotHold, type HeldTable, type Install, type Loading, type MemoryTableOptions, type MemoryTableStats } from './memory-table';

export interface MetaMemoryOptions extends MemoryTableOptions {
  /** The primary (its pool follows a promotion). */
  db: Db;
  /** Product ids a statement of the load reads (default 20,000). */
  pageProducts?: number;
  /**
   * A changed product's aggregates are read back by its next meta read (default true;
   * META_MEMORY_READ_BACK), and by the sweep once quiet for sweepAfterMs
   * (META_MEMORY_READ_BACK_AFTER_S); off: neither, only loads fill the table.
   */
  readBack?: boolean;
}

export type MetaMemoryStats = MemoryTableStats;

/** One load: the arrays, indexed by product id (ratings: 7 a product; characteristics in CSR form). */
interface Table extends HeldTable {
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
}

const RATING_COLUMNS = 7;
const BYTES_PER_PRODUCT = 1 + RATING_COLUMNS * 4 + 4;
const BYTES_PER_CHARACTERISTIC = 4 + 2 + 8 + 4;

export class MetaMemory {
  private readonly table: MemoryTable<Table>;

  constructor(private readonly o: MetaMemoryOptions) {
    this.table = new MemoryTable(o, 'meta memory', (loading, began) => this.read(loading, began),
      o.readBack === false ? undefined : (t, products) => this.refresh(t, products));
  }

  /** Loads from now on (the first once the change feed listens). */
  start(): void {
    this.table.start();
  }

  close(): void {
    this.table.close();
  }

  /**
   * The meta answer for `product` from memory, or undefined: not loaded, too old, untrusted,
   * not held, or dirty (counted as a dirty read unless `countDirty` is false: see readBack).
   */
  answer(product: number, countDirty = true): CacheAnswer | undefined {
    const t = this.table.clean(product, countDirty);
    const text = t && renderMeta(t, product);
    if (text === undefined) return undefined;
    this.table.served();
    const body = Buffer.from(text);
    return { entry: { body, etag: entityTag(body) }, outcome: 'HIT', proven: true };
  }

  /**
   * For a reader that found `product` dirty (answer(product, false)): has its aggregates read
   * back now (memory-table.ts's readBack, shared with the other products read back at that
   * moment). Resolves once that has ended, or will not happen; the reader then asks
   * answer(product) again. Undefined when none will be tried.
   */
  readBack(product: number): Promise<void> | undefined {
    return this.table.readBack(product);
  }

  stats(): MetaMemoryStats {
    return this.table.stats();
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
    const { maxProduct, rows: characteristics } = await tableExtent(db, 'characteristics');
    const estimate = (maxProduct + 2) * BYTES_PER_PRODUCT + characteristics * BYTES_PER_CHARACTERISTIC;
    if (estimate > this.o.maxBytes) throw new WillNotHold(`the table would take ${(estimate / 2 ** 20).toFixed(0)} MiB, more than META_MEMORY_MB`);
    let room = Math.ceil(characteristics * 1.01) + 16;
    const bytes = () => (maxProduct + 2) * BYTES_PER_PRODUCT + room * BYTES_PER_CHARACTERISTIC;
    const t: Table = {
      maxProduct, bytes: bytes(), dirty: loading.dirty, loadedAt: began,
      describe: () => `product ids up to ${maxProduct.toLocaleString('en-US')}`,
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
      const asked = performance.now();
      const { rows: [page] } = await db.query<AggregateRows>(RANGE_SQL, [lo, hi], 'meta-memory-range');
      await loadPause(performance.now() - asked, loading.duty());
      if (loading.abandoned) throw new Abandoned();
      const { rb, cb } = checked(page);
      const rv = new DataView(rb.buffer, rb.byteOffset, rb.length);
      for (let o = 0; o < rb.length; o += RATINGS_RECORD) {
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
      for (let o = 0; o < cb.length; o += CHARACTERISTIC_RECORD) {
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

  /**
   * Reads `products`' aggregates afresh (one statement) and returns for each an install into
   * `t`: 'until-load', leaving it dirty, when its characteristics are no longer the ones the
   * table holds for it (added, removed or renamed since the load: only a load lays them out).
   */
  private async refresh(t: Table, products: number[]): Promise<Map<number, () => Install>> {
    const { rows: [page] } = await this.o.db.query<AggregateRows>(PRODUCTS_SQL, [products], 'meta-memory-products');
    const { rb, cb } = checked(page);
    const asked = new Set(products);
    const ratings = new Map<number, Int32Array>();
    const rv = new DataView(rb.buffer, rb.byteOffset, rb.length);
    for (let o = 0; o < rb.length; o += RATINGS_RECORD) {
      const p = rv.getInt32(o);
      if (!asked.has(p)) throw new Error('a ratings row came back for a product not asked for');
      ratings.set(p, Int32Array.from({ length: RATING_COLUMNS }, (_, i) => rv.getInt32(o + 4 + i * 4)));
    }
    const characteristics = new Map<number, { id: number; name: string; sum: number; count: number }[]>();
    const cv = new DataView(cb.buffer, cb.byteOffset, cb.length);
    for (let o = 0; o < cb.length; o += CHARACTERISTIC_RECORD) {
      const p = cv.getInt32(o);
      if (!asked.has(p)) throw new Error('a characteristics row came back for a product not asked for');
      let list = characteristics.get(p);
      if (!list) characteristics.set(p, (list = []));
      list.push({ id: cv.getInt32(o + 4), name: JSON.stringify(page.names[cv.getInt32(o + 20) - 1]), sum: Number(cv.getBigInt64(o + 8)), count: cv.getInt32(o + 16) });
    }
    const installs = new Map<number, () => Install>();
    for (const product of products) {
      installs.set(product, () => {
        const from = t.charStart[product];
        const read = characteristics.get(product) ?? [];
        if (read.length !== t.charStart[product + 1] - from) return 'until-load';
        // In id order, as the load lays them out.
        for (let k = 0; k < read.length; k++) if (t.charId[from + k] !== read[k].id || t.names[t.charName[from + k]] !== read[k].name) return 'until-load';
        for (let k = 0; k < read.length; k++) {
          t.charSum[from + k] = read[k].sum;
          t.charCount[from + k] = read[k].count;
        }
        const r = ratings.get(product);
        t.hasRatings[product] = r ? 1 : 0;
        for (let i = 0; i < RATING_COLUMNS; i++) t.ratings[product * RATING_COLUMNS + i] = r ? r[i] : 0;
        return true;
      });
    }
    return installs;
  }
}

/** One statement's aggregates: product_ratings rows and characteristics rows as bytea records. */
interface AggregateRows { rn: number; rb: Buffer | null; names: string[]; cn: number; cb: Buffer | null }
/** A product_ratings record: product id, r1..r5, recommended, not_recommended (int4 each). */
const RATINGS_RECORD = 32;
/** A characteristics record: product id, id, rating_sum (int8), rating_count, the name's place in `names` (1-based). */
const CHARACTERISTIC_RECORD = 24;

/**
 * The aggregates of the products `where` picks (of product_id), in one snapshot: each row as
 * fixed-width big-endian numbers in one bytea (not a JS object per row: that cost a host ~6 s
 * of CPU at full scale); characteristics name their name by its place in the statement's own
 * list of names, and come in (product_id, id) order.
 */
const aggregatesSql = (where: string) =>
  `WITH c AS MATERIALIZED (SELECT product_id, id, name, rating_sum, rating_count FROM atelier.characteristics WHERE ${where}),
        named AS (SELECT coalesce(array_agg(DISTINCT name COLLATE "C"), '{}') AS names FROM c)
   SELECT r.n AS rn, r.b AS rb, named.names, (SELECT count(*)::int FROM c) AS cn,
          (SELECT string_agg(int4send(c.product_id) || int4send(c.id) || int8send(c.rating_sum) || int4send(c.rating_count)
                             || int4send(array_position(named.names, c.name)), ''::bytea ORDER BY c.product_id, c.id) FROM c) AS cb
   FROM named, (SELECT count(*)::int AS n, string_agg(int4send(product_id) || int4send(r1) || int4send(r2) || int4send(r3) || int4send(r4)
                                             || int4send(r5) || int4send(recommended) || int4send(not_recommended), ''::bytea) AS b
                FROM atelier.product_ratings WHERE ${where}) r`;
/** A range of product ids ($1, $2], for a load. */
const RANGE_SQL = aggregatesSql('product_id > $1 AND product_id <= $2');
/** The product ids $1, for a read-back. */
export const PRODUCTS_SQL = aggregatesSql('product_id = ANY($1::integer[])');

function checked(page: AggregateRows): { rb: Buffer; cb: Buffer } {
  const rb = page.rb ?? Buffer.alloc(0);
  const cb = page.cb ?? Buffer.alloc(0);
  if (rb.length !== page.rn * RATINGS_RECORD || cb.length !== page.cn * CHARACTERISTIC_RECORD) throw new Error('aggregates came back malformed');
  return { rb, cb };
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

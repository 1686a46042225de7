// GET /reviews from the host's memory. Every visible review is read from the primary once a
// load: its JSON object as PostgreSQL renders it for sql/list-reviews.sql (photos included),
// its star rating, and its place in each sort order among its product's reviews; with each
// product's rating counts (product_ratings, for X-Total-Count). A page is then those
// objects joined as json_agg joins them, byte for byte the text the list statement returns
// (tests compare the two, product by product, sort by sort, page by page).
//
// Exact, loaded, dropped and aged by the rules of ./memory-table.ts (shared with meta in
// memory): a product changed since its load began is read as before (the response cache,
// then PostgreSQL) until the next load, or until a read of it has it read back into the table
// (readBack: products with at most refreshMaxReviews reviews; the read is then answered from
// the table), or until no change has touched it for sweepAfterMs (memory-table.ts's sweep: read
// back in the background, a few at a time). Read-backs follow reads, and quiet, not writes:
// reading back every product written, 50 ms after each write, was a third of PostgreSQL's CPU
// in the storefront mix, mostly for products nobody read before their next write
// (docs/benchmarks.md, eighth session); a product written again and again is never quiet.
// A product read back goes into its slots of the table when it fits (placeInTable), else into
// arrays of its own.
// Why: most reads that pass nginx ask for a list page nobody asked for in minutes
// (docs/benchmarks.md), so neither nginx nor a response cache answers them: each was a
// statement on PostgreSQL, the one part of the cluster that does not grow by adding hosts.
// Memory: the objects' bytes (the JSON texts, ~480 bytes a review at full scale) in the
// load's own buffers, outside V8's heap, plus 23 bytes a review and 24 a product id of
// typed arrays: ~3 GiB at full scale (docs/architecture.md). A table larger than maxBytes is
// not held.
// The load reads a range of product ids a statement (sized to ~20,000 reviews; reviews and
// rating counts in one statement, so each product comes from one snapshot), through the pool, never in one long
// statement or transaction.
import type { Db } from '../db';
import { entityTag, type CacheAnswer } from '../response-cache/response-cache';
import { Abandoned, loadPause, MemoryTable, tableExtent, WillNotHold, type HeldTable, type Loading, type MemoryTableOptions, type MemoryTableStats } from './memory-table';
import { ORDER_BY, REVIEW_OBJECT_SQL } from './repository';
import { SORTS, type Sort } from './schemas';

export interface ReviewMemoryOptions extends MemoryTableOptions {
  /** The primary (its pool follows a promotion). */
  db: Db;
  /**
   * Reviews a statement of the load aims at (default 20,000: ~10 MB of text, a fraction of a
   * second): each range of product ids is sized from the reviews per product of the one
   * before (popular products have many), starting at 16 product ids.
   */
  pageReviews?: number;
  /**
   * A changed product is read back for a reader (rather than left to the database until the
   * next load) only if the table holds at most this many of its reviews (default 64; 0:
   * never). A read-back renders every review of the product: for the products with
   * thousands it would cost PostgreSQL more than the page the reader asked for.
   */
  refreshMaxReviews?: number;
}

export type ReviewMemoryStats = MemoryTableStats;

/** How many of `product`'s reviews the table holds (as loaded, or as last read back). */
const heldReviews = (t: Table, product: number) => t.fresh.get(product)?.n ?? t.start[product + 1] - t.start[product];

/** One load: reviews in CSR form by product (in review id order), with each sort order's permutation. */
interface Table extends HeldTable {
  /** Reviews of product p: indexes start[p] .. start[p + 1] - 1. */
  start: Int32Array;
  rating: Uint8Array;
  /** Per sort (SORTS order): orders[s][start[p] + k] is the index of product p's k-th review in that order. */
  orders: Int32Array[];
  /** Where each review's JSON object is: which of `texts`, at which byte, how long. */
  text: Uint16Array;
  offset: Uint32Array;
  length: Uint32Array;
  texts: Buffer[];
  /** product_ratings r1..r5 by product id (0 without a row, as the statement's coalesce says). */
  counts: Int32Array;
  /** Products read again since the load that did not fit their slots above (placeInTable): these answer from here. */
  fresh: Map<number, Fresh>;
}

const BYTES_PER_REVIEW = 1 + SORTS.length * 4 + 2 + 4 + 4;
const BYTES_PER_PRODUCT = 4 + 5 * 4;
/** A product read again: its counts and nine small arrays and their objects on the heap (about). */
const FRESH_OVERHEAD = 5 * 4 + 9 * 100;
/** Bytes of one review's record in a range's `rb` (product id, rating, three ranks, text length). */
const RECORD = 24;
/** The rating mask of all five star ratings (bits 1..5). */
const ALL_RATINGS = 62;
/** json_agg's separator between json elements (a composite or an array element would also get a newline). */
const SEPARATOR = Buffer.from(', ');

const rank = (sort: Sort) => `row_number() OVER (PARTITION BY r.product_id ORDER BY ${ORDER_BY[sort]})`;
/** The products' visible reviews and rating counts, for the products `which` selects (of column product_id). */
const productsSql = (which: string) => `
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
/** A load's statement: a range of product ids ($1, $2]. */
const RANGE_SQL = productsSql('product_id > $1 AND product_id <= $2');
/** A refresh's statement: the products listed in $1. */
export const LISTED_SQL = productsSql('product_id = ANY($1::int[])');

interface ProductsRows { n: number; rb: Buffer | null; tb: Buffer | null; pn: number; pb: Buffer | null }

/** One product read again since the load (a refresh): its reviews in arrays of its own, indexes 0 .. n - 1 (copied into the table's slots when they fit). */
interface Fresh {
  n: number;
  rating: Uint8Array;
  orders: Int32Array[];
  text: Buffer;
  offset: Uint32Array;
  length: Uint32Array;
  counts: Int32Array;
  bytes: number;
}

export interface ListRequest {
  product: number;
  sort: Sort;
  /** 1-based, as asked. */
  page: number;
  count: number;
  offset: number;
  /** Star ratings as a bit mask (bit n: rating n; all five: 62), as the list statement takes them. */
  ratings: number;
}

export class ReviewMemory {
  private readonly table: MemoryTable<Table>;

  constructor(private readonly o: ReviewMemoryOptions) {
    // A reload beside the table held (where two fit) at the first load's duty, not at the
    // tenth of a connection meta's reload keeps to: at a tenth a full-scale load would take
    // ~25 minutes, about as long as the mix at 3,000 req/s takes to make 5 % of the
    // products dirty again, so the next table would start at the bound.
    this.table = new MemoryTable({ ...o, reloadDuty: o.reloadDuty ?? o.loadDuty ?? 0.5 }, 'review memory', (loading, began) => this.read(loading, began), (t, products) => this.refresh(t, products),
      (t, product) => this.worthReadingBack(t, product));
  }

  /** A read-back renders every review of the product: worth it only up to refreshMaxReviews (0: never). */
  private worthReadingBack(t: Table, product: number): boolean {
    const most = this.o.refreshMaxReviews ?? 64;
    return most > 0 && heldReviews(t, product) <= most;
  }

  /** Loads from now on (the first once the change feed listens). */
  start(): void {
    this.table.start();
  }

  close(): void {
    this.table.close();
  }

  /**
   * The list answer from memory, or undefined: not loaded, too old, untrusted, not held, or
   * dirty (counted as a dirty read unless `countDirty` is false: see readBack).
   */
  answer(q: ListRequest, countDirty = true): CacheAnswer | undefined {
    const t = this.table.clean(q.product, countDirty);
    if (!t) return undefined;
    const body = renderList(t, q);
    if (!body) return undefined;
    this.table.served();
    const headers = { 'X-Total-Count': String(total(t, q.product, q.ratings)) };
    return { entry: { body, etag: entityTag(body, headers), headers }, outcome: 'HIT', proven: true };
  }

  /**
   * For a reader that found `product` dirty (answer(q, false)): has it read back now
   * (memory-table.ts's readBack), if the table holds at most refreshMaxReviews of its
   * reviews. Resolves once the read-back has ended, or will not happen; the reader then asks
   * answer(q) again, which counts a dirty read if the product still cannot be answered.
   * Undefined when none will be tried.
   */
  readBack(product: number): Promise<void> | undefined {
    return this.table.readBack(product);
  }

  stats(): ReviewMemoryStats {
    return this.table.stats();
  }

  private async refresh(t: Table, products: number[]): Promise<Map<number, () => boolean>> {
    const installs = new Map<number, () => boolean>();
    const small = products.filter((p) => this.worthReadingBack(t, p));
    if (!small.length) return installs;
    for (const [product, f] of await readFresh(this.o.db, small)) {
      installs.set(product, () => {
        const before = t.fresh.get(product)?.bytes ?? 0;
        // In the table's own arrays when it fits (as many reviews as the load gave it, their
        // texts no longer than its region: a vote, mostly), so memory does not grow with every
        // product read back; a copy of its own from then on is dropped.
        if (placeInTable(t, product, f)) {
          if (before) {
            t.fresh.delete(product);
            t.bytes -= before;
          }
          return true;
        }
        // Past the bound the product stays dirty (read from the database); its next reader
        // tries again (false, not 'until-load': another product's read-back may free room).
        if (t.bytes - before + f.bytes > this.o.maxBytes) return false;
        t.fresh.set(product, f);
        t.bytes += f.bytes - before;
        return true;
      });
    }
    return installs;
  }

  /** Every visible review, a range of product ids at a time (each range one statement, after `loading` began). */
  private async read(loading: Loading, began: number): Promise<Table> {
    const db = this.o.db;
    const target = Math.max(1, this.o.pageReviews ?? 20_000);
    let span = 16;
    // NOT reported: the reviews' indexes are partial, so its end is a backward index-only scan, not a full one.
    const { maxProduct, rows: estimated } = await tableExtent(db, 'reviews', 'NOT reported');
    let room = Math.ceil(estimated * 1.01) + 16;
    let textBytes = 0;
    const bytes = () => (maxProduct + 2) * BYTES_PER_PRODUCT + room * BYTES_PER_REVIEW + textBytes;
    if (bytes() > this.o.maxBytes) throw new WillNotHold(`the table would take more than ${(bytes() / 2 ** 20).toFixed(0)} MiB, more than the ${(this.o.maxBytes / 2 ** 20).toFixed(0)} MiB of REVIEW_MEMORY_MB (a worker's share when WORKERS > 1)`);
    const t: Table = {
      maxProduct, bytes: bytes(), dirty: loading.dirty, loadedAt: began,
      describe: () => `${n.toLocaleString('en-US')} reviews of product ids up to ${maxProduct.toLocaleString('en-US')}`,
      start: new Int32Array(maxProduct + 2),
      rating: new Uint8Array(room),
      orders: SORTS.map(() => new Int32Array(room)),
      text: new Uint16Array(room),
      offset: new Uint32Array(room),
      length: new Uint32Array(room),
      texts: [],
      counts: new Int32Array((maxProduct + 1) * 5),
      fresh: new Map(),
    };
    let n = 0;
    for (let lo = 0, hi = 0; lo < maxProduct; lo = hi) {
      if (loading.abandoned) throw new Abandoned();
      hi = Math.min(maxProduct, lo + span);
      const asked = performance.now();
      const { page, read } = await readRange(db, lo, hi, loading);
      // A range read in parts after failures: the next ranges start where it ended, smaller.
      if (read < hi) {
        hi = read;
        span = Math.max(1, hi - lo);
      }
      await loadPause(performance.now() - asked, loading.duty());
      if (loading.abandoned) throw new Abandoned();
      const rb = page.rb ?? Buffer.alloc(0);
      const tb = page.tb ?? Buffer.alloc(0);
      const pb = page.pb ?? Buffer.alloc(0);
      if (rb.length !== page.n * RECORD || pb.length !== page.pn * 24) throw new Error('a range came back malformed');
      if (t.texts.length === 0xffff) throw new WillNotHold('more than 65,535 ranges');
      textBytes += tb.length;
      if (n + page.n > room) {
        room = Math.ceil(Math.max(n + page.n, room * 1.25));
        t.rating = grow(t.rating, room);
        t.orders = t.orders.map((o) => grow(o, room));
        t.text = grow(t.text, room);
        t.offset = grow(t.offset, room);
        t.length = grow(t.length, room);
      }
      t.bytes = bytes();
      if (t.bytes > this.o.maxBytes) throw new WillNotHold(`the reviews grew past ${(this.o.maxBytes / 2 ** 20).toFixed(0)} MiB while loading, more than REVIEW_MEMORY_MB`);
      // Once a tenth of the reviews are read, a table that will not fit is known: stop then,
      // not after reading most of it (a worker's share of REVIEW_MEMORY_MB, say).
      const expected = estimated;
      const projected = (maxProduct + 2) * BYTES_PER_PRODUCT + expected * BYTES_PER_REVIEW + (textBytes / Math.max(1, n + page.n)) * expected;
      if (n + page.n > expected / 10 && projected > this.o.maxBytes * 1.1) {
        throw new WillNotHold(`the table would take about ${(projected / 2 ** 20).toFixed(0)} MiB, more than the ${(this.o.maxBytes / 2 ** 20).toFixed(0)} MiB of REVIEW_MEMORY_MB (a worker's share when WORKERS > 1)`);
      }
      const slot = t.texts.length;
      t.texts.push(tb);
      const pv = new DataView(pb.buffer, pb.byteOffset, pb.length);
      for (let o = 0; o < pb.length; o += 24) {
        const p = pv.getInt32(o);
        if (p <= lo || p > hi) throw new Error('a ratings row came back outside its range');
        for (let i = 0; i < 5; i++) t.counts[p * 5 + i] = pv.getInt32(o + 4 + i * 4);
      }
      const rv = new DataView(rb.buffer, rb.byteOffset, rb.length);
      let last = lo;
      let at = 0;
      let first = n;
      const rangeEnd = n + page.n;
      for (let o = 0; o < rb.length; o += RECORD) {
        const p = rv.getInt32(o);
        if (p <= lo || p > hi || p < last) throw new Error('a review came back out of order');
        // Products between the last one seen and this one have none: their range is empty.
        for (; last < p; last++) t.start[last + 1] = first = n;
        const len = rv.getInt32(o + 20);
        if (at + len > tb.length) throw new Error('a range came back malformed');
        t.rating[n] = rv.getInt32(o + 4);
        t.text[n] = slot;
        t.offset[n] = at;
        t.length[n] = len;
        at += len;
        for (let s = 0; s < SORTS.length; s++) {
          // A rank is 1-based among the product's reviews, all of which are in this range.
          const k = first + rv.getInt32(o + 8 + s * 4) - 1;
          if (k < first || k >= rangeEnd) throw new Error('a rank came back out of range');
          t.orders[s][k] = n;
        }
        n++;
      }
      if (at !== tb.length) throw new Error('a range came back malformed');
      for (; last < hi; last++) t.start[last + 1] = n;
      // At most 4 times the last span: a sparse range must not make the next one huge.
      span = Math.max(1, Math.min(span * 4, Math.round((span * target) / Math.max(page.n, 1))));
    }
    t.start[maxProduct + 1] = n;
    return t;
  }
}

/**
 * Products' reviews read again (the table's refresher, memory-table.ts): one statement for
 * all of them; each product's state is put into the table only when memory-table.ts says it
 * may (nothing changed it meanwhile), and only while the table stays within its bound.
 */
async function readFresh(db: Db, products: number[]): Promise<Map<number, Fresh>> {
  const { rows: [page] } = await db.query<ProductsRows>(LISTED_SQL, [products], 'review-memory-products');
  const rb = page.rb ?? Buffer.alloc(0);
  const tb = page.tb ?? Buffer.alloc(0);
  const pb = page.pb ?? Buffer.alloc(0);
  if (rb.length !== page.n * RECORD || pb.length !== page.pn * 24) throw new Error('products came back malformed');
  const out = new Map<number, Fresh>();
  const empty = (): Fresh => ({ n: 0, rating: new Uint8Array(0), orders: SORTS.map(() => new Int32Array(0)), text: Buffer.alloc(0), offset: new Uint32Array(0), length: new Uint32Array(0), counts: new Int32Array(5), bytes: FRESH_OVERHEAD });
  for (const product of products) out.set(product, empty());
  const pv = new DataView(pb.buffer, pb.byteOffset, pb.length);
  for (let o = 0; o < pb.length; o += 24) {
    const f = out.get(pv.getInt32(o));
    if (!f) throw new Error('a ratings row came back for a product not asked for');
    for (let i = 0; i < 5; i++) f.counts[i] = pv.getInt32(o + 4 + i * 4);
  }
  const rv = new DataView(rb.buffer, rb.byteOffset, rb.length);
  let at = 0;
  for (let o = 0; o < rb.length;) {
    const product = rv.getInt32(o);
    const f = out.get(product);
    if (!f || f.n) throw new Error('reviews came back for a product not asked for, or out of order');
    let n = 0;
    while (o + n * RECORD < rb.length && rv.getInt32(o + n * RECORD) === product) n++;
    Object.assign(f, { n, rating: new Uint8Array(n), orders: SORTS.map(() => new Int32Array(n)), offset: new Uint32Array(n), length: new Uint32Array(n) });
    const begin = at;
    for (let i = 0; i < n; i++, o += RECORD) {
      f.rating[i] = rv.getInt32(o + 4);
      for (let s = 0; s < SORTS.length; s++) {
        const k = rv.getInt32(o + 8 + s * 4) - 1;
        if (k < 0 || k >= n) throw new Error('a rank came back out of range');
        f.orders[s][k] = i;
      }
      f.offset[i] = at - begin;
      f.length[i] = rv.getInt32(o + 20);
      at += f.length[i];
    }
    if (at > tb.length) throw new Error('products came back malformed');
    // A copy of its own (not a slice of the statement's bytes, nor of Node's shared pool).
    f.text = Buffer.allocUnsafeSlow(at - begin);
    tb.copy(f.text, 0, begin, at);
    f.bytes = f.text.length + n * BYTES_PER_REVIEW + FRESH_OVERHEAD;
  }
  if (at !== tb.length) throw new Error('products came back malformed');
  return out;
}

/**
 * Puts a product read again into the slots the load gave it, if it fits: the same number of
 * reviews, and texts no longer than the bytes its reviews' texts take now (back to back in
 * one range's buffer: a range's reviews are stored in product and id order). Its texts,
 * star ratings, places in each sort order and rating counts are all overwritten, whichever
 * reviews they are; renders are synchronous, so none sees a product half written. False
 * (nothing changed) when it does not fit.
 */
function placeInTable(t: Table, product: number, f: Fresh): boolean {
  const from = t.start[product];
  const to = t.start[product + 1];
  if (to - from !== f.n) return false;
  if (f.n > 0) {
    const slot = t.text[from];
    const at = t.offset[from];
    if (f.text.length > t.offset[to - 1] + t.length[to - 1] - at) return false;
    f.text.copy(t.texts[slot], at);
    for (let i = 0; i < f.n; i++) {
      t.rating[from + i] = f.rating[i];
      t.text[from + i] = slot;
      t.offset[from + i] = at + f.offset[i];
      t.length[from + i] = f.length[i];
    }
    for (let s = 0; s < SORTS.length; s++) for (let k = 0; k < f.n; k++) t.orders[s][from + k] = from + f.orders[s][k];
  }
  for (let i = 0; i < 5; i++) t.counts[product * 5 + i] = f.counts[i];
  return true;
}

/**
 * One range of the load (lo, hi], tried again after 1, 2 and 4 s if it fails, each time over
 * half as many product ids (a statement refused by a busy pool or timed out under load must
 * not throw away the ranges read before it); `read`: the range's end actually read.
 */
async function readRange(db: Db, lo: number, hi: number, loading: Loading): Promise<{ page: ProductsRows; read: number }> {
  for (let attempt = 0; ; attempt++) {
    try {
      return { page: (await db.query<ProductsRows>(RANGE_SQL, [lo, hi], 'review-memory-range')).rows[0], read: hi };
    } catch (err) {
      if (attempt === 3 || loading.abandoned) throw err;
      await new Promise((r) => setTimeout(r, 1000 * 2 ** attempt));
      if (loading.abandoned) throw new Abandoned();
      hi = lo + Math.max(1, Math.floor((hi - lo) / 2));
    }
  }
}

function grow<A extends Int32Array | Uint16Array | Uint32Array | Uint8Array>(a: A, length: number): A {
  const b = new (a.constructor as new (n: number) => A)(length);
  b.set(a);
  return b;
}

/** X-Total-Count: the product's visible reviews with those star ratings, from its rating counts. */
function total(t: Table, product: number, mask: number): number {
  const f = t.fresh.get(product);
  const [counts, base] = f ? [f.counts, 0] : [t.counts, product * 5];
  let sum = 0;
  for (let r = 1; r <= 5; r++) if (mask & (1 << r)) sum += counts[base + r - 1];
  return sum;
}

/**
 * The list answer's body, byte for byte read-path.ts's text around the list statement's page
 * (undefined if the pieces do not add up: the page is then read from the database).
 */
function renderList(t: Table, q: ListRequest): Buffer | undefined {
  const s = SORTS.indexOf(q.sort);
  // The product's reviews: its own arrays if it was read again since the load, else the table's.
  const f = t.fresh.get(q.product);
  const [from, to, order, rating, offset, length] = f
    ? [0, f.n, f.orders[s], f.rating, f.offset, f.length]
    : [t.start[q.product], t.start[q.product + 1], t.orders[s], t.rating, t.offset, t.length];
  const textOf = (i: number) => (f ? f.text : t.texts[t.text[i]]);
  const chosen: number[] = [];
  let skip = q.offset;
  let k = from;
  // Every star rating asked for: the offset is a jump, not a walk.
  if ((q.ratings & ALL_RATINGS) === ALL_RATINGS) {
    k = Math.min(to, from + skip);
    skip = 0;
  }
  for (; k < to && chosen.length < q.count; k++) {
    const i = order[k];
    if (!(q.ratings & (1 << rating[i]))) continue;
    if (skip > 0) skip--;
    else chosen.push(i);
  }
  const head = Buffer.from(`{"product":"${q.product}","page":${q.page - 1},"count":${q.count},"results":[`);
  let size = head.length + 2 + Math.max(0, chosen.length - 1) * SEPARATOR.length;
  for (const i of chosen) size += length[i];
  const body = Buffer.allocUnsafe(size);
  let at = head.copy(body, 0);
  chosen.forEach((i, k) => {
    if (k) at += SEPARATOR.copy(body, at);
    at += textOf(i).copy(body, at, offset[i], offset[i] + length[i]);
  });
  body[at++] = 0x5d; // ]
  body[at++] = 0x7d; // }
  return at === size ? body : undefined;
}

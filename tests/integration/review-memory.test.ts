// Review lists from the host's memory (src/reviews/review-memory.ts) on a real PostgreSQL:
// every page it assembles is the list statement's own text, byte for byte (every product of
// a generated export plus rows arranged for escapes, photos, ties and reported reviews;
// every sort, page sizes and pages past the end, star filters, X-Total-Count), across the
// load's range boundaries; a change heard makes its product dirty, read back for its next
// reader; a table past its bound is not loaded; through HTTP a host with the table answers exactly as one without it, a
// writer reads past it, and a client over its read budget is refused as on a miss. The
// table's life (loads, flushes, trust, age, retries) is memory-table.ts's, tested through
// meta-memory.test.ts.
import type { AddressInfo } from 'node:net';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createApp } from '../../src/app';
import { Db } from '../../src/db';
import { generate } from '../../src/etl/generate';
import { load } from '../../src/etl/load';
import { ReadBudget } from '../../src/reviews/read-budget';
import { listSql, ratingMask } from '../../src/reviews/repository';
import { ReviewMemory } from '../../src/reviews/review-memory';
import { SORTS, type Sort } from '../../src/reviews/schemas';
import { followChanges } from '../../src/response-cache/invalidation-feed';
import { ResponseCache } from '../../src/response-cache/response-cache';
import { insertReviews } from '../helpers/fixtures';
import { until } from '../helpers/replica-hosts';
import { holdPool, slowStatements } from '../helpers/slow-statements';
import { createTestDatabase, type TestDatabase } from '../helpers/test-db';

let t: TestDatabase;
let tmp: string;
let maxProduct: number;
/** Product ids of the rows arranged below (past the generated export's). */
let arranged: number;

beforeAll(async () => {
  t = await createTestDatabase();
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'review-memory-'));
  await generate({ out: tmp, scale: 0.0005, seed: 11, dirty: 0 });
  await load({ dir: tmp, databaseUrl: t.url, rejectsFile: path.join(tmp, 'rejects.csv') });
  const { rows: [top] } = await t.db.query<{ p: number; id: number }>('SELECT max(product_id) AS p, max(id) AS id FROM atelier.reviews');
  arranged = top.p + 1;
  const id = top.id + 1;
  const day = '2021-03-04T05:06:07.089Z';
  // Text JSON must escape, non-ASCII text, photos (in id order), a null and a set response,
  // equal dates and helpfulness (ties broken by id), reported reviews (never listed).
  await insertReviews(t.db, [
    { id, product_id: arranged, rating: 5, date: day, summary: 'Say "hi" \\ there\ttab\n', body: `Länge ✓ 👍 ${'x'.repeat(60)}`, helpfulness: 3,
      photos: [{ id: 9_000_002, url: 'https://example.com/b.jpg?a=1&b="2"' }, { id: 9_000_001, url: 'https://example.com/a.jpg' }] },
    { id: id + 1, product_id: arranged, rating: 4, date: day, helpfulness: 3, response: 'Thanks \u0001 control' },
    { id: id + 2, product_id: arranged, rating: 4, date: '2020-01-01T00:00:00.000Z', helpfulness: 9 },
    { id: id + 3, product_id: arranged, rating: 1, date: '2022-01-01T00:00:00.000Z', reported: true },
    { id: id + 4, product_id: arranged + 2, rating: 2, date: day, reported: true },
    { id: id + 5, product_id: arranged + 3, rating: 3, date: day },
  ]);
  // The aggregates of the arranged rows, as the writes would keep them.
  await t.db.query(`INSERT INTO atelier.product_ratings (product_id, r1, r2, r3, r4, r5, recommended, not_recommended)
    SELECT product_id, count(*) FILTER (WHERE rating = 1), count(*) FILTER (WHERE rating = 2), count(*) FILTER (WHERE rating = 3),
           count(*) FILTER (WHERE rating = 4), count(*) FILTER (WHERE rating = 5), count(*) FILTER (WHERE recommend), count(*) FILTER (WHERE NOT recommend)
    FROM atelier.reviews WHERE product_id >= $1 AND NOT reported GROUP BY product_id`, [arranged]);
  maxProduct = arranged + 3;
}, 120_000);

afterAll(async () => {
  await t.drop();
  fs.rmSync(tmp, { recursive: true, force: true });
});

interface HostOptions { maxBytes?: number; pageReviews?: number; reloadOnAnyChange?: boolean; refreshMaxReviews?: number; sweepAfterMs?: number; statementTimeoutMs?: number }

/** A host's pieces: pool, cache with its feed (untrusted until it listens), the review table (not started). */
function host(o: HostOptions = {}) {
  const db = new Db({ connectionString: t.url, poolSize: 2, statementTimeoutMs: o.statementTimeoutMs });
  const cache = new ResponseCache({ maxBytes: 1 << 20, ttlMs: 600_000, trusted: false });
  const feed = followChanges(db, cache, () => undefined, { heartbeatMs: 60_000 });
  const logs: string[] = [];
  const memory = new ReviewMemory({
    db, cache, maxBytes: o.maxBytes ?? 256 << 20, maxAgeMs: 600_000, log: (l) => logs.push(l), retryMs: 200,
    minLoadIntervalMs: 0, jitterMs: 0, pageReviews: o.pageReviews ?? 40, refreshMaxReviews: o.refreshMaxReviews, sweepAfterMs: o.sweepAfterMs, sweepIntervalMs: 50,
    ...(o.reloadOnAnyChange ? { reloadDirtyMin: 0, reloadDirtyShare: 0, reloadJitterMs: 0 } : {}),
  });
  return {
    db, cache, memory, logs,
    async stop() {
      memory.close();
      await feed.close();
      await db.close();
    },
  };
}

async function withLoaded(o: HostOptions, fn: (h: ReturnType<typeof host>) => Promise<void>): Promise<void> {
  const h = host(o);
  try {
    h.memory.start();
    await until('the first load', () => h.memory.stats().loads === 1, 20_000);
    await fn(h);
  } finally {
    await h.stop();
  }
}

interface Ask { product: number; sort: Sort; page: number; count: number; rating?: number[] }

/** The list statement's own answers (results and total) for `asks`, one statement per sort. */
async function truth(asks: Ask[]): Promise<{ body: string; total: string }[]> {
  const out: { body: string; total: string }[] = new Array(asks.length);
  for (const sort of SORTS) {
    const idx = asks.map((a, i) => [a, i] as const).filter(([a]) => a.sort === sort);
    if (!idx.length) continue;
    const { rows } = await t.db.query<{ results: string; total: number }>(listSql(sort), [
      idx.map(([a]) => a.product), idx.map(([a]) => a.count), idx.map(([a]) => (a.page - 1) * a.count), idx.map(([a]) => ratingMask(a.rating))]);
    idx.forEach(([a, i], k) => {
      out[i] = { body: `{"product":"${a.product}","page":${a.page - 1},"count":${a.count},"results":${rows[k].results}}`, total: String(rows[k].total) };
    });
  }
  return out;
}

const ask = (memory: ReviewMemory, a: Ask) => {
  const answer = memory.answer({ product: a.product, sort: a.sort, page: a.page, count: a.count, offset: (a.page - 1) * a.count, ratings: ratingMask(a.rating) });
  return answer && { body: answer.entry.body.toString(), total: answer.entry.headers!['X-Total-Count'] };
};

test("every product's pages from memory are the list statement's text, byte for byte, across the load's ranges", async () => {
  await withLoaded({}, async (h) => {
    const asks: Ask[] = [];
    for (let product = 1; product <= maxProduct; product++) {
      for (const sort of SORTS) {
        for (const [count, pages] of [[5, 2], [1, 4], [2, 3], [1000, 1]] as const) {
          for (let page = 1; page <= pages; page++) asks.push({ product, sort, page, count });
        }
        asks.push({ product, sort, page: 1, count: 5, rating: [4, 5] }, { product, sort, page: 2, count: 1, rating: [1, 3] }, { product, sort, page: 1, count: 3, rating: [2] });
      }
    }
    const expected = await truth(asks);
    const wrong = asks.map((a, i) => ({ a, ours: ask(h.memory, a), theirs: expected[i] })).filter((x) => x.ours?.body !== x.theirs.body || x.ours?.total !== x.theirs.total);
    expect(wrong.slice(0, 3)).toEqual([]);
    // The cases this data was arranged for are really in it: escapes and photos, several
    // reviews a page, a product whose only review is reported (an empty page, total 0).
    const special = expected.filter((e, i) => asks[i].product === arranged && asks[i].count === 1000);
    expect(special[0].body).toContain('\\"hi\\" \\\\ there\\ttab\\n');
    expect(special[0].body).toContain('\\u0001');
    expect(special[0].body).toContain('"photos" : [{"id" : 9000001');
    expect(expected.filter((e) => e.body.includes('}, {"review_id"')).length).toBeGreaterThan(100);
    expect(ask(h.memory, { product: arranged + 2, sort: 'newest', page: 1, count: 5 })).toEqual({ body: `{"product":"${arranged + 2}","page":0,"count":5,"results":[]}`, total: '0' });
    expect(h.memory.stats()).toMatchObject({ maxProduct, served: asks.length + 1 });
  });
}, 60_000);

test('a product past the highest one held is not answered from memory', async () => {
  await withLoaded({}, async (h) => {
    expect(ask(h.memory, { product: maxProduct + 1, sort: 'newest', page: 1, count: 5 })).toBeUndefined();
  });
});

test('a change heard makes its product dirty: not answered from memory until it is read back', async () => {
  await withLoaded({}, async (h) => {
    const a: Ask = { product: arranged, sort: 'helpful', page: 1, count: 5 };
    expect(ask(h.memory, a)).toEqual((await truth([a]))[0]);
    await t.db.query('UPDATE atelier.reviews SET helpfulness = helpfulness + 1 WHERE product_id = $1 AND rating = 4', [arranged]);
    await until('the change heard', () => h.memory.stats().dirty === 1, 5000);
    expect(ask(h.memory, a)).toBeUndefined();
    expect(h.memory.stats().dirtyReads).toBe(1);
    // Another product is still answered.
    expect(ask(h.memory, { ...a, product: arranged + 3 })).toEqual((await truth([{ ...a, product: arranged + 3 }]))[0]);
  });
});

test('a table larger than its bound is not loaded, and says so', async () => {
  const h = host({ maxBytes: 1 << 20 });
  try {
    h.memory.start();
    await until('the log line', () => h.logs.some((l) => l.includes('of REVIEW_MEMORY_MB')), 20_000);
    expect(h.memory.stats()).toMatchObject({ loads: 0, maxProduct: 0 });
    expect(ask(h.memory, { product: 1, sort: 'newest', page: 1, count: 5 })).toBeUndefined();
  } finally {
    await h.stop();
  }
});

/** Every page of `product` asked the ways the storefront asks, from memory and from the statement. */
async function allPages(memory: ReviewMemory, product: number) {
  const asks: Ask[] = SORTS.flatMap((sort) => [{ product, sort, page: 1, count: 5 }, { product, sort, page: 2, count: 1, rating: [4, 5] }]);
  return { ours: asks.map((a) => ask(memory, a)), theirs: await truth(asks) };
}

test('a changed product is read back for its reader and answered from memory with the change; a change heard while it is read keeps it dirty', async () => {
  await withLoaded({}, async (h) => {
    await t.db.query('UPDATE atelier.reviews SET helpfulness = helpfulness + 5 WHERE id = (SELECT max(id) FROM atelier.reviews WHERE product_id = $1 AND NOT reported)', [arranged]);
    await until('the change heard', () => h.memory.stats().dirty === 1, 5000);
    // Written, not read: nothing is read back.
    await new Promise((r) => setTimeout(r, 200));
    expect(h.memory.stats()).toMatchObject({ refreshed: 0, dirty: 1 });
    /** What a reader of `product` does on finding it dirty: has it read back, and waits. */
    const readBack = async (product: number) => {
      const pending = h.memory.readBack(product);
      expect(pending).toBeDefined();
      await pending;
    };
    await readBack(arranged);
    expect(h.memory.stats()).toMatchObject({ refreshed: 1, dirty: 0 });
    let pages = await allPages(h.memory, arranged);
    expect(pages.ours).toEqual(pages.theirs);
    // A POST-like change (a new review, its count in the same transaction), then a report
    // (the review hidden, its count taken off), on another product.
    const inOneTransaction = async (statements: [string, unknown[]][]) => {
      const client = await t.db.connect();
      try {
        await client.query('BEGIN');
        for (const [text, params] of statements) await client.query(text, params);
        await client.query('COMMIT');
      } finally {
        client.release();
      }
    };
    const heard = async () => until('the change heard', () => h.memory.stats().dirty === 1, 5000);
    await inOneTransaction([
      [`INSERT INTO atelier.reviews (id, product_id, rating, date, summary, body, recommend, reported, reviewer_name, reviewer_email, helpfulness)
        VALUES (9500000, $1, 4, '2023-01-01T00:00:00Z', 'new', 'a new review', true, false, 'new', 'new@example.com', 0)`, [arranged + 3]],
      ['UPDATE atelier.product_ratings SET r4 = r4 + 1 WHERE product_id = $1', [arranged + 3]],
    ]);
    await heard();
    await readBack(arranged + 3);
    pages = await allPages(h.memory, arranged + 3);
    expect(pages.ours).toEqual(pages.theirs);
    expect(pages.theirs[0].body).toContain('"review_id" : 9500000');
    await inOneTransaction([
      ['UPDATE atelier.reviews SET reported = true WHERE id = 9500000', []],
      ['UPDATE atelier.product_ratings SET r4 = r4 - 1 WHERE product_id = $1', [arranged + 3]],
    ]);
    await heard();
    await readBack(arranged + 3);
    pages = await allPages(h.memory, arranged + 3);
    expect(pages.ours).toEqual(pages.theirs);
    expect(pages.theirs[0].body).not.toContain('9500000');
    expect(h.memory.stats()).toMatchObject({ refreshed: 3, dirty: 0 });

    // The read-back of `arranged` waits on a lock; a second change is heard meanwhile: what it
    // read is not kept (the product stays dirty), the next reader's read-back is.
    await t.db.query('UPDATE atelier.reviews SET helpfulness = helpfulness + 1 WHERE product_id = $1', [arranged]);
    await heard();
    const release = await lockRatings();
    let first: Promise<void> | undefined;
    try {
      first = h.memory.readBack(arranged);
      await until('the read-back to wait on the lock', loadWaiting, 10_000);
      const invalidations = h.cache.stats().invalidations;
      await t.db.query('UPDATE atelier.reviews SET helpfulness = helpfulness + 1 WHERE product_id = $1', [arranged]);
      await until('the second change heard', () => h.cache.stats().invalidations > invalidations, 5000);
    } finally {
      await release();
    }
    await first;
    expect(h.memory.stats()).toMatchObject({ refreshed: 3, dirty: 1 });
    expect(ask(h.memory, { product: arranged, sort: 'helpful', page: 1, count: 5 })).toBeUndefined();
    await readBack(arranged);
    expect(h.memory.stats()).toMatchObject({ refreshed: 4, dirty: 0 });
    pages = await allPages(h.memory, arranged);
    expect(pages.ours).toEqual(pages.theirs);
  });
});

test("a product read back with as many reviews, whose texts fit, goes into the table's own slots (memory does not grow); one that does not fit gets a copy of its own, dropped once it fits again", async () => {
  await withLoaded({}, async (h) => {
    const { rows: [r] } = await t.db.query<{ id: number; product: number; helpfulness: number }>(
      'SELECT id, product_id AS product, helpfulness FROM atelier.reviews WHERE NOT reported AND helpfulness BETWEEN 0 AND 8 AND product_id < $1 ORDER BY id LIMIT 1', [arranged]);
    const bytes = h.memory.stats().bytes;
    /** Sets the review's helpfulness, has the product read back for a reader, and compares every page. */
    const vote = async (helpfulness: number) => {
      const dirty = h.memory.stats().dirty;
      await t.db.query('UPDATE atelier.reviews SET helpfulness = $2 WHERE id = $1', [r.id, helpfulness]);
      await until('the change heard', () => h.memory.stats().dirty === dirty + 1, 5000);
      await h.memory.readBack(r.product);
      expect(h.memory.stats().dirty).toBe(dirty);
      const pages = await allPages(h.memory, r.product);
      expect(pages.ours).toEqual(pages.theirs);
      const every: Ask = { product: r.product, sort: 'helpful', page: 1, count: 1000 };
      const [theirs] = await truth([every]);
      expect(ask(h.memory, every)).toEqual(theirs);
      expect(theirs.body).toContain(`"review_id" : ${r.id}, "rating" : `);
      expect(theirs.body).toMatch(new RegExp(`"review_id" : ${r.id},.*?"helpfulness" : ${helpfulness},`));
      // Its neighbours in the same range's buffer are untouched.
      for (const p of [r.product - 1, r.product + 1]) {
        const around = await allPages(h.memory, p);
        expect(around.ours).toEqual(around.theirs);
      }
    };
    // One more vote, the same number of digits: in place.
    await vote(r.helpfulness + 1);
    expect(h.memory.stats().bytes).toBe(bytes);
    // Longer text than its slots hold: a copy of its own.
    await vote(10);
    expect(h.memory.stats().bytes).toBeGreaterThan(bytes);
    // Back within its slots: in place again, and the copy's memory given back.
    await vote(r.helpfulness);
    expect(h.memory.stats()).toMatchObject({ bytes, refreshed: 3 });
  });
});

test('a changed product with more reviews than refreshMaxReviews is not read back: it stays dirty until the next load', async () => {
  await withLoaded({ refreshMaxReviews: 2 }, async (h) => {
    // `arranged` has three visible reviews, `arranged + 3` one.
    await t.db.query('UPDATE atelier.reviews SET helpfulness = helpfulness + 1 WHERE product_id = $1', [arranged]);
    await t.db.query('UPDATE atelier.reviews SET helpfulness = helpfulness + 1 WHERE product_id = $1', [arranged + 3]);
    await until('the changes heard', () => h.memory.stats().dirty === 2, 5000);
    expect(h.memory.readBack(arranged)).toBeUndefined();
    await h.memory.readBack(arranged + 3);
    expect(h.memory.stats()).toMatchObject({ refreshed: 1, dirty: 1 });
    expect(ask(h.memory, { product: arranged, sort: 'helpful', page: 1, count: 5 })).toBeUndefined();
    const small: Ask = { product: arranged + 3, sort: 'helpful', page: 1, count: 5 };
    expect(ask(h.memory, small)).toEqual((await truth([small]))[0]);
  });
});

test('with the sweep, a changed product nobody reads is read back once quiet, and its pages are the statement\'s; one with more reviews than refreshMaxReviews stays dirty', async () => {
  await withLoaded({ sweepAfterMs: 300, refreshMaxReviews: 2 }, async (h) => {
    // Read-back statements, counted on the host's own pool (the database is real).
    const readBacks = slowStatements(h.db, 'review-memory-products', 0);
    // `arranged` has three visible reviews (past the bound of 2), `arranged + 3` one.
    await t.db.query('UPDATE atelier.reviews SET helpfulness = helpfulness + 2 WHERE product_id = $1', [arranged + 3]);
    await t.db.query('UPDATE atelier.reviews SET helpfulness = helpfulness + 1 WHERE product_id = $1', [arranged]);
    await until('the changes heard', () => h.memory.stats().dirty === 2, 5000);
    expect(h.memory.stats()).toMatchObject({ refreshed: 0, swept: 0 });
    await until('the sweep', () => h.memory.stats().swept === 1, 10_000);
    // Nobody asked: read back all the same, and answered from memory with the change.
    const pages = await allPages(h.memory, arranged + 3);
    expect(pages.ours).toEqual(pages.theirs);
    await new Promise((r) => setTimeout(r, 500));
    expect(h.memory.stats()).toMatchObject({ refreshed: 1, swept: 1, dirty: 1 });
    // One statement, for `arranged + 3`: the large one is not asked for, then or since.
    expect(readBacks.count).toBe(1);
    expect(ask(h.memory, { product: arranged, sort: 'helpful', page: 1, count: 5 })).toBeUndefined();
  });
});

test("the sweep waits while every connection of the host's pool is taken: no statement of its own ahead of the next readers, then it sweeps", async () => {
  // No statement timeout: the held connections wait on a lock for as long as the test takes.
  await withLoaded({ sweepAfterMs: 300, statementTimeoutMs: 0 }, async (h) => {
    const readBacks = slowStatements(h.db, 'review-memory-products', 0);
    // The host's two connections taken until released; nothing waiting behind them.
    const release = await holdPool(h.db, t.db, 2, 0);
    try {
      await t.db.query('UPDATE atelier.reviews SET helpfulness = helpfulness + 1 WHERE product_id = $1', [arranged + 3]);
      await until('the change heard', () => h.memory.stats().dirty === 1, 5000);
      // Past the product's quiet time, and turns of the sweep (every 50 ms) with it due.
      await until('turns skipped', () => h.memory.stats().sweepsSkippedBusy >= 3, 5000);
      expect({ statements: readBacks.count, queued: h.db.queueLength, swept: h.memory.stats().swept }).toEqual({ statements: 0, queued: 0, swept: 0 });
    } finally {
      await release();
    }
    await until('the sweep', () => h.memory.stats().swept === 1, 10_000);
    expect(readBacks.count).toBe(1);
    const pages = await allPages(h.memory, arranged + 3);
    expect(pages.ours).toEqual(pages.theirs);
  });
});

test('a read-back overtaken by a flush or a failure puts nothing into memory; its product stays dirty and its reader goes on', async () => {
  await withLoaded({}, async (h) => {
    await t.db.query('UPDATE atelier.reviews SET helpfulness = helpfulness + 1 WHERE product_id = $1', [arranged + 3]);
    await until('the change heard', () => h.memory.stats().dirty === 1, 5000);
    const release = await lockRatings();
    let waiting: Promise<void> | undefined;
    try {
      waiting = h.memory.readBack(arranged + 3);
      await until('the read-back to wait on the lock', loadWaiting, 10_000);
      // A flush (the feed lost and back, an import's swap) drops the table under the read.
      h.cache.invalidateAll();
    } finally {
      await release();
    }
    await waiting;
    await until('the next load', () => h.memory.stats().loads === 2, 20_000);
    expect(h.memory.stats().refreshed).toBe(0);
    // A read-back that fails (its statement cancelled) leaves the product dirty, lets its
    // reader go on, and says so.
    await t.db.query('UPDATE atelier.reviews SET helpfulness = helpfulness + 1 WHERE product_id = $1', [arranged + 3]);
    await until('the change heard', () => h.memory.stats().dirty === 1, 5000);
    const release2 = await lockRatings();
    try {
      waiting = h.memory.readBack(arranged + 3);
      await until('the read-back to wait on the lock', loadWaiting, 10_000);
      await t.db.query("SELECT pg_cancel_backend(pid) FROM pg_stat_activity WHERE query LIKE '%product_id = ANY%' AND pid <> pg_backend_pid()");
      await waiting;
      expect(h.memory.stats().failedRefreshes).toBe(1);
    } finally {
      await release2();
    }
    expect(h.memory.stats()).toMatchObject({ refreshed: 0, dirty: 1 });
    expect(ask(h.memory, { product: arranged + 3, sort: 'newest', page: 1, count: 5 })).toBeUndefined();
    // Read-backs pause after a failure: its next reader goes to the database at once.
    expect(h.memory.readBack(arranged + 3)).toBeUndefined();
    expect(h.logs.some((l) => l.includes('reading changed products back failed'))).toBe(true);
  });
});

/** Holds product_ratings' lock in a transaction of its own (a load's statements wait on it). */
async function lockRatings() {
  const client = await t.db.connect();
  await client.query('BEGIN');
  await client.query('LOCK TABLE atelier.product_ratings IN ACCESS EXCLUSIVE MODE');
  return async () => {
    await client.query('ROLLBACK').catch(() => undefined);
    client.release();
  };
}
const loadWaiting = async () => (await t.db.query<{ n: number }>(
  "SELECT count(*)::int AS n FROM pg_locks l WHERE l.relation = 'atelier.product_ratings'::regclass AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()) AND NOT l.granted")).rows[0].n > 0;

test("a reload beside the table held is paced at the first load's duty (0.5), not at meta's tenth", async () => {
  // Each range statement made to take at least 40 ms: at 0.5 a reload takes about twice its
  // statements' time, at a tenth ten times.
  await withLoaded({ reloadOnAnyChange: true }, async (h) => {
    const seen = slowStatements(h.db, 'review-memory-range');
    await t.db.query('UPDATE atelier.reviews SET helpfulness = helpfulness + 1 WHERE product_id = $1', [arranged]);
    await until('the reload', () => h.memory.stats().loads === 2, 30_000);
    const reloadMs = performance.now() - seen.first;
    expect(reloadMs).toBeGreaterThanOrEqual(seen.took * 2 * 0.9);
    expect(reloadMs).toBeLessThan(seen.took * 6);
  });
});

test('a reload keeps the table held serving only while two fit the memory allowed; otherwise it drops it first', async () => {
  let bytes = 0;
  await withLoaded({}, async (h) => {
    bytes = h.memory.stats().bytes;
  });
  const other: Ask = { product: arranged + 3, sort: 'newest', page: 1, count: 5 };
  for (const [maxBytes, servesDuringLoad] of [[bytes * 2 + 1024, true], [Math.ceil(bytes * 1.5), false]] as const) {
    // (No refresh meanwhile: only the load waits on the lock.)
    await withLoaded({ maxBytes, reloadOnAnyChange: true }, async (h) => {
      expect(ask(h.memory, other)).toBeDefined();
      const release = await lockRatings();
      try {
        // A change (helpfulness: product_ratings is not written) makes a load due at once; it waits on the lock.
        await t.db.query('UPDATE atelier.reviews SET helpfulness = helpfulness + 1 WHERE product_id = $1', [arranged]);
        await until('the load to wait on the lock', loadWaiting, 10_000);
        expect(ask(h.memory, other) !== undefined).toBe(servesDuringLoad);
      } finally {
        await release();
      }
      await until('the reload', () => h.memory.stats().loads === 2, 20_000);
      expect(ask(h.memory, other)).toEqual((await truth([other]))[0]);
    });
  }
});

test('through HTTP: a host with the table answers as one without it; a writer reads past it; an over-budget client is refused', async () => {
  const a = host();
  const plain = host();
  const servers: import('node:http').Server[] = [];
  const budget = new ReadBudget({ bytesPerSecond: 1, burstBytes: 4096, trustedProxies: new Set() });
  try {
    a.memory.start();
    await until('the load', () => a.memory.stats().loads === 1, 20_000);
    const urlOf = async (app: ReturnType<typeof createApp>) => {
      const server = app.listen(0, '127.0.0.1');
      servers.push(server);
      await new Promise((r) => server.once('listening', r));
      return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    };
    const withTable = await urlOf(createApp(a.db, { log: () => undefined, cache: a.cache, reviewMemory: a.memory, readBudget: budget }));
    const without = await urlOf(createApp(plain.db, { log: () => undefined, cache: new ResponseCache({ maxBytes: 0, ttlMs: 0 }) }));
    const paths = [`/reviews?product_id=${arranged}&count=2&page=2&sort=helpful`, `/reviews?product_id=${arranged}&sort=relevant&rating=4,5`, '/reviews?product_id=3'];
    for (const p of paths) {
      const [x, y] = [await fetch(withTable + p), await fetch(without + p)];
      expect(x.headers.get('x-response-cache')).toBe('HIT');
      expect([x.status, await x.text(), x.headers.get('x-total-count'), x.headers.get('etag')]).toEqual([y.status, await y.text(), y.headers.get('x-total-count'), y.headers.get('etag')]);
    }
    // A conditional request is answered 304 from memory too.
    const etag = (await fetch(withTable + paths[2])).headers.get('etag')!;
    expect((await fetch(withTable + paths[2], { headers: { 'if-none-match': etag } })).status).toBe(304);

    // A product changed since the load: its next reader has it read back, and is answered
    // from memory with the change, as the database answers.
    await t.db.query('UPDATE atelier.reviews SET helpfulness = helpfulness + 2 WHERE id = (SELECT min(id) FROM atelier.reviews WHERE product_id = $1 AND NOT reported)', [arranged]);
    await until('the change heard', () => a.memory.stats().dirty === 1, 5000);
    const dirtyReads = a.memory.stats().dirtyReads;
    const [x, y] = [await fetch(withTable + paths[0]), await fetch(without + paths[0])];
    expect([x.status, x.headers.get('x-response-cache')]).toEqual([200, 'HIT']);
    expect([x.status, await x.text(), x.headers.get('x-total-count'), x.headers.get('etag')]).toEqual([y.status, await y.text(), y.headers.get('x-total-count'), y.headers.get('etag')]);
    // Answered from memory, so not counted as a dirty read (one answered as before).
    expect(a.memory.stats()).toMatchObject({ refreshed: 1, dirty: 0, dirtyReads });

    // A reader whose cookie names the product is rendered from the database.
    const served = a.memory.stats().served;
    const writer = await fetch(`${withTable}/reviews?product_id=${arranged}`, { headers: { cookie: `atelier_wrote=${arranged}` } });
    expect(writer.headers.get('x-response-cache')).not.toBe('HIT');
    expect(a.memory.stats().served).toBe(served);

    // Pages assembled from memory are charged to the client's budget as renders: past its
    // burst, it is refused with a 429 naming the problem.
    let refused: Response | undefined;
    for (let i = 0; i < 60 && !refused; i++) {
      const r = await fetch(`${withTable}/reviews?product_id=${1 + i}&count=1000&sort=${SORTS[i % 3]}`);
      if (r.status === 200) expect(r.headers.get('x-response-cache')).toBe('HIT');
      if (r.status === 429) refused = r;
    }
    expect(refused?.headers.get('retry-after')).toBeTruthy();
    expect(((await refused!.json()) as { error: string }).error).toMatch(/Too many expensive reads/);
  } finally {
    for (const s of servers) await new Promise((r) => s.close(r));
    await a.stop();
    await plain.stop();
  }
});

test('through HTTP: a dirty read answered from the database counts one dirty read', async () => {
  // No read-backs: the dirty product's reader goes on to the response cache and PostgreSQL.
  const h = host({ refreshMaxReviews: 0 });
  let server: import('node:http').Server | undefined;
  try {
    h.memory.start();
    await until('the load', () => h.memory.stats().loads === 1, 20_000);
    server = createApp(h.db, { log: () => undefined, cache: h.cache, reviewMemory: h.memory }).listen(0, '127.0.0.1');
    await new Promise((r) => server!.once('listening', r));
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    await t.db.query('UPDATE atelier.reviews SET helpfulness = helpfulness + 1 WHERE product_id = $1', [arranged + 3]);
    await until('the change heard', () => h.memory.stats().dirty === 1, 5000);
    const before = h.memory.stats();
    const r = await fetch(`${url}/reviews?product_id=${arranged + 3}&sort=newest`);
    expect(r.status).toBe(200);
    expect(r.headers.get('x-response-cache')).not.toBe('HIT');
    expect(h.memory.stats()).toMatchObject({ dirtyReads: before.dirtyReads + 1, served: before.served, refreshed: 0 });
  } finally {
    if (server) await new Promise((r) => server!.close(r));
    await h.stop();
  }
});

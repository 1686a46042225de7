// Meta from the host's memory (src/reviews/meta-memory.ts) on a real PostgreSQL: the text
// it renders is PostgreSQL's own, byte for byte (numeric division's scale and rounding,
// JSON spacing, escaped names, zero counts, products without rows); a change heard makes
// its product dirty from the moment a load begins; a flush, a change of trust or a close
// drops the table and abandons a load under way; loads are spaced, retried, aged out and
// bounded (a stray product id cannot size the table); a writer's read skips it.
import type { AddressInfo } from 'node:net';
import fs from 'node:fs';
import path from 'node:path';
import { createApp } from '../../src/app';
import { Db } from '../../src/db';
import { MetaMemory, numericRatio } from '../../src/reviews/meta-memory';
import { ReadBudget } from '../../src/reviews/read-budget';
import { followChanges } from '../../src/response-cache/invalidation-feed';
import { ResponseCache } from '../../src/response-cache/response-cache';
import { finishArrange, insertCharacteristics, insertReviews, LONG_BODY } from '../helpers/fixtures';
import { silentRelay } from '../helpers/relay';
import { until } from '../helpers/replica-hosts';
import { holdPool, slowStatements } from '../helpers/slow-statements';
import { createTestDatabase, type TestDatabase } from '../helpers/test-db';

const META_SQL = fs.readFileSync(path.join(__dirname, '../../src/reviews/sql/review-meta.sql'), 'utf8');

let t: TestDatabase;
const MAX_PRODUCT = 12;

/** PostgreSQL's own meta text for products 1..MAX_PRODUCT (and one past the end). */
async function truth(db: Db = t.db): Promise<string[]> {
  const ids = Array.from({ length: MAX_PRODUCT + 1 }, (_, i) => i + 1);
  return (await db.query<{ meta: string }>(META_SQL, [ids])).rows.map((r) => r.meta);
}

interface HostOptions {
  maxBytes?: number;
  minLoadIntervalMs?: number;
  maxAgeMs?: number;
  reloadDirtyMin?: number;
  /** The change feed's connection (a relay the test can silence); the database's by default. */
  listenUrl?: string;
  /** The pool's statement timeout, and how long a request may wait for a connection (default 250 ms, as deployed). */
  statementTimeoutMs?: number;
  queueTimeoutMs?: number;
  /** Read changed products back when read (default true, as deployed). */
  readBack?: boolean;
  /** The load's duty (default 0.5, as deployed), and a reload's while the table held serves (default 0.1, as deployed). */
  loadDuty?: number;
  reloadDuty?: number;
  /** Read back a changed product once quiet this long (default 0: off, only when read). */
  sweepAfterMs?: number;
}

/** A host's pieces: pool, cache with its feed (untrusted until it listens), the memory table (not started). */
function host(o: HostOptions = {}) {
  const db = new Db({ connectionString: t.url, poolSize: 2, statementTimeoutMs: o.statementTimeoutMs, queueTimeoutMs: o.queueTimeoutMs });
  const listenDb = o.listenUrl ? new Db({ connectionString: o.listenUrl, poolSize: 1 }) : db;
  const cache = new ResponseCache({ maxBytes: 1 << 20, ttlMs: 600_000, trusted: false });
  const feed = followChanges(listenDb, cache, () => undefined, { heartbeatMs: 60_000 });
  const logs: string[] = [];
  const memory = new MetaMemory({
    db, cache, maxBytes: o.maxBytes ?? 64 << 20, maxAgeMs: o.maxAgeMs ?? 600_000, log: (l) => logs.push(l), retryMs: 200,
    minLoadIntervalMs: o.minLoadIntervalMs ?? 0, jitterMs: 0, reloadDirtyMin: o.reloadDirtyMin, reloadJitterMs: 0, pageProducts: 3, readBack: o.readBack, loadDuty: o.loadDuty, reloadDuty: o.reloadDuty,
    sweepAfterMs: o.sweepAfterMs, sweepIntervalMs: 50,
  });
  return {
    db, cache, memory, logs,
    async stop() {
      memory.close();
      await feed.close();
      if (listenDb !== db) await listenDb.close();
      await db.close();
    },
  };
}

/** Runs `fn` with a host whose first table is loaded, and stops the host after. */
async function withLoaded(o: HostOptions, fn: (h: ReturnType<typeof host>) => Promise<void>): Promise<void> {
  const h = host(o);
  try {
    h.memory.start();
    await until('the first load', () => h.memory.stats().loads === 1, 10_000);
    await fn(h);
  } finally {
    await h.stop();
  }
}

/** Holds a table's lock in a transaction of its own (a load's next page on it waits). */
async function lockTable(table: string) {
  const client = await t.db.connect();
  await client.query('BEGIN');
  await client.query(`LOCK TABLE atelier.${table} IN ACCESS EXCLUSIVE MODE`);
  let released = false;
  return {
    /** Ends the lock (again: a no-op). */
    async release() {
      if (released) return;
      released = true;
      await client.query('ROLLBACK').catch(() => undefined);
      client.release();
    },
  };
}

const waitingOn = async (table: string) => (await t.db.query<{ n: number }>(
  'SELECT count(*)::int AS n FROM pg_locks l WHERE l.relation = $1::regclass AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()) AND NOT l.granted', [`atelier.${table}`])).rows[0].n > 0;

const held = (memory: MetaMemory, product: number) => memory.answer(product)?.entry.body.toString();

beforeAll(async () => {
  t = await createTestDatabase();
  // Names JSON must escape (quote, backslash, control character) and non-ASCII text.
  await insertCharacteristics(t.db, [
    { id: 1, product_id: 1, name: 'Fit' }, { id: 2, product_id: 1, name: 'Say "hi" \\ there' },
    { id: 3, product_id: 1, name: 'Länge\ttab' }, { id: 4, product_id: 2, name: 'Comfort' },
    { id: 5, product_id: 4, name: 'Quality' }, { id: 6, product_id: 10, name: 'Fit' }, { id: 7, product_id: 10, name: 'Width' },
    { id: 8, product_id: 12, name: 'Size' },
  ]);
  await insertReviews(t.db, [
    ...Array.from({ length: 9 }, (_, i) => ({ id: i + 1, product_id: 1, rating: 1 + (i % 5), date: '2021-01-01T00:00:00.000Z', recommend: i % 3 !== 0, ratings: { 1: 1 + (i % 5), 2: 5 - (i % 3), 3: 3 } })),
    { id: 20, product_id: 3, rating: 5, date: '2021-01-02T00:00:00.000Z', recommend: false },
    { id: 21, product_id: 10, rating: 2, date: '2021-01-02T00:00:00.000Z', ratings: { 6: 4 } },
  ]);
  await finishArrange(t.db);
  // A product whose counts are all zero, and sums and counts across numeric's base-10,000 digits.
  await t.db.query('INSERT INTO atelier.product_ratings (product_id) VALUES (11)');
  await t.db.query('UPDATE atelier.characteristics SET rating_sum = 123456789012, rating_count = 98765 WHERE id = 7');
  await t.db.query('UPDATE atelier.characteristics SET rating_sum = 10000, rating_count = 10001 WHERE id = 8');
});

afterAll(async () => {
  await t.drop();
});

test("numericRatio prints sum/count exactly as PostgreSQL's numeric division does", async () => {
  const edges = [0, 1, 2, 3, 5, 7, 9, 10, 99, 100, 999, 1000, 3333, 9999, 10000, 10001, 12345, 99999, 100000, 999999, 9999999, 99999999, 100000000, 100000001, 123456789, 4999999995, 2147483647];
  const pairs = edges.flatMap((s) => edges.filter((c) => c > 0).map((c) => [s, c]));
  // Rounding at the last digit: quotients that end in exactly half (1/32 = 0.03125, 5/8).
  pairs.push([1, 32], [5, 8], [1, 3], [2, 3], [14, 3], [29, 7], [1, 1 << 20], [2147483647, 3]);
  const { rows } = await t.db.query<{ v: string }>('SELECT (s::numeric / c::numeric)::text AS v FROM unnest($1::bigint[], $2::bigint[]) WITH ORDINALITY AS k(s, c, i) ORDER BY i',
    [pairs.map((p) => p[0]), pairs.map((p) => p[1])]);
  const wrong = pairs.map((p, i) => ({ p, ours: numericRatio(p[0], p[1]), theirs: rows[i].v })).filter((x) => x.ours !== x.theirs);
  expect(wrong).toEqual([]);
  expect(pairs.length).toBeGreaterThan(700);
});

test("every product's meta from memory is PostgreSQL's text, byte for byte (and absent past the last product)", async () => {
  await withLoaded({}, async (h) => {
    const expected = await truth();
    for (let p = 1; p <= MAX_PRODUCT; p++) expect(held(h.memory, p)).toBe(expected[p - 1]);
    expect(h.memory.answer(MAX_PRODUCT + 1)).toBeUndefined();
    // The cases this data was arranged for are really in it.
    expect(expected[0]).toContain('"Say \\"hi\\" \\\\ there"');
    expect(expected[1]).toContain('"value" : null');
    expect(expected[10]).toBe('{"product_id" : "11", "ratings" : {}, "recommended" : {}, "characteristics" : {}}');
    expect(h.memory.stats()).toMatchObject({ maxProduct: MAX_PRODUCT, dirty: 0, served: MAX_PRODUCT });
  });
});

test('a change heard makes its product dirty: not answered from memory until it is read back or loaded again', async () => {
  await withLoaded({}, async (h) => {
    const before = held(h.memory, 1);
    await t.db.query('UPDATE atelier.characteristics SET rating_sum = rating_sum + 5, rating_count = rating_count + 1 WHERE id = 1');
    // Within the feed's delay the answer goes; it never comes back stale.
    await until('the expected state', () => h.memory.answer(1) === undefined, 5000);
    expect(held(h.memory, 2)).toBe((await truth())[1]);
    expect(h.memory.stats().dirty).toBe(1);
    expect(before).not.toBe((await truth())[0]);
  });
});

test('a changed product is read back by its reader: answered from memory again, byte for byte, with no load', async () => {
  await withLoaded({}, async (h) => {
    // Sums and counts change (product 1); a product gets its first ratings row (5, none at the load).
    await t.db.query('UPDATE atelier.characteristics SET rating_sum = rating_sum + 4, rating_count = rating_count + 1 WHERE id = 2');
    await t.db.query('INSERT INTO atelier.product_ratings (product_id, r2, recommended) VALUES (5, 1, 1)');
    try {
      await until('both dirty', () => h.memory.stats().dirty === 2, 5000);
      expect(h.memory.answer(1, false)).toBeUndefined();
      await Promise.all([h.memory.readBack(1), h.memory.readBack(5)]);
      const expected = await truth();
      expect([held(h.memory, 1), held(h.memory, 5)]).toEqual([expected[0], expected[4]]);
      expect(expected[4]).toContain('"ratings" : {"2":"1"}');
      expect(h.memory.stats()).toMatchObject({ dirty: 0, refreshed: 2, loads: 1 });
    } finally {
      await t.db.query('UPDATE atelier.characteristics SET rating_sum = rating_sum - 4, rating_count = rating_count - 1 WHERE id = 2');
      await t.db.query('DELETE FROM atelier.product_ratings WHERE product_id = 5');
    }
  });
});

test('a product whose characteristics changed since the load stays dirty after a read-back (only a load lays them out)', async () => {
  await withLoaded({}, async (h) => {
    // Added (product 2), renamed with the same ids (10), removed (12).
    await t.db.query("INSERT INTO atelier.characteristics (id, product_id, name) VALUES (9, 2, 'Added')");
    await t.db.query("UPDATE atelier.characteristics SET name = 'Wide' WHERE id = 7");
    await t.db.query('DELETE FROM atelier.characteristics WHERE id = 8');
    try {
      await until('dirty', () => h.memory.stats().dirty === 3, 5000);
      const tried = [2, 10, 12].map((p) => h.memory.readBack(p));
      expect(tried.every((x) => x instanceof Promise)).toBe(true);
      await Promise.all(tried);
      expect([2, 10, 12].map((p) => h.memory.answer(p))).toEqual([undefined, undefined, undefined]);
      expect(h.memory.stats()).toMatchObject({ dirty: 3, refreshed: 0 });
      // Not tried again until the next load.
      expect([2, 10, 12].map((p) => h.memory.readBack(p))).toEqual([undefined, undefined, undefined]);
    } finally {
      await t.db.query('DELETE FROM atelier.characteristics WHERE id = 9');
      await t.db.query("UPDATE atelier.characteristics SET name = 'Width' WHERE id = 7");
      await t.db.query("INSERT INTO atelier.characteristics (id, product_id, name, rating_sum, rating_count) VALUES (8, 12, 'Size', 10000, 10001)");
    }
  });
});

test('with read-backs off (META_MEMORY_READ_BACK=off) a changed product waits for the next load', async () => {
  await withLoaded({ readBack: false }, async (h) => {
    await t.db.query('UPDATE atelier.characteristics SET rating_count = rating_count + 1 WHERE id = 4');
    try {
      await until('dirty', () => h.memory.stats().dirty === 1, 5000);
      expect(h.memory.readBack(2)).toBeUndefined();
      expect(h.memory.answer(2)).toBeUndefined();
    } finally {
      await t.db.query('UPDATE atelier.characteristics SET rating_count = rating_count - 1 WHERE id = 4');
    }
  });
});

/**
 * Serves `h`'s table over HTTP (with `readBudget`, if given) while product 4 is dirty (its
 * characteristic 5 has one more rating); `base` ends in product_id=. Undone after.
 */
async function servingWithFourDirty(h: ReturnType<typeof host>, readBudget: ReadBudget | undefined, fn: (base: string) => Promise<void>): Promise<void> {
  const server = createApp(h.db, { log: () => undefined, cache: h.cache, metaMemory: h.memory, readBudget }).listen(0, '127.0.0.1');
  await new Promise((r) => server.once('listening', r));
  const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}/reviews/meta?product_id=`;
  await t.db.query('UPDATE atelier.characteristics SET rating_count = rating_count + 1 WHERE id = 5');
  try {
    await until('dirty', () => h.memory.stats().dirty === 1, 5000);
    await fn(base);
  } finally {
    await new Promise((r) => server.close(r));
    await t.db.query('UPDATE atelier.characteristics SET rating_count = rating_count - 1 WHERE id = 5');
  }
}

test('through HTTP: a dirty product the response cache holds is answered from the cache, with no read-back', async () => {
  await withLoaded({}, async (h) => {
    await servingWithFourDirty(h, undefined, async (base) => {
      const url = `${base}4`;
      // A writer's read renders it from the database and puts it in the response cache.
      expect((await fetch(url, { headers: { cookie: 'atelier_wrote=4' } })).status).toBe(200);
      const before = h.memory.stats();
      const res = await fetch(url);
      expect(await res.text()).toBe((await truth())[3]);
      expect(res.headers.get('x-response-cache')).toBe('HIT');
      expect(h.memory.stats()).toMatchObject({ refreshed: before.refreshed, dirtyReads: before.dirtyReads + 1, served: before.served, dirty: 1 });
    });
  });
});

test('through HTTP: a client over its read budget is refused a read-back, as it was the render; clean products still answer', async () => {
  await withLoaded({}, async (h) => {
    const readBudget = new ReadBudget({ bytesPerSecond: 1, burstBytes: 100, trustedProxies: new Set() });
    await servingWithFourDirty(h, readBudget, async (base) => {
      // A writer's read is rendered from the database and charged: past the burst.
      expect((await fetch(`${base}1`, { headers: { cookie: 'atelier_wrote=1' } })).status).toBe(200);
      const refused = await fetch(`${base}4`);
      expect(refused.status).toBe(429);
      expect(((await refused.json()) as { error: string }).error).toMatch(/Too many expensive reads/);
      expect(h.memory.stats()).toMatchObject({ refreshed: 0, dirty: 1 });
      expect((await fetch(`${base}2`)).headers.get('x-response-cache')).toBe('HIT');
    });
  });
});

test('through HTTP: a read-back is charged to the client, as the render it replaces was; a clean product is not', async () => {
  await withLoaded({}, async (h) => {
    // A burst smaller than one meta answer: a single charged read puts the client over.
    const readBudget = new ReadBudget({ bytesPerSecond: 1, burstBytes: 10, trustedProxies: new Set() });
    await servingWithFourDirty(h, readBudget, async (base) => {
      // Answered from memory with no statement: costs the database nothing, charged nothing.
      expect((await fetch(`${base}2`)).status).toBe(200);
      expect(readBudget.anyOver()).toBe(false);
      const res = await fetch(`${base}4`);
      expect(await res.text()).toBe((await truth())[3]);
      expect(h.memory.stats()).toMatchObject({ refreshed: 1, dirty: 0 });
      expect(readBudget.anyOver()).toBe(true);
      // Over budget now: the next read-back is refused, as a render would be.
      await t.db.query('UPDATE atelier.characteristics SET rating_count = rating_count + 1 WHERE id = 1');
      try {
        await until('dirty again', () => h.memory.stats().dirty === 1, 5000);
        expect((await fetch(`${base}1`)).status).toBe(429);
        expect(h.memory.stats()).toMatchObject({ refreshed: 1, dirty: 1 });
      } finally {
        await t.db.query('UPDATE atelier.characteristics SET rating_count = rating_count - 1 WHERE id = 1');
      }
    });
  });
});

test('a change committed while the table loads is dirty in the table it loads', async () => {
  const h = host();
  const heard: number[] = [];
  h.cache.onChange((p) => p !== undefined && heard.push(p));
  // The load reads three product ids a statement: hold it before its second, so products 1-3
  // were read before the writes below (3 is then older than a change heard) and 4-6 after.
  let ranges = 0;
  let release!: () => void;
  const gate = new Promise<void>((r) => (release = r));
  let reached!: () => void;
  const atGate = new Promise<void>((r) => (reached = r));
  const query = h.db.query.bind(h.db);
  h.db.query = (async (text: string, params?: unknown[], name?: string) => {
    if (name === 'meta-memory-range' && ++ranges === 2) {
      reached();
      await gate;
    }
    return query(text, params, name);
  }) as typeof h.db.query;
  try {
    h.memory.start();
    await atGate;
    const stale = (await truth())[2];
    await t.db.query('UPDATE atelier.product_ratings SET r4 = r4 + 1 WHERE product_id = 3');
    await t.db.query('UPDATE atelier.characteristics SET rating_sum = rating_sum + 3, rating_count = rating_count + 1 WHERE id = 5');
    await until('both changes to be heard', () => heard.includes(3) && heard.includes(4), 5000);
    release();
    await until('the load', () => h.memory.stats().loads === 1, 10_000);
    expect(stale).not.toBe((await truth())[2]);
    expect(h.memory.answer(3)).toBeUndefined();
    // Read after its change, but heard during the load: dirty as well (the rule needs no more).
    expect(h.memory.answer(4)).toBeUndefined();
    // Products nobody changed are answered from the same load, before and after the pause.
    expect(held(h.memory, 1)).toBe((await truth())[0]);
    expect(held(h.memory, 10)).toBe((await truth())[9]);
  } finally {
    release();
    await h.stop();
  }
});

test('a flush or a loss of trust drops the table at once; it loads again once trusted', async () => {
  await withLoaded({}, async (h) => {
    h.cache.invalidateAll();
    expect(h.memory.answer(1)).toBeUndefined();
    await until('the second load', () => h.memory.stats().loads === 2, 10_000);
    expect(held(h.memory, 1)).toBe((await truth())[0]);
    h.cache.setTrusted(false);
    expect(h.memory.answer(1)).toBeUndefined();
    await new Promise((r) => setTimeout(r, 300));
    // Untrusted: no load (changes could go unheard).
    expect(h.memory.stats()).toMatchObject({ loads: 2, maxProduct: 0 });
    h.cache.setTrusted(true);
    await until('the third load', () => h.memory.stats().loads === 3, 10_000);
    expect(held(h.memory, 10)).toBe((await truth())[9]);
  });
});

test('a load overtaken by a flush is abandoned, never kept, and the next load follows it', async () => {
  await withLoaded({}, async (h) => {
    const lock = await lockTable('characteristics');
    try {
      h.cache.invalidateAll();
      await until('the second load to wait', () => waitingOn('characteristics'), 10_000);
      // The data this waiting load read may predate what the flush stands for.
      h.cache.invalidateAll();
    } finally {
      await lock.release();
    }
    await until('the load after it', () => h.memory.stats().loads === 2, 10_000);
    expect(h.memory.stats()).toMatchObject({ loads: 2, abandonedLoads: 1, failedLoads: 0 });
    expect(held(h.memory, 1)).toBe((await truth())[0]);
  });
});

test('close() during a load abandons it', async () => {
  const h = host();
  const lock = await lockTable('characteristics');
  try {
    h.memory.start();
    await until('the load to wait', () => waitingOn('characteristics'), 10_000);
    h.memory.close();
    await lock.release();
    await until('the load to stop', () => h.memory.stats().abandonedLoads === 1, 10_000);
    expect(h.memory.stats()).toMatchObject({ loads: 0, maxProduct: 0 });
    expect(h.memory.answer(1)).toBeUndefined();
  } finally {
    await lock.release();
    await h.stop();
  }
});

test('a failed load is retried, and says so', async () => {
  const h = host({ statementTimeoutMs: 300 });
  const lock = await lockTable('characteristics');
  try {
    h.memory.start();
    await until('a failed load', () => h.memory.stats().failedLoads >= 1, 10_000);
    expect(h.logs.some((l) => l.includes('load failed'))).toBe(true);
    expect(h.memory.answer(1)).toBeUndefined();
    await lock.release();
    await until('a load', () => h.memory.stats().loads === 1, 10_000);
    expect(held(h.memory, 1)).toBe((await truth())[0]);
  } finally {
    await lock.release();
    await h.stop();
  }
});

test('a table is answered from for at most its age limit, then loaded again', async () => {
  // Age 3 s (reloaded at 60-80 % of it), loads spaced 8 s: between 3 and 8 s after the load began it is too old.
  const h = host({ maxAgeMs: 3000, minLoadIntervalMs: 8000 });
  try {
    const before = performance.now();
    h.memory.start();
    await until('the first load', () => h.memory.stats().loads === 1, 10_000);
    const loaded = performance.now();
    expect(held(h.memory, 1)).toBe((await truth())[0]);
    // The load began between `before` and `loaded`: 3.1 s after `loaded` it is surely too old.
    await new Promise((r) => setTimeout(r, Math.max(0, loaded + 3100 - performance.now())));
    expect(performance.now() - before).toBeLessThan(8000);
    expect(h.memory.answer(1)).toBeUndefined();
    // Dropped, so its metrics say so.
    expect(h.memory.stats()).toMatchObject({ loads: 1, maxProduct: 0, bytes: 0 });
    await until('the second load', () => h.memory.stats().loads === 2, 15_000);
    expect(held(h.memory, 1)).toBe((await truth())[0]);
  } finally {
    await h.stop();
  }
});

test('a load is paced: after each range statement it pauses (1 - duty) / duty times as long as the statement took', async () => {
  // At a duty of 0.2 a load of four ranges of at least 40 ms takes at least 4 × 40 × 5 = 800
  // ms; unpaced, about 160 ms.
  const h = host({ loadDuty: 0.2 });
  const seen = slowStatements(h.db, 'meta-memory-range');
  try {
    const began = performance.now();
    h.memory.start();
    await until('the first load', () => h.memory.stats().loads === 1, 10_000);
    const loadMs = performance.now() - began;
    expect(seen.count).toBeGreaterThanOrEqual(4);
    expect(loadMs).toBeGreaterThanOrEqual(seen.took * 5 * 0.9);
  } finally {
    await h.stop();
  }
});

test('a reload while the table held keeps serving is paced at reloadDuty, the first load at loadDuty', async () => {
  const h = host({ loadDuty: 1, reloadDuty: 0.2, reloadDirtyMin: 0 });
  const seen = slowStatements(h.db, 'meta-memory-range');
  try {
    h.memory.start();
    await until('the first load', () => h.memory.stats().loads === 1, 10_000);
    // Unpaced: little more than its statements, from the first.
    expect(performance.now() - seen.first).toBeLessThan(seen.took * 3);
    seen.reset();
    const began = performance.now();
    await t.db.query('UPDATE atelier.characteristics SET rating_sum = rating_sum + 1, rating_count = rating_count + 1 WHERE id = 4');
    // The table held answers its clean products while the next loads.
    await until('the change heard', () => h.memory.answer(2) === undefined, 5000);
    expect(h.memory.answer(1)).toBeDefined();
    await until('the reload', () => h.memory.stats().loads === 2, 20_000);
    expect(seen.count).toBeGreaterThanOrEqual(4);
    expect(performance.now() - began).toBeGreaterThanOrEqual(seen.took * 5 * 0.9);
    expect(held(h.memory, 2)).toBe((await truth())[1]);
  } finally {
    await h.stop();
  }
});

test('a changed product nobody reads is read back once quiet (META_MEMORY_READ_BACK_AFTER_S), but not while requests wait for the primary, and answered from memory', async () => {
  // No statement timeout, and a long queue wait: the held connections and the waiting request stay as long as the test takes.
  await withLoaded({ sweepAfterMs: 300, queueTimeoutMs: 30_000, statementTimeoutMs: 0 }, async (h) => {
    // The host's two connections taken until released, and a request waiting behind them.
    const release = await holdPool(h.db, t.db, 2, 1);
    try {
      await t.db.query('UPDATE atelier.characteristics SET rating_sum = rating_sum + 1, rating_count = rating_count + 1 WHERE id = 4');
      await until('the change heard', () => h.memory.stats().dirty === 1, 5000);
      // Quiet for longer than sweepAfterMs, while the request waits: no read-back of its own.
      await until('turns skipped', () => h.memory.stats().sweepsSkippedBusy >= 3, 5000);
      expect({ queued: h.db.queueLength, swept: h.memory.stats().swept }).toEqual({ queued: 1, swept: 0 });
    } finally {
      await release();
    }
    // Not read: without the sweep it would stay dirty until the next load.
    await until('swept', () => h.memory.stats().swept === 1, 5000);
    expect(h.memory.stats()).toMatchObject({ dirty: 0, refreshed: 1, dirtyReads: 0 });
    expect(held(h.memory, 2)).toBe((await truth())[1]);
  });
});

test('loads again once enough of the products are dirty', async () => {
  await withLoaded({ reloadDirtyMin: 0 }, async (h) => {
    await t.db.query('UPDATE atelier.characteristics SET rating_sum = rating_sum + 1, rating_count = rating_count + 1 WHERE id = 4');
    await until('the reload', () => h.memory.stats().loads === 2, 10_000);
    expect(held(h.memory, 2)).toBe((await truth())[1]);
  });
});

test('loads begin at most once per interval, however often the table is dropped', async () => {
  const h = host({ minLoadIntervalMs: 3000 });
  try {
    const before = performance.now();
    h.memory.start();
    await until('the first load', () => h.memory.stats().loads === 1, 10_000);
    // A feed that drops and returns three times, a moment apart: each time the table is
    // dropped at once, and a load could begin in between were loads not spaced.
    for (let i = 0; i < 3; i++) {
      h.cache.setTrusted(false);
      h.cache.setTrusted(true);
      expect(h.memory.answer(1)).toBeUndefined();
      await new Promise((r) => setTimeout(r, 100));
    }
    if (performance.now() - before < 2500) {
      await new Promise((r) => setTimeout(r, 300));
      expect(h.memory.stats().loads).toBe(1);
    }
    await until('the second load', () => h.memory.stats().loads === 2, 10_000);
    expect(performance.now() - before).toBeGreaterThan(3000);
    await new Promise((r) => setTimeout(r, 1000));
    expect(h.memory.stats()).toMatchObject({ loads: 2, abandonedLoads: 0 });
    expect(held(h.memory, 1)).toBe((await truth())[0]);
  } finally {
    await h.stop();
  }
});

test('a table larger than its bound is not loaded, and says so', async () => {
  const h = host({ maxBytes: 100 });
  try {
    h.memory.start();
    await until('the log line', () => h.logs.some((l) => l.includes('more than META_MEMORY_MB')), 10_000);
    expect(h.memory.answer(1)).toBeUndefined();
    expect(h.memory.stats()).toMatchObject({ loads: 0, maxProduct: 0 });
  } finally {
    await h.stop();
  }
});

test('a stray product id far past the others neither sizes the table nor is answered from it', async () => {
  const stray = 2147483000;
  await t.db.query('INSERT INTO atelier.product_ratings (product_id, r5) VALUES ($1, 1)', [stray]);
  const h = host({ maxBytes: 1 << 20 });
  try {
    h.memory.start();
    await until('the load', () => h.memory.stats().loads === 1, 10_000);
    expect(h.memory.stats().maxProduct).toBe(MAX_PRODUCT);
    expect(h.memory.answer(stray)).toBeUndefined();
    expect(held(h.memory, 1)).toBe((await truth())[0]);
  } finally {
    await h.stop();
    await t.db.query('DELETE FROM atelier.product_ratings WHERE product_id = $1', [stray]);
  }
});

test('through HTTP: meta from memory, a writer reads past it, the writing host drops it before answering, the other on the notification', async () => {
  // Host a's change feed goes through a relay the test silences: what a knows of its own
  // write then comes from the write itself, not from the notification.
  const relay = await silentRelay(t.url);
  const a = host({ listenUrl: relay.url });
  const b = host();
  const servers: import('node:http').Server[] = [];
  try {
    a.memory.start();
    b.memory.start();
    await until('both loads', () => a.memory.stats().loads === 1 && b.memory.stats().loads === 1, 10_000);
    const urlOf = async (h: ReturnType<typeof host>) => {
      const server = createApp(h.db, { log: () => undefined, cache: h.cache, metaMemory: h.memory }).listen(0, '127.0.0.1');
      servers.push(server);
      await new Promise((r) => server.once('listening', r));
      return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    };
    const [ua, ub] = [await urlOf(a), await urlOf(b)];
    const first = await fetch(`${ua}/reviews/meta?product_id=3`);
    expect(first.headers.get('x-response-cache')).toBe('HIT');
    expect(await first.text()).toBe((await truth())[2]);
    expect(a.memory.stats().served).toBe(1);

    // A reader whose cookie names a product (nothing changed it) is rendered from the database.
    const servedB = b.memory.stats().served;
    const writer = await fetch(`${ub}/reviews/meta?product_id=10`, { headers: { cookie: 'atelier_wrote=10' } });
    expect(writer.headers.get('x-response-cache')).toBe('BYPASS');
    expect(await writer.text()).toBe((await truth())[9]);
    expect(b.memory.stats().served).toBe(servedB);

    relay.silent = true;
    const posted = await fetch(`${ua}/reviews`, {
      method: 'POST', headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ product_id: 3, rating: 1, body: LONG_BODY, recommend: true, name: 'memory', email: 'memory@example.com', characteristics: {} }),
    });
    expect(posted.status).toBe(201);
    expect(a.memory.answer(3)).toBeUndefined();
    expect(await (await fetch(`${ua}/reviews/meta?product_id=3`)).text()).toBe((await truth())[2]);

    // The other host, once it has heard: its next read of the product reads it back and is
    // answered from memory (no dirty read counted).
    await until('b to hear the write', () => b.memory.stats().dirty === 1, 5000);
    const before = b.memory.stats();
    const other = await fetch(`${ub}/reviews/meta?product_id=3`);
    expect(other.headers.get('x-response-cache')).toBe('HIT');
    expect(await other.text()).toBe((await truth())[2]);
    expect(b.memory.stats()).toMatchObject({ dirty: 0, dirtyReads: before.dirtyReads, refreshed: before.refreshed + 1, served: before.served + 1 });
  } finally {
    relay.silent = false;
    for (const s of servers) await new Promise((r) => s.close(r));
    await a.stop();
    await b.stop();
    relay.close();
  }
});

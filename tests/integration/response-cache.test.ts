// The hosts' response cache: its own rules (bounded, single-flight, a render in flight
// when its product changes is never stored), then two real hosts (each its own pool,
// cache and LISTEN connection) on one real PostgreSQL: exact after concurrent writes and
// reads on both, read-your-write on the writing host, the other host within a measured
// bound, and a lost or silently dead LISTEN connection never leaving stale answers.
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { createApp, type App } from '../../src/app';
import { Db, PRIMARY_READ, type ChannelListener, type ReadStamp } from '../../src/db';
import { followChanges } from '../../src/response-cache/invalidation-feed';
import { ResponseCache } from '../../src/response-cache/response-cache';
import { concurrently } from '../helpers/concurrently';
import { finishArrange, insertCharacteristics, insertReviews, LONG_BODY } from '../helpers/fixtures';
import { silentRelay } from '../helpers/relay';
import { createTestDatabase, type TestDatabase } from '../helpers/test-db';

const tick = () => new Promise((r) => setImmediate(r));

/** Polls `fn` until it returns true or `ms` pass; returns how long it took (or Infinity). */
async function within(ms: number, fn: () => Promise<boolean> | boolean): Promise<number> {
  const started = performance.now();
  while (performance.now() - started < ms) {
    if (await fn()) return performance.now() - started;
    await new Promise((r) => setTimeout(r, 5));
  }
  return Infinity;
}

/** A render that answers `text` once released (a read in flight while the test acts). */
function gated(text: string) {
  let release!: () => void;
  const gate = new Promise<void>((done) => (release = done));
  return { release, render: async () => { await gate; return r(text); } };
}

/** A render's result, read on the primary (proven) unless another stamp is given. */
const r = (text: string, stamp: ReadStamp = PRIMARY_READ) => ({ text, stamp });

describe('ResponseCache', () => {
  const big = () => new ResponseCache({ maxBytes: 1 << 20, ttlMs: 60_000 });

  test('concurrent misses for one key make one render, then it is a hit', async () => {
    const cache = big();
    let renders = 0;
    const render = async () => {
      renders++;
      await tick();
      return r('{"a":1}');
    };
    const results = await Promise.all(Array.from({ length: 20 }, () => cache.get(1, 'k', render)));
    expect(renders).toBe(1);
    expect(results.every((r) => r.outcome === 'MISS' && r.entry.body.toString() === '{"a":1}')).toBe(true);
    expect((await cache.get(1, 'k', render)).outcome).toBe('HIT');
    expect(renders).toBe(1);
    expect(cache.stats()).toMatchObject({ misses: 20, coalesced: 19, hits: 1, entries: 1 });
  });

  test('invalidating a product drops its entries and only its entries', async () => {
    const cache = big();
    await cache.get(1, 'a', async () => r('1a'));
    await cache.get(1, 'b', async () => r('1b'));
    await cache.get(2, 'c', async () => r('2c'));
    cache.invalidate(1);
    expect((await cache.get(1, 'a', async () => r('new'))).entry.body.toString()).toBe('new');
    expect((await cache.get(2, 'c', async () => r('new'))).outcome).toBe('HIT');
  });

  test('a render in flight when its product is invalidated answers its callers but is not stored', async () => {
    const cache = big();
    const before = gated('before the write');
    const early = cache.get(1, 'k', before.render);
    await tick();
    cache.invalidate(1);
    // A reader arriving after the write does not join the old render.
    const late = cache.get(1, 'k', async () => r('after the write'));
    before.release();
    expect((await early).entry.body.toString()).toBe('before the write');
    expect((await late).entry.body.toString()).toBe('after the write');
    expect((await cache.get(1, 'k', async () => r('third'))).entry.body.toString()).toBe('after the write');
  });

  test('untrusted, it stores nothing and every read renders; trusted again, it starts empty', async () => {
    const cache = new ResponseCache({ maxBytes: 1 << 20, ttlMs: 60_000, trusted: false });
    expect((await cache.get(1, 'k', async () => r('x'))).outcome).toBe('BYPASS');
    expect((await cache.get(1, 'k', async () => r('y'))).entry.body.toString()).toBe('y');
    cache.setTrusted(true);
    await cache.get(1, 'k', async () => r('z'));
    expect((await cache.get(1, 'k', async () => r('w'))).entry.body.toString()).toBe('z');
    cache.setTrusted(false);
    expect((await cache.get(1, 'k', async () => r('v'))).entry.body.toString()).toBe('v');
  });

  test('memory stays within its bound, evicting the least recently used', async () => {
    const cache = new ResponseCache({ maxBytes: 64 * 1024, ttlMs: 60_000 });
    for (let i = 0; i < 200; i++) await cache.get(i, `k${i}`, async () => r('x'.repeat(1000)));
    const s = cache.stats();
    expect(s.bytes).toBeLessThanOrEqual(64 * 1024);
    expect(s.evictions).toBeGreaterThan(100);
    expect((await cache.get(199, 'k199', async () => r('gone'))).outcome).toBe('HIT');
    expect((await cache.get(0, 'k0', async () => r('gone'))).outcome).toBe('MISS');
  });

  test('a body larger than the whole cache is answered, not stored, and leaves no key behind', async () => {
    const cache = new ResponseCache({ maxBytes: 4096, ttlMs: 60_000 });
    const big = 'x'.repeat(8192);
    for (let i = 0; i < 500; i++) expect((await cache.get(i % 7, `k${i}`, async () => r(big))).entry.body.length).toBe(8192);
    await cache.get(1, 'small', async () => r('y'));
    expect(cache.stats()).toMatchObject({ entries: 1, indexedKeys: 1 });
    cache.invalidate(1);
    expect(cache.stats()).toMatchObject({ entries: 0, indexedKeys: 0 });
  });

  test('a render whose read is not proven fresh (a standby behind the fence, a fallback) is answered once, marked, and not stored', async () => {
    const cache = big();
    const behind: ReadStamp = { exact: false };
    const first = await cache.get(1, 'k', async () => r('old', behind));
    expect({ body: first.entry.body.toString(), proven: first.proven }).toEqual({ body: 'old', proven: false });
    const again = await cache.get(1, 'k', async () => r('new'));
    expect({ body: again.entry.body.toString(), outcome: again.outcome, proven: again.proven }).toEqual({ body: 'new', outcome: 'MISS', proven: true });
    expect((await cache.get(1, 'k', async () => r('third'))).outcome).toBe('HIT');
    // The writer's refresh too.
    cache.invalidate(1);
    expect((await cache.refresh(1, 'k', async () => r('fallback', behind))).proven).toBe(false);
    expect((await cache.get(1, 'k', async () => r('primary'))).entry.body.toString()).toBe('primary');
  });

  test('off (0 bytes) or untrusted, a render overtaken by a change heard while it ran is answered but not proven (nginx must not keep it)', async () => {
    for (const cache of [new ResponseCache({ maxBytes: 0, ttlMs: 1 }), new ResponseCache({ maxBytes: 1 << 20, ttlMs: 60_000, trusted: false })]) {
      const before = gated('before the write');
      const overtaken = cache.get(1, 'k', before.render);
      await tick();
      cache.invalidate(1);
      before.release();
      expect((await overtaken).proven).toBe(false);
      expect((await cache.get(1, 'k', async () => r('after'))).proven).toBe(true);
    }
  });

  test('off (0 bytes), every read renders', async () => {
    const cache = new ResponseCache({ maxBytes: 0, ttlMs: 1 });
    expect(cache.enabled).toBe(false);
    await cache.get(1, 'k', async () => r('a'));
    expect((await cache.get(1, 'k', async () => r('b'))).outcome).toBe('BYPASS');
  });
});

interface Host {
  url: string;
  cache: ResponseCache;
  feed: ChannelListener;
  db: Db;
  server: http.Server;
}

async function startHost(databaseUrl: string, listenUrl = databaseUrl, heartbeatMs = 1000): Promise<Host> {
  const db = new Db({ connectionString: databaseUrl, poolSize: 4 });
  const listenDb = listenUrl === databaseUrl ? db : new Db({ connectionString: listenUrl, poolSize: 1 });
  const cache = new ResponseCache({ maxBytes: 8 << 20, ttlMs: 600_000, trusted: false });
  const feed = followChanges(listenDb, cache, () => undefined, { heartbeatMs });
  const app: App = createApp(db, { log: () => undefined, cache });
  const server = app.listen(0, '127.0.0.1');
  await new Promise((r) => server.once('listening', r));
  expect(await within(10_000, () => cache.isTrusted)).toBeLessThan(Infinity);
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, cache, feed, db, server };
}

async function stopHost(h: Host): Promise<void> {
  await h.feed.close();
  await new Promise((r) => h.server.close(r));
  await h.db.close();
}

const text = async (url: string, init?: RequestInit) => {
  const res = await fetch(url, init);
  return { status: res.status, body: await res.text(), cache: res.headers.get('x-response-cache') };
};

const post = (host: Host, body: Record<string, unknown>) => fetch(`${host.url}/reviews`, {
  method: 'POST', headers: { 'content-type': 'application/json' },
  body: JSON.stringify({ rating: 4, body: LONG_BODY, recommend: true, name: 'cache', email: 'cache@example.com', ...body }),
});

describe('two hosts, one database', () => {
  let t: TestDatabase;
  let a: Host;
  let b: Host;
  let truth: App;
  const PRODUCTS = [1, 2, 3, 4];
  // Every read variant the hammer below touches.
  const urls = PRODUCTS.flatMap((p) => [
    `/reviews/meta?product_id=${p}`,
    ...['relevant', 'newest', 'helpful'].flatMap((s) => [`/reviews?product_id=${p}&sort=${s}`, `/reviews?product_id=${p}&sort=${s}&page=2&count=3`]),
  ]);

  beforeAll(async () => {
    t = await createTestDatabase();
    await insertCharacteristics(t.db, PRODUCTS.map((p) => ({ id: p, product_id: p, name: 'Fit' })));
    await insertReviews(t.db, Array.from({ length: 40 }, (_, i) => ({
      id: i + 1, product_id: 1 + (i % 4), rating: 1 + (i % 5), date: `2021-01-${String(1 + (i % 28)).padStart(2, '0')}T00:00:00.000Z`,
      helpfulness: i % 7, ratings: { [1 + (i % 4)]: 1 + (i % 5) },
    })));
    await finishArrange(t.db);
    a = await startHost(t.url);
    b = await startHost(t.url);
    // The database's own answer, rendered fresh for every request (no cache).
    truth = createApp(t.db, { log: () => undefined });
  });

  afterAll(async () => {
    await stopHost(a);
    await stopHost(b);
    await t.drop();
  });

  const fresh = (path: string) => new Promise<string>((resolve, reject) => {
    const server = truth.listen(0, '127.0.0.1', async () => {
      try {
        resolve((await text(`http://127.0.0.1:${(server.address() as AddressInfo).port}${path}`)).body);
      } catch (err) {
        reject(err);
      } finally {
        server.close();
      }
    });
  });

  test('the writing host shows its own write on the very next read', async () => {
    const url = `${a.url}/reviews/meta?product_id=1`;
    await text(url);
    const cached = await text(url);
    expect(cached.cache).toBe('HIT');
    expect((await post(a, { product_id: 1, rating: 1, characteristics: { 1: 1 } })).status).toBe(201);
    const after = await text(url);
    expect(after.cache).toBe('MISS');
    expect(after.body).not.toBe(cached.body);
    expect(after.body).toBe(await fresh('/reviews/meta?product_id=1'));
  });

  test('the other host drops its copy within a bound (measured and printed)', async () => {
    const delays: number[] = [];
    for (let i = 0; i < 10; i++) {
      const path = `/reviews?product_id=2&sort=newest&count=${10 + i}`;
      const before = await text(`${b.url}${path}`);
      expect((await text(`${b.url}${path}`)).cache).toBe('HIT');
      expect((await post(a, { product_id: 2, name: `other-host-${i}` })).status).toBe(201);
      const written = performance.now();
      const ms = await within(5000, async () => (await text(`${b.url}${path}`)).body !== before.body);
      delays.push(ms === Infinity ? ms : performance.now() - written);
    }
    delays.sort((x, y) => x - y);
    console.log(`[cache] other host saw the write after: median ${delays[5].toFixed(1)} ms, max ${delays[9].toFixed(1)} ms (10 writes)`);
    // A hang detector, not a latency target: the notification arrives in milliseconds.
    expect(delays[9]).toBeLessThan(5000);
  });

  test("an operator moving a photo to another product's review changes both products' cached lists", async () => {
    // Review 1 is product 1's, review 2 product 2's (arranged above).
    const list = (p: number) => `/reviews?product_id=${p}&sort=newest&count=50`;
    const { rows } = await t.db.query<{ id: number }>("INSERT INTO atelier.reviews_photos (review_id, url) VALUES (1, 'https://img.example/moved.jpg') RETURNING id");
    expect(await within(5000, async () => (await text(`${a.url}${list(1)}`)).body.includes('moved.jpg'))).toBeLessThan(Infinity);
    // Both lists cached (the insert's own notification may land after the first render).
    for (const p of [1, 2]) expect(await within(5000, async () => (await text(`${a.url}${list(p)}`)).cache === 'HIT')).toBeLessThan(Infinity);
    await t.db.query('UPDATE atelier.reviews_photos SET review_id = 2 WHERE id = $1', [rows[0].id]);
    for (const p of [1, 2]) {
      const truthNow = await fresh(list(p));
      expect(await within(5000, async () => (await text(`${a.url}${list(p)}`)).body === truthNow)).toBeLessThan(Infinity);
    }
    expect((await text(`${a.url}${list(1)}`)).body).not.toContain('moved.jpg');
  });

  test("a read carrying the writer's cookie for the product is rendered fresh, even before this host hears the write", async () => {
    const path = '/reviews/meta?product_id=3';
    await text(`${b.url}${path}`);
    const stale = await text(`${b.url}${path}`);
    expect(stale.cache).toBe('HIT');
    // A write this host has not heard of (triggers off for this session: no NOTIFY), as when
    // the writer's next read reaches it before the notification does.
    const unheard = await t.db.connect();
    try {
      await unheard.query('SET session_replication_role = replica');
      await unheard.query('UPDATE atelier.product_ratings SET r1 = r1 + 5 WHERE product_id = 3');
      const truthNow = await fresh(path);
      expect(truthNow).not.toBe(stale.body);
      expect((await text(`${b.url}${path}`)).body).toBe(stale.body);
      const writer = await text(`${b.url}${path}`, { headers: { cookie: 'other=1; atelier_wrote=12.3' } });
      expect(writer.body).toBe(truthNow);
      // And it refreshed the cache for everyone.
      expect((await text(`${b.url}${path}`)).body).toBe(truthNow);
      // A cookie naming other products changes nothing.
      expect((await text(`${b.url}${path}`, { headers: { cookie: 'atelier_wrote=33.31' } })).cache).toBe('HIT');
    } finally {
      await unheard.query('UPDATE atelier.product_ratings SET r1 = r1 - 5 WHERE product_id = 3');
      unheard.release();
    }
  });

  test('after writers and readers hammer both hosts, every cached answer on both equals a fresh read', async () => {
    let posted = 0;
    await concurrently(600, 12, async (i) => {
      const host = i % 2 ? a : b;
      const product = PRODUCTS[i % 4];
      const roll = i % 20;
      if (roll === 0) {
        if ((await post(host, { product_id: product, rating: 1 + (i % 5), characteristics: { [product]: 1 + (i % 5) } })).status === 201) posted++;
      } else if (roll === 1) {
        await fetch(`${host.url}/reviews/${1 + (i % 40)}/helpful`, { method: 'PUT' });
      } else if (roll === 2 && i % 120 === 2) {
        await fetch(`${host.url}/reviews/${1 + (i % 40)}/report`, { method: 'PUT' });
      } else {
        await text(`${host.url}${urls[i % urls.length]}`);
      }
    });
    expect(posted).toBeGreaterThan(25);
    // Quiet now. Each host's answer for every variant must be the database's.
    const mismatches: string[] = [];
    for (const path of urls) {
      const truthBody = await fresh(path);
      for (const [name, host] of [['a', a], ['b', b]] as const) {
        // Allow the last notifications to arrive (milliseconds), then it must be exact.
        const ms = await within(2000, async () => (await text(`${host.url}${path}`)).body === truthBody);
        if (ms === Infinity) mismatches.push(`${name} ${path}`);
      }
    }
    expect(mismatches).toEqual([]);
    const stats = [a.cache.stats(), b.cache.stats()];
    console.log(`[cache] after the hammer: ${JSON.stringify(stats.map((s) => ({ hits: s.hits, misses: s.misses, coalesced: s.coalesced, invalidations: s.invalidations })))}`);
    expect(stats.every((s) => s.hits > 0 && s.invalidations > 0)).toBe(true);
  }, 60_000);

  test('when its LISTEN connection is killed, a host serves no stale answer, and caches again once back', async () => {
    const path = '/reviews?product_id=3&sort=helpful&count=20';
    await text(`${a.url}${path}`);
    expect((await text(`${a.url}${path}`)).cache).toBe('HIT');
    const pid = a.feed.backendPid!;
    await t.db.query('SELECT pg_terminate_backend($1)', [pid]);
    // Noticed at once (the connection closes): until it listens again, reads bypass the cache.
    expect(await within(2000, () => !a.cache.isTrusted || a.feed.backendPid !== pid)).toBeLessThan(Infinity);
    // A write the host cannot hear about (straight to the database, not through a host).
    await t.db.query('UPDATE atelier.reviews SET helpfulness = helpfulness + 1000 WHERE id = 3');
    const during = await text(`${a.url}${path}`);
    expect(during.body).toBe(await fresh(path));
    expect(await within(10_000, () => a.cache.isTrusted && a.feed.backendPid !== pid)).toBeLessThan(Infinity);
    const after = await text(`${a.url}${path}`);
    expect(after.body).toBe(await fresh(path));
    expect((await text(`${a.url}${path}`)).cache).toBe('HIT');
  });

  test('when its LISTEN connection goes silent (no close, no answer), the heartbeat stops the host trusting its cache', async () => {
    const relay = await silentRelay(t.url, { refuseWhileSilent: true });
    const c = await startHost(t.url, relay.url, 300);
    try {
      const path = '/reviews/meta?product_id=4';
      await text(`${c.url}${path}`);
      expect((await text(`${c.url}${path}`)).cache).toBe('HIT');
      relay.silent = true;
      await t.db.query('UPDATE atelier.characteristics SET name = name WHERE product_id = 4');
      await t.db.query('UPDATE atelier.product_ratings SET r5 = r5 + 7 WHERE product_id = 4');
      // Within about two heartbeats the host distrusts its cache and answers from the database.
      const ms = await within(5000, () => !c.cache.isTrusted);
      console.log(`[cache] silent LISTEN connection detected after ${ms.toFixed(0)} ms (heartbeat 300 ms)`);
      expect(ms).toBeLessThan(5000);
      expect((await text(`${c.url}${path}`)).body).toBe(await fresh(path));
      relay.silent = false;
      relay.dropConnections();
      expect(await within(10_000, () => c.cache.isTrusted)).toBeLessThan(Infinity);
      expect((await text(`${c.url}${path}`)).body).toBe(await fresh(path));
    } finally {
      await stopHost(c);
      relay.close();
      await t.db.query('UPDATE atelier.product_ratings SET r5 = r5 - 7 WHERE product_id = 4');
    }
  }, 30_000);

  test('an import swap (NOTIFY *) empties every host', async () => {
    await text(`${b.url}/reviews/meta?product_id=1`);
    expect((await text(`${b.url}/reviews/meta?product_id=1`)).cache).toBe('HIT');
    await t.db.query("SELECT pg_notify('atelier_review_changes', '*')");
    expect(await within(2000, async () => (await text(`${b.url}/reviews/meta?product_id=1`)).cache === 'MISS')).toBeLessThan(Infinity);
  });
});

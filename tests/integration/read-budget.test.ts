// Issue 19 #12: the read limit counts requests, not work. One client asking for large,
// uncached pages (count=1000, every sort and page) gets JSON 429s once it has rendered its
// budget, while another client is served as before, and its own cached pages still answer.
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { createApp } from '../../src/app';
import { ResponseCache } from '../../src/response-cache/response-cache';
import { ReadBudget } from '../../src/reviews/read-budget';
import { finishArrange, insertReviews } from '../helpers/fixtures';
import { createTestDatabase, type TestDatabase } from '../helpers/test-db';

let t: TestDatabase;
let server: http.Server;
let base: string;

beforeAll(async () => {
  t = await createTestDatabase();
  await insertReviews(t.db, Array.from({ length: 600 }, (_, i) => ({
    id: i + 1, product_id: 1, rating: 1 + (i % 5), date: `2021-01-01T00:00:${String(i % 60).padStart(2, '0')}.000Z`, helpfulness: i % 13,
  })));
  await finishArrange(t.db);
  // 4 KiB/s, 256 KiB of debt: two count=1000 pages of this product (~150 KiB each) put a
  // client over for ~10 s, longer than this file runs on a slow machine (64 KiB/s let it
  // back in within a quarter second); the clients are told apart by X-Forwarded-For.
  const budget = new ReadBudget({ bytesPerSecond: 4 * 1024, burstBytes: 256 * 1024, trustedProxies: new Set(['127.0.0.1', '::ffff:127.0.0.1']) });
  server = createApp(t.db, { log: () => undefined, cache: new ResponseCache({ maxBytes: 64 << 20, ttlMs: 60_000 }), readBudget: budget }).listen(0, '127.0.0.1');
  await new Promise((r) => server.once('listening', r));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterAll(async () => {
  await new Promise((r) => server.close(r));
  await t.drop();
});

const get = async (path: string, client: string) => {
  const res = await fetch(`${base}${path}`, { headers: { 'x-forwarded-for': `203.0.113.9, ${client}` } });
  return { status: res.status, retryAfter: res.headers.get('retry-after'), body: await res.text(), cache: res.headers.get('x-response-cache') };
};

test('a client rendering large uncached pages gets 429s past its budget; another client and its own cached pages are served', async () => {
  const statuses: number[] = [];
  const first = await get('/reviews?product_id=1&count=1000&sort=newest', '10.0.0.1');
  expect(first.status).toBe(200);
  expect(first.body.length).toBeGreaterThan(100_000);
  for (const sort of ['helpful', 'relevant']) {
    for (let count = 990; count < 1000; count++) statuses.push((await get(`/reviews?product_id=1&count=${count}&sort=${sort}`, '10.0.0.1')).status);
  }
  expect(statuses.filter((s) => s === 200).length).toBeGreaterThan(0);
  expect(statuses.filter((s) => s === 429).length).toBeGreaterThan(10);
  const refused = await get('/reviews?product_id=1&count=500&sort=helpful', '10.0.0.1');
  expect(refused.status).toBe(429);
  expect(Number(refused.retryAfter)).toBeGreaterThanOrEqual(1);
  expect(JSON.parse(refused.body).error).toMatch(/expensive reads/);
  // Its cached page costs nothing: still served.
  const cached = await get('/reviews?product_id=1&count=1000&sort=newest', '10.0.0.1');
  expect({ status: cached.status, cache: cached.cache }).toEqual({ status: 200, cache: 'HIT' });
  // Another client (another address behind the same proxy) is served, large pages included.
  expect((await get('/reviews?product_id=1&count=999&sort=newest', '10.0.0.2')).status).toBe(200);
  expect((await get('/reviews/meta?product_id=1', '10.0.0.2')).status).toBe(200);
});

test('a client that disconnects while its render waits is still charged, to itself (its address is taken before the wait)', async () => {
  // A host of its own: nobody over budget yet, so nothing has asked the connection for its peer.
  const budget = new ReadBudget({ bytesPerSecond: 4 * 1024, burstBytes: 256 * 1024, trustedProxies: new Set(['127.0.0.1', '::ffff:127.0.0.1']) });
  const own = createApp(t.db, { log: () => undefined, cache: new ResponseCache({ maxBytes: 64 << 20, ttlMs: 60_000 }), readBudget: budget }).listen(0, '127.0.0.1');
  await new Promise((r) => own.once('listening', r));
  const path = (count: number) => `/reviews?product_id=1&count=${count}&sort=newest`;
  const headers = { 'x-forwarded-for': '10.0.0.5' };
  const lock = await t.db.connect();
  // Only this database's lock waits (every test database has the same table oids).
  const waiting = async () => (await t.db.query<{ n: number }>(
    "SELECT count(*)::int AS n FROM pg_locks l WHERE l.relation = 'atelier.reviews'::regclass AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()) AND NOT l.granted")).rows[0].n > 0;
  try {
    // ~150 KiB rendered and charged: under the 256 KiB burst.
    const first = await fetch(`http://127.0.0.1:${(own.address() as AddressInfo).port}${path(996)}`, { headers });
    expect(first.status).toBe(200);
    await first.text();
    expect(budget.anyOver()).toBe(false);
    // The next render waits behind a lock; the client gives up and its connection (a new
    // one: no earlier charge has asked it for its peer) closes before the render ends.
    await lock.query('BEGIN');
    await lock.query('LOCK TABLE atelier.reviews IN ACCESS EXCLUSIVE MODE');
    const gaveUp = new Promise<string>((resolve) => {
      const req = http.request({ host: '127.0.0.1', port: (own.address() as AddressInfo).port, path: path(995), headers, agent: false }, () => resolve('answered'));
      req.on('error', () => resolve('aborted'));
      void (async () => {
        for (let i = 0; i < 100 && !(await waiting()); i++) await new Promise((r) => setTimeout(r, 20));
        resolve(await waiting() ? 'waiting' : 'never waited');
        req.destroy();
      })();
      req.end();
    });
    expect(await gaveUp).toBe('waiting');
    await new Promise((r) => setTimeout(r, 300));
    await lock.query('ROLLBACK');
    // The render ends and its ~150 KiB are charged to 10.0.0.5 (not to a peer the closed
    // connection can no longer name): past the burst now.
    for (let i = 0; i < 100 && !budget.anyOver(); i++) await new Promise((r) => setTimeout(r, 20));
    expect(budget.retryAfter('10.0.0.5')).toBeGreaterThan(0);
    expect(budget.retryAfter('')).toBe(0);
  } finally {
    await lock.query('ROLLBACK').catch(() => undefined);
    lock.release();
    own.closeAllConnections();
    await new Promise((r) => own.close(r));
  }
});

test('the header of an untrusted peer is not believed, and a long X-Forwarded-For costs one scan', () => {
  const budget = new ReadBudget({ bytesPerSecond: 1, burstBytes: 1, trustedProxies: new Set(['10.9.9.9']) });
  const req = (peer: string, xff: string) => ({ socket: { remoteAddress: peer }, headers: { 'x-forwarded-for': xff } }) as unknown as http.IncomingMessage;
  expect(budget.clientOf(req('127.0.0.1', '10.0.0.1'))).toBe('127.0.0.1');
  expect(budget.clientOf(req('10.9.9.9', '1.1.1.1, 10.0.0.7'))).toBe('10.0.0.7');
  expect(budget.clientOf(req('10.9.9.9', `${'1.2.3.4,'.repeat(100_000)}10.0.0.8`))).toBe('10.0.0.8');
});

test('the debt drains at the budget rate', () => {
  const budget = new ReadBudget({ bytesPerSecond: 1000, burstBytes: 2000, trustedProxies: new Set() });
  budget.charge('a', 5000, 0);
  expect(budget.anyOver(0)).toBe(true);
  expect(budget.retryAfter('a', 0)).toBeCloseTo(3);
  expect(budget.retryAfter('a', 2000)).toBeCloseTo(1);
  expect(budget.retryAfter('a', 3000)).toBe(0);
  expect(budget.anyOver(3001)).toBe(false);
  expect(budget.retryAfter('b', 0)).toBe(0);
});

test("past its budget, a client gets no database render through the writer's cookie; a genuine writer still reads its write", async () => {
  // Client 10.0.0.5 over its budget (its large misses), the page it holds cached.
  await get('/reviews?product_id=1&count=1000&sort=helpful&page=2', '10.0.0.5');
  for (let count = 950; count < 960; count++) await get(`/reviews?product_id=1&count=${count}&sort=relevant`, '10.0.0.5');
  expect((await get('/reviews?product_id=1&count=777&sort=newest', '10.0.0.5')).status).toBe(429);
  const renders = t.db.batched.requests;
  const statuses: number[] = [];
  for (let i = 0; i < 5; i++) {
    const res = await fetch(`${base}/reviews?product_id=1&count=1000&sort=helpful&page=2`, { headers: { 'x-forwarded-for': '10.0.0.5', cookie: 'atelier_wrote=1' } });
    await res.arrayBuffer();
    statuses.push(res.status);
  }
  // Counted where the renders happen (each read statement's requests), not by status.
  expect({ statuses, renders: t.db.batched.requests - renders }).toEqual({ statuses: [429, 429, 429, 429, 429], renders: 0 });
  // A writer within its budget: its vote, then its read of the product, fresh (not the cached page).
  const before = await get('/reviews?product_id=1&count=3&sort=helpful', '10.0.0.6');
  const top = JSON.parse(before.body).results[0];
  const vote = await fetch(`${base}/reviews/${top.review_id}/helpful`, { method: 'PUT', headers: { 'x-forwarded-for': '10.0.0.6' } });
  const cookie = vote.headers.get('set-cookie')!.split(';')[0];
  const res = await fetch(`${base}/reviews?product_id=1&count=3&sort=helpful`, { headers: { 'x-forwarded-for': '10.0.0.6', cookie } });
  expect(res.status).toBe(200);
  expect(((await res.json()) as { results: { review_id: number; helpfulness: number }[] }).results.find((r) => r.review_id === top.review_id)?.helpfulness).toBe(top.helpfulness + 1);
});

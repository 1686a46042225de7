// Concurrent cold GET /reviews share statements (src/batched-query.ts): whatever rides
// together, each request gets exactly the answer it gets alone, and batching does happen.
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { createApp } from '../../src/app';
import { Db } from '../../src/db';
import { ReviewRepository, type ListPage } from '../../src/reviews/repository';
import type { Sort } from '../../src/reviews/schemas';
import { finishArrange, insertReviews, type ReviewRow } from '../helpers/fixtures';
import { createTestDatabase, type TestDatabase } from '../helpers/test-db';

let t: TestDatabase;
const PRODUCTS = 30;

beforeAll(async () => {
  t = await createTestDatabase();
  // Products 1..30 with 0..9 reviews each: varied ratings, helpfulness, dates, photos, a few reported.
  const rows: ReviewRow[] = [];
  let id = 1;
  let photo = 1;
  for (let p = 1; p <= PRODUCTS; p++) {
    for (let k = 0; k < p % 10; k++, id++) {
      rows.push({
        id, product_id: p, rating: 1 + ((id * 7) % 5), helpfulness: (id * 13) % 6, reported: id % 11 === 0,
        date: new Date(Date.UTC(2020, id % 12, 1 + (id % 27), id % 24)).toISOString(),
        photos: id % 3 === 0 ? [{ id: photo++, url: `https://img.example/${id}/a.jpg` }, { id: photo++, url: `https://img.example/${id}/b.jpg` }] : [],
      });
    }
  }
  await insertReviews(t.db, rows);
  await finishArrange(t.db);
});

afterAll(async () => {
  await t.drop();
});

interface Ask { product: number; sort: Sort; page: number; count: number; rating?: number[] }
const SORTS: Sort[] = ['newest', 'helpful', 'relevant'];
const asks: Ask[] = Array.from({ length: 120 }, (_, i) => ({
  product: 1 + (i % (PRODUCTS + 2)), // 31 and 32 have no reviews
  sort: SORTS[i % 3],
  page: 1 + (i % 4 === 3 ? 1 : 0),
  count: [5, 2, 3, 10][i % 4],
  rating: i % 5 === 4 ? [1 + (i % 5), 5] : undefined,
}));
const pathOf = (a: Ask) => `/reviews?product_id=${a.product}&sort=${a.sort}&page=${a.page}&count=${a.count}${a.rating ? `&rating=${a.rating.join(',')}` : ''}`;

test('requests answered together get exactly what each gets alone', async () => {
  // Alone: one after another, every statement is a batch of one.
  const alone = new ReviewRepository(t.db);
  const expected: ListPage[] = [];
  for (const a of asks) expected.push((await alone.list(a.product, a.sort, a.count, (a.page - 1) * a.count, a.rating)).value);

  // Together: all at once over HTTP, through a host with one connection (no response cache: createApp without one).
  let statements = 0;
  const db = new Db({ connectionString: t.url, poolSize: 1, queueTimeoutMs: 10_000, genericPlans: true, onQuery: () => { statements++; } });
  const server = http.createServer(createApp(db, { log: () => undefined })).listen(0);
  try {
    const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    const answers = await Promise.all(asks.map(async (a) => {
      const res = await fetch(base + pathOf(a));
      return { status: res.status, total: res.headers.get('x-total-count'), body: (await res.json()) as { results: unknown[] } };
    }));
    answers.forEach((got, i) => {
      const a = asks[i];
      expect({ path: pathOf(a), status: got.status, total: got.total, body: got.body }).toEqual({
        path: pathOf(a), status: 200, total: String(expected[i].total),
        body: { product: String(a.product), page: a.page - 1, count: a.count, results: JSON.parse(expected[i].results) },
      });
    });
    // Some products have reviews on the pages asked for (the comparison is not of empty lists).
    expect(answers.filter((r) => r.body.results.length > 0).length).toBeGreaterThan(60);
    // How many statements that took over HTTP depends on how the arrivals spread (42 and
    // 93 of 120 in two runs): batching itself is checked where it is deterministic.
    // Asked in one tick, the 40 requests of each sort order make two statements (32 + 8).
    statements = 0;
    const repo = new ReviewRepository(db);
    const direct = await Promise.all(asks.map((a) => repo.list(a.product, a.sort, a.count, (a.page - 1) * a.count, a.rating)));
    expect(direct.map((d) => d.value)).toEqual(expected);
    expect(statements).toBe(6);
  } finally {
    server.closeAllConnections();
    server.close();
    await db.close();
  }
});

test('a batch that fails fails every member with the same clean error, and the next batch runs', async () => {
  const db = new Db({ connectionString: t.url, poolSize: 1, queueTimeoutMs: 10_000, statementTimeoutMs: 300, genericPlans: true });
  const repo = new ReviewRepository(db);
  const locker = await t.db.connect();
  try {
    await locker.query('BEGIN');
    await locker.query('LOCK TABLE atelier.reviews IN ACCESS EXCLUSIVE MODE');
    const outcomes = await Promise.allSettled([1, 2, 3, 4].map((p) => repo.list(p, 'newest', 5, 0)));
    expect(outcomes.map((o) => o.status)).toEqual(['rejected', 'rejected', 'rejected', 'rejected']);
    for (const o of outcomes) expect((o as PromiseRejectedResult).reason).toMatchObject({ status: 503 });
    await locker.query('ROLLBACK');
    const { value: page } = await repo.list(2, 'newest', 5, 0);
    expect(JSON.parse(page.results)).toHaveLength(2);
  } finally {
    await locker.query('ROLLBACK').catch(() => undefined);
    locker.release();
    await db.close();
  }
});

test('meta requests answered together get exactly what each gets alone', async () => {
  const alone = new ReviewRepository(t.db);
  const ids = Array.from({ length: PRODUCTS + 5 }, (_, i) => i + 1);
  const expected: string[] = [];
  for (const id of ids) expected.push((await alone.meta(id)).value);
  let statements = 0;
  const db = new Db({ connectionString: t.url, poolSize: 1, queueTimeoutMs: 10_000, genericPlans: true, onQuery: () => { statements++; } });
  try {
    const repo = new ReviewRepository(db);
    const together = (await Promise.all(ids.map((id) => repo.meta(id)))).map((m) => m.value);
    expect(together).toEqual(expected);
    expect(JSON.parse(together[4]).product_id).toBe('5');
    expect(Object.keys(JSON.parse(together[4]).ratings).length).toBeGreaterThan(0);
    expect(statements).toBe(2); // 35 asked in one tick: 32 + 3
  } finally {
    await db.close();
  }
});

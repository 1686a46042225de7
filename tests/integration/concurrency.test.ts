// Many parallel writers on one product: the aggregates must never drift from the raw rows.
import request from 'supertest';
import { createApp } from '../../src/app';
import { Db } from '../../src/db';
import { auditAggregates, repairAggregates } from '../../src/reviews/aggregates';
import { finishArrange, insertCharacteristics, insertReviews, validReview } from '../helpers/fixtures';
import { createTestDatabase, type TestDatabase } from '../helpers/test-db';

let t: TestDatabase;
let app: ReturnType<typeof createApp>;

beforeAll(async () => {
  t = await createTestDatabase({ poolSize: 12 });
  app = createApp(t.db, { log: () => undefined });
  await insertCharacteristics(t.db, [
    { id: 1, product_id: 7, name: 'Fit' },
    { id: 2, product_id: 7, name: 'Length' },
    { id: 3, product_id: 7, name: 'Quality' },
  ]);
  await insertReviews(t.db, Array.from({ length: 30 }, (_, i) => ({
    id: i + 1, product_id: 7, rating: (i % 5) + 1, recommend: i % 3 !== 0,
    date: '2021-05-05T00:00:00.000Z', ratings: { 1: (i % 5) + 1, 2: ((i + 2) % 5) + 1, 3: 3 },
  })));
  await finishArrange(t.db);
});

afterAll(async () => {
  await t.drop();
});

test('when POSTs, helpfuls and repeated reports of one product run in parallel, then meta equals a recomputation', async () => {
  const server = app.listen(0);
  try {
    const agent = request(server);
    const posts = Array.from({ length: 60 }, (_, i) => agent.post('/reviews').send(validReview({
      product_id: 7, rating: (i % 5) + 1, recommend: i % 2 === 0, characteristics: { 1: (i % 5) + 1, 2: 5, 3: ((i * 7) % 5) + 1 },
    })));
    // Every one of reviews 1..20 reported three times at once; 21..30 marked helpful.
    const reports = Array.from({ length: 60 }, (_, i) => agent.put(`/reviews/${(i % 20) + 1}/report`));
    const helpfuls = Array.from({ length: 40 }, (_, i) => agent.put(`/reviews/${(i % 10) + 21}/helpful`));
    const results = await Promise.all([...posts, ...reports, ...helpfuls]);
    const statuses = results.map((r) => r.status);
    expect(statuses.slice(0, 60).every((s) => s === 201)).toBe(true);
    expect(statuses.slice(60).every((s) => s === 204)).toBe(true);

    const audit = await auditAggregates(t.db);
    expect(audit.examples).toEqual([]);
    expect(audit.drifted).toEqual([]);
    expect(audit.productsChecked).toBe(1);
    expect(audit.characteristicsChecked).toBe(3);

    const meta = (await agent.get('/reviews/meta?product_id=7')).body;
    const visible = Object.values(meta.ratings as Record<string, string>).reduce((a, b) => a + Number(b), 0);
    expect(visible).toBe(30 - 20 + 60);
    const helpfulness = await t.db.query('SELECT sum(helpfulness)::int AS h FROM atelier.reviews WHERE id BETWEEN 21 AND 30');
    expect(helpfulness.rows[0].h).toBe(40);
  } finally {
    server.closeAllConnections();
    server.close();
  }
});

test('the audit notices drift, and repair fixes exactly that', async () => {
  const { repairAggregates } = await import('../../src/reviews/aggregates');
  await t.db.query('UPDATE atelier.product_ratings SET r5 = r5 + 3 WHERE product_id = 7');
  await t.db.query('UPDATE atelier.characteristics SET rating_sum = rating_sum - 1 WHERE id = 2');
  const audit = await auditAggregates(t.db);
  expect(audit.drifted).toEqual([7]);
  expect(audit.examples.length).toBe(2);
  await repairAggregates(t.db, audit.drifted);
  expect((await auditAggregates(t.db)).drifted).toEqual([]);
});

describe('the write lane', () => {
  test('a write is answered while every read connection is busy (its own pool and queue)', async () => {
    const reads = new Db({ connectionString: t.url, poolSize: 1, queueTimeoutMs: 10_000 });
    const writes = new Db({ connectionString: t.url, poolSize: 1, queueTimeoutMs: 10_000 });
    const app = createApp(reads, { log: () => undefined, writeDb: writes });
    const held = await reads.connect();
    try {
      const read = request(app).get('/reviews/meta?product_id=1').then((r) => r.status);
      const started = performance.now();
      const posted = await request(app).post('/reviews').send(validReview({ product_id: 1, name: 'lane' }));
      expect(posted.status).toBe(201);
      expect(await request(app).put(`/reviews/${posted.body.review_id}/helpful`).then((r) => r.status)).toBe(204);
      // A hang detector: without the lane these would wait for the held read connection.
      expect(performance.now() - started).toBeLessThan(5000);
      held.release();
      expect(await read).toBe(200);
    } finally {
      await reads.close();
      await writes.close();
    }
  });
});

describe('a write names its request in PostgreSQL', () => {
  test('while a POST waits on a busy product, pg_stat_activity shows its request id as application_name', async () => {
    const app = createApp(t.db, { log: () => undefined });
    const locker = await t.db.connect();
    try {
      await locker.query('BEGIN');
      await locker.query('SELECT id FROM atelier.characteristics WHERE product_id = 7 FOR UPDATE');
      const posting = request(app).post('/reviews').set('X-Request-Id', 'trace-write-0001').send(validReview({ product_id: 7, name: 'traced' })).then((r) => r);
      let seen = false;
      for (let i = 0; i < 100 && !seen; i++) {
        const { rows } = await t.db.query("SELECT 1 FROM pg_stat_activity WHERE application_name = 'atelier-reviews trace-write-0001'");
        seen = rows.length > 0;
        if (!seen) await new Promise((r) => setTimeout(r, 20));
      }
      expect(seen).toBe(true);
      await locker.query('COMMIT');
      const res = await posting;
      expect(res.status).toBe(201);
      expect(res.headers['x-request-id']).toBe('trace-write-0001');
    } finally {
      await locker.query('ROLLBACK').catch(() => undefined);
      locker.release();
    }
    // After the write's transaction the connection has its own name again.
    const { rows } = await t.db.query("SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name LIKE 'atelier-reviews trace-%'");
    expect(rows[0].n).toBe(0);
  });
});

describe('verify --repair beside the API\'s writers', () => {
  test('a repair of a product without characteristics and a report waiting on the same row: the report\'s decrement is not lost', async () => {
    // Product 9: no characteristics (nothing but its product_ratings row to lock), drifted.
    await insertReviews(t.db, Array.from({ length: 4 }, (_, i) => ({ id: 900 + i, product_id: 9, rating: 5, recommend: true, date: '2021-05-05T00:00:00.000Z' })));
    await finishArrange(t.db);
    await t.db.query('UPDATE atelier.product_ratings SET r5 = r5 + 3 WHERE product_id = 9');
    const waiting = async () => (await t.db.query<{ n: number }>("SELECT count(*)::int AS n FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = current_database()")).rows[0].n;
    const until = async (n: number) => {
      for (let i = 0; i < 250 && (await waiting()) < n; i++) await new Promise((r) => setTimeout(r, 20));
      expect(await waiting()).toBe(n);
    };
    // The row held, so the repair waits for it first and the report (its reviews row already
    // updated) second: the order in which a repair overtook a report.
    const holder = await t.db.connect();
    try {
      await holder.query('BEGIN');
      await holder.query('SELECT 1 FROM atelier.product_ratings WHERE product_id = 9 FOR UPDATE');
      const repairing = repairAggregates(t.db, [9]);
      await until(1);
      const reporting = t.db.query("SELECT product_id FROM public.report_review(900, 'repair-race')");
      await until(2);
      await holder.query('ROLLBACK');
      await Promise.all([repairing, reporting]);
    } finally {
      await holder.query('ROLLBACK').catch(() => undefined);
      holder.release();
    }
    const report = await auditAggregates(t.db);
    expect(report.examples).toEqual([]);
  });
});

// A database that is down, silent or slow gives a prompt JSON 503 with Retry-After,
// never a hung request; a bug gives a bare 500 that leaks nothing.
import net from 'node:net';
import request from 'supertest';
import { createApp } from '../../src/app';
import { Db } from '../../src/db';
import { findPrimary, ReplicaSet } from '../../src/db/replicas';
import { until } from '../helpers/replica-hosts';
import { silentRelay } from '../helpers/relay';
import { createTestDatabase, type TestDatabase } from '../helpers/test-db';

let t: TestDatabase;
beforeAll(async () => {
  t = await createTestDatabase();
});
afterAll(async () => {
  await t.drop();
});

function expect503(res: request.Response) {
  expect(res.status).toBe(503);
  expect(res.headers['retry-after']).toBe('1');
  expect(res.headers['content-type']).toMatch(/^application\/json/);
  expect(res.body.error).toMatch(/retry/i);
}

test('when nothing listens on the database port, then reads, writes and readyz answer 503', async () => {
  const db = new Db({ connectionString: 'postgresql://u:p@127.0.0.1:1/none', connectTimeoutMs: 500 });
  const app = createApp(db, { log: () => undefined });
  expect503(await request(app).get('/reviews?product_id=1'));
  expect503(await request(app).get('/reviews/meta?product_id=1'));
  expect503(await request(app).put('/reviews/1/helpful'));
  expect503(await request(app).get('/readyz'));
  expect((await request(app).get('/healthz')).status).toBe(200);
  await db.close();
});

test('when the database accepts connections but never answers, then the pool timeout gives a 503 instead of a hang', async () => {
  const sockets: net.Socket[] = [];
  const silent = net.createServer((s) => sockets.push(s));
  await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
  const port = (silent.address() as net.AddressInfo).port;
  const db = new Db({ connectionString: `postgresql://u:p@127.0.0.1:${port}/none`, connectTimeoutMs: 500 });
  const app = createApp(db, { log: () => undefined });
  try {
    // The bound below is a hang detector (30x the configured timeout), not a latency target.
    const started = Date.now();
    expect503(await request(app).get('/reviews?product_id=1').timeout(15_000));
    expect(Date.now() - started).toBeLessThan(15_000);
  } finally {
    await db.close().catch(() => undefined);
    sockets.forEach((s) => s.destroy());
    silent.close();
  }
});

test('when a connection goes silent mid-query, the read timeout gives a 503 and that connection is dropped, so the next request is served', async () => {
  const relay = await silentRelay(t.url);
  const db = new Db({ connectionString: relay.url, poolSize: 1, queryTimeoutMs: 500, connectTimeoutMs: 1000 });
  const app = createApp(db, { log: () => undefined });
  try {
    expect((await request(app).get('/reviews/meta?product_id=1')).status).toBe(200);
    relay.silent = true;
    expect503(await request(app).get('/reviews/meta?product_id=2').timeout(10_000));
    relay.silent = false;
    // The stuck connection still waits for an answer that was swallowed: reused, every
    // later query on it would wait too (and end in a 500).
    const next = await request(app).get('/reviews/meta?product_id=3').timeout(10_000);
    expect({ status: next.status, body: next.body }).toMatchObject({ status: 200 });
  } finally {
    await db.close().catch(() => undefined);
    relay.close();
  }
});

test('a connection the server terminates as it logs in (pg_terminate_backend right after a reconnect) is a 503, not a crash of the process', async () => {
  // Found by the nemesis: the pool hands the new client over before anyone listens for its
  // errors, and a FATAL in the same packet as the login's end was an unhandled 'error' event.
  const relay = await silentRelay(t.url, { terminateAtLogin: true });
  const db = new Db({ connectionString: relay.url, poolSize: 1, connectTimeoutMs: 2000 });
  try {
    const outcome = await db.query('SELECT 1').then(() => 'answered', (err: { status?: number }) => err.status);
    expect(outcome).toBe(503);
    await new Promise((r) => setTimeout(r, 100));
  } finally {
    await db.close().catch(() => undefined);
    relay.close();
  }
});

test('a read a hot standby cancels on a recovery conflict (SQLSTATE 40001) is a 503 to retry, not a 500', async () => {
  // Found by npm run chaos: 6 reads answered 500 "canceling statement due to conflict with
  // recovery" while a standby replayed a table lock. Here the relay cancels the list reads
  // as the standby did (the metas pass).
  const relay = await silentRelay(t.url, { failQueriesWith: { match: 'list-', code: '40001', message: 'canceling statement due to conflict with recovery' } });
  const db = new Db({ connectionString: relay.url, poolSize: 1, genericPlans: true });
  try {
    const app = createApp(db, { log: () => undefined });
    const res = await request(app).get('/reviews?product_id=1');
    expect({ status: res.status, error: res.body.error }).toEqual({ status: 503, error: expect.stringMatching(/retry/i) });
    expect((await request(app).get('/reviews/meta?product_id=1')).status).toBe(200);
  } finally {
    await db.close().catch(() => undefined);
    relay.close();
  }
});

test('when a statement exceeds the statement timeout, then it is cancelled with a 503 and the pool stays healthy', async () => {
  const db = new Db({ connectionString: t.url, statementTimeoutMs: 300, poolSize: 2 });
  const app = createApp(db, { log: () => undefined });
  const locker = await t.db.connect();
  try {
    await locker.query('BEGIN');
    await locker.query('LOCK TABLE atelier.reviews IN ACCESS EXCLUSIVE MODE');
    const slow = await request(app).get('/reviews?product_id=1');
    expect503(slow);
    expect(slow.body.error).toMatch(/too long/);
  } finally {
    await locker.query('ROLLBACK');
    locker.release();
  }
  for (let i = 0; i < 4; i++) {
    expect((await request(app).get('/reviews?product_id=1')).status).toBe(200);
  }
  await db.close();
});

/**
 * Until a statement of this database waits on a lock: the first request holds the only
 * connection and is blocked. A fixed sleep was not enough on a slow box: while the pool was
 * still opening that connection, the next requests of the same sort joined the first one's
 * batch instead of queueing (found in CI: a 20 s statement timeout instead of the 503).
 */
const untilBlocked = () => until('the first request to block on the lock', async () =>
  Number((await t.db.query<{ n: string }>("SELECT count(*) AS n FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = current_database()")).rows[0].n) >= 1, 10_000);

/** Until `db`'s admission queue holds `n` places (the requests sent have reached it), at most 10 s. */
const untilQueued = (db: Db, n: number) => until(`the admission queue to hold ${n} places`, () => db.queueLength >= n, 10_000);

/**
 * A host on its own pool (`opts`) while a test holds ACCESS EXCLUSIVE on reviews: every read
 * blocks until `unlock()`. Cleans up whatever happens.
 */
async function withReviewsLocked(opts: ConstructorParameters<typeof Db>[0], fn: (agent: ReturnType<typeof request>, unlock: () => Promise<unknown>, db: Db) => Promise<void>): Promise<void> {
  const db = new Db(opts);
  const server = createApp(db, { log: () => undefined }).listen(0);
  const locker = await t.db.connect();
  try {
    await locker.query('BEGIN');
    await locker.query('LOCK TABLE atelier.reviews IN ACCESS EXCLUSIVE MODE');
    await fn(request(server), () => locker.query('ROLLBACK'), db);
  } finally {
    await locker.query('ROLLBACK').catch(() => undefined);
    locker.release();
    server.closeAllConnections();
    server.close();
    await db.close();
  }
}

test('when the pool queue is full, then extra requests are shed with a fast 503', async () => {
  await withReviewsLocked({ connectionString: t.url, poolSize: 1, maxQueue: 1, queueTimeoutMs: 30_000, statementTimeoutMs: 5000 }, async (agent, unlock, db) => {
    // Three sort orders: three statements that cannot share a batch.
    const pending = [agent.get('/reviews?product_id=1&sort=newest'), agent.get('/reviews?product_id=2&sort=helpful')].map((r) => r.then((x) => x));
    await untilBlocked();
    await untilQueued(db, 1);
    const shed = await agent.get('/reviews?product_id=3&sort=relevant');
    expect503(shed);
    expect(shed.body.error).toMatch(/overloaded/);
    await unlock();
    const done = await Promise.all(pending);
    expect(done.map((r) => r.status)).toEqual([200, 200]);
  });
});

test('requests batched onto a waiting statement take places in the queue too', async () => {
  await withReviewsLocked({ connectionString: t.url, poolSize: 1, maxQueue: 2, queueTimeoutMs: 30_000, statementTimeoutMs: 5000 }, async (agent, unlock, db) => {
    const holder = agent.get('/reviews?product_id=1').then((x) => x);
    await untilBlocked();
    // The next two share one waiting statement (same sort) and fill the queue's two places.
    const batched = [2, 3].map((p) => agent.get(`/reviews?product_id=${p}`).then((x) => x));
    await untilQueued(db, 2);
    const shed = await agent.get('/reviews?product_id=4');
    expect503(shed);
    expect(shed.body.error).toMatch(/overloaded/);
    expect(db.admission.refusedQueueFull).toBe(1);
    await unlock();
    expect((await holder).status).toBe(200);
    const done = await Promise.all(batched);
    expect(done.map((r) => [r.status, r.body.product])).toEqual([[200, '2'], [200, '3']]);
  });
});

test('a request that waits for a connection longer than the queue timeout gets a 503 then, not after the statement timeout', async () => {
  await withReviewsLocked({ connectionString: t.url, poolSize: 1, queueTimeoutMs: 300, statementTimeoutMs: 20_000 }, async (agent, unlock, db) => {
    // The first takes the only connection and blocks on the lock; the next three queue.
    const holder = agent.get('/reviews?product_id=1').then((x) => x);
    await untilBlocked();
    const started = Date.now();
    const queued = await Promise.all([2, 3, 4].map((p) => agent.get(`/reviews?product_id=${p}`)));
    const waited = Date.now() - started;
    queued.forEach(expect503);
    expect(queued[0].body.error).toMatch(/overloaded/);
    // A hang detector: they are refused at the queue timeout (300 ms), far from the 20 s statement timeout.
    expect(waited).toBeLessThan(10_000);
    await unlock();
    expect((await holder).status).toBe(200);
    // The slots came back: the next request is served.
    expect((await agent.get('/reviews?product_id=5')).status).toBe(200);
    expect(db.admission.refusedTimeout).toBe(3);
  });
});

test('an unexpected database error is a bare 500 with no SQL, stack or database message', async () => {
  // A database without the schema: every query fails with "relation does not exist".
  const url = new URL(t.url);
  url.pathname = '/postgres';
  const db = new Db({ connectionString: url.toString() });
  const logged: string[] = [];
  const app = createApp(db, { log: (l) => logged.push(l) });
  const res = await request(app).get('/reviews?product_id=1');
  expect(res.status).toBe(500);
  expect(res.body).toEqual({ error: 'Internal server error.', request_id: res.headers['x-request-id'] });
  expect(res.text).not.toMatch(/relation|atelier|SELECT|at /);
  expect(logged.join('\n')).toMatch(/does not exist/);
  await db.close();
});

test('at start-up, a configured node that logs in and then never answers does not hold the search for the primary', async () => {
  const relay = await silentRelay(t.url, { swallowQueries: true });
  try {
    const started = Date.now();
    // The silent node is listed first; the real server (a primary: not in recovery) second.
    expect(await findPrimary([relay.url, t.url], 500)).toBe(t.url);
    expect(Date.now() - started).toBeLessThan(5_000);
  } finally {
    relay.close();
  }
});

test('a standby that logs in and never answers does not hold the probes: it is down after the probe timeout', async () => {
  const relay = await silentRelay(t.url, { swallowQueries: true });
  // Default timeouts, as a host has them: the pool's own read timeout is 7 s.
  const primary = new Db({ connectionString: t.url, poolSize: 1 });
  const silent = new Db({ connectionString: relay.url, poolSize: 1 });
  const replicas = new ReplicaSet(primary, [{ name: 'silent', db: silent }], { maxLagBytes: 2 ** 30, maxLagSeconds: 60, probeTimeoutMs: 500 });
  try {
    const started = Date.now();
    await replicas.probe();
    expect(Date.now() - started).toBeLessThan(2_000);
    expect(replicas.states[0]).toMatchObject({ up: false, usable: false });
    expect(replicas.writable).toBe(true);
  } finally {
    await primary.close();
    relay.close();
    await silent.close().catch(() => undefined);
  }
});

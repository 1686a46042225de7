// A rolling restart of both hosts behind the real nginx while reads and writes flow:
// no failed request, every 201 stored exactly once; and with a host slower to drain than
// its drain limit, the requests it still holds complete elsewhere or get a clean JSON 503.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { freePort, startCluster, type Cluster } from '../../src/cluster/cluster';
import { rollingRestart } from '../../src/cluster/rolling-restart';
import { finishArrange, insertCharacteristics, insertReviews, LONG_BODY } from '../helpers/fixtures';
import { available } from '../helpers/requirements';
import { createTestDatabase, type TestDatabase } from '../helpers/test-db';

const maybe = available(__filename, 'the rolling restart tests', 'nginx') ? describe : describe.skip;

interface Outcome {
  kind?: string;
  error?: string;
  status: number;
  ms: number;
  json: boolean;
  name?: string;
}

maybe('rolling restart behind nginx', () => {
  let t: TestDatabase;
  let tmp: string;

  beforeAll(async () => {
    t = await createTestDatabase();
    await insertCharacteristics(t.db, [{ id: 1, product_id: 1, name: 'Fit' }]);
    await insertReviews(t.db, Array.from({ length: 20 }, (_, i) => ({ id: i + 1, product_id: 1 + (i % 4), rating: 4, date: '2021-01-01T00:00:00.000Z' })));
    await finishArrange(t.db);
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'atelier-roll-'));
  });

  afterAll(async () => {
    await t.drop();
    fs.rmSync(tmp, { recursive: true, force: true });
  });

  /**
   * Steady reads and writes on `width` loops until `until` resolves, each loop at most one
   * request every 10 ms (≤ 600 req/s in all, half of them writes): a roll under steady
   * traffic, not under saturation. Unpaced, the loops saturated the one host left serving
   * while the other drained, and on a busy CI box two writes waited out the admission queue
   * (250 ms) and got the host's "overloaded" 503: load shedding, right under overload, but not
   * what the roll test is about (the overload tests are; it also lets a request wait longer in the queue).
   */
  async function traffic(cluster: Cluster, until: Promise<unknown>, tag: string, width = 6): Promise<Outcome[]> {
    const outcomes: Outcome[] = [];
    let done = false;
    void until.finally(() => (done = true));
    let n = 0;
    const loop = async () => {
      while (!done) {
        const i = n++;
        const started = performance.now();
        let o: Outcome;
        try {
          let res: Response;
          let name: string | undefined;
          if (i % 4 === 0) {
            name = `${tag}-${i}`;
            res = await fetch(`${cluster.url}/reviews`, {
              method: 'POST', headers: { 'content-type': 'application/json', 'idempotency-key': name },
              body: JSON.stringify({ product_id: 1 + (i % 4), rating: 5, body: LONG_BODY, recommend: true, name, email: 'roll@example.com' }),
            });
          } else if (i % 4 === 1) {
            res = await fetch(`${cluster.url}/reviews/${1 + (i % 20)}/helpful`, { method: 'PUT' });
          } else {
            res = await fetch(`${cluster.url}/reviews?product_id=${1 + (i % 4)}&count=${10 + (i % 500)}`);
          }
          const text = await res.text();
          let json = res.status === 204;
          try {
            JSON.parse(text);
            json = true;
          } catch {
            // not JSON
          }
          o = { kind: ['post', 'helpful', 'get', 'get'][i % 4], status: res.status, ms: performance.now() - started, json, name,
            // Which 5xx it was (the host's or nginx's message, and the host that answered).
            ...(res.status >= 500 ? { error: `${text.slice(0, 200)} via ${res.headers.get('x-upstream') ?? '?'}` } : {}) };
        } catch (err) {
          o = { kind: ['post', 'helpful', 'get', 'get'][i % 4], error: String((err as { cause?: unknown }).cause ?? err), status: 0, ms: performance.now() - started, json: false };
        }
        outcomes.push(o);
        const rest = 10 - (performance.now() - started);
        if (rest > 0) await new Promise((r) => setTimeout(r, rest));
      }
    };
    await Promise.all(Array.from({ length: width }, loop));
    return outcomes;
  }

  const stored = async (tag: string) => {
    const { rows } = await t.db.query<{ reviewer_name: string; n: number }>('SELECT reviewer_name, count(*)::int AS n FROM atelier.reviews WHERE reviewer_name LIKE $1 GROUP BY 1', [`${tag}-%`]);
    return new Map(rows.map((r) => [r.reviewer_name, r.n]));
  };
  const tally = (xs: Outcome[]) => xs.reduce<Record<number, number>>((m, o) => ({ ...m, [o.status]: (m[o.status] ?? 0) + 1 }), {});

  test('both hosts replaced under steady reads and writes: no failed request, every 201 stored once', async () => {
    const logDir = path.join(tmp, 'a', 'host-logs');
    const cluster = await startCluster({
      databaseUrl: t.url, port: await freePort(), hostPorts: [await freePort(), await freePort()], prefix: path.join(tmp, 'a'),
      // A write may wait up to 5 s for a connection (not the 250 ms default): a CI box's stall
      // while one host serves alone is not a roll's failure (the overload tests cover shedding).
      writeRate: '1000000r/s', readRate: '1000000r/s', hostEnv: { LOG_FORMAT: 'json', PG_QUEUE_TIMEOUT_MS: '5000' }, hostLogDir: logDir,
    });
    try {
      const before = cluster.hosts.map((h) => h.process.pid);
      const roll = (async () => {
        await new Promise((r) => setTimeout(r, 500));
        return rollingRestart(cluster);
      })();
      const outcomes = await traffic(cluster, roll, `roll-${process.pid}`);
      const report = await roll;
      const failures = outcomes.filter((o) => o.status === 0 || o.status >= 500);
      const created = outcomes.filter((o) => o.status === 201);
      const rows = await stored(`roll-${process.pid}`);
      console.log(`[roll] ${outcomes.length} requests during a ${report.seconds.toFixed(1)} s roll of ${report.hosts.length} hosts: ${JSON.stringify(tally(outcomes))}; failed ${failures.length}; longest ${Math.round(Math.max(...outcomes.map((o) => o.ms)))} ms; drains ${report.hosts.map((h) => Math.round(h.drainMs)).join('/')} ms`);
      if (failures.length) console.log(fs.readFileSync(path.join(tmp, 'a', 'logs', 'error.log'), 'utf8').split('\n').filter((l) => /error|warn/.test(l)).slice(-6).join('\n'));
      expect(cluster.hosts.map((h) => h.process.pid).some((p) => before.includes(p))).toBe(false);
      expect(failures).toEqual([]);
      expect(created.length).toBeGreaterThan(10);
      expect(created.every((o) => rows.get(o.name!) === 1)).toBe(true);
      expect([...rows.values()].every((n) => n === 1)).toBe(true);
      // Each replacement host appends its request log to the file its predecessor wrote.
      for (const [i, host] of cluster.hosts.entries()) {
        const id = `after-roll-${i}-${process.pid}`;
        const res = await fetch(`http://${host.address}/reviews/meta?product_id=1`, { headers: { 'X-Request-Id': id } });
        expect(res.status).toBe(200);
        const file = path.join(logDir, `host-${i + 1}.log`);
        const logged = async () => fs.readFileSync(file, 'utf8').includes(`"request_id":"${id}"`);
        for (let n = 0; n < 100 && !(await logged()); n++) await new Promise((r) => setTimeout(r, 50));
        expect(await logged()).toBe(true);
        expect(fs.readFileSync(file, 'utf8').split('\n').filter((l) => l.includes('"request_id"')).length).toBeGreaterThan(10);
      }
    } finally {
      await cluster.stop();
    }
  }, 90_000);

  test('a host that takes longer than its drain limit: what it still holds completes elsewhere or is a clean JSON 503', async () => {
    const cluster = await startCluster({
      databaseUrl: t.url, port: await freePort(), hostPorts: [await freePort(), await freePort()], prefix: path.join(tmp, 'b'),
      // No drain grace (the cluster's default is 3 s): the 300 ms drain limit starts at once,
      // while the lock below holds the host's requests, so it expires with requests in flight.
      writeRate: '1000000r/s', readRate: '1000000r/s', hostEnv: { SHUTDOWN_TIMEOUT_MS: '300', DRAIN_GRACE_MS: '0' },
    });
    const locker = await t.db.connect();
    try {
      // Reads of reviews block for 1.5 s around the roll: in-flight requests outlive the 300 ms drain.
      const roll = (async () => {
        await new Promise((r) => setTimeout(r, 300));
        await locker.query('BEGIN');
        await locker.query('LOCK TABLE atelier.reviews IN ACCESS EXCLUSIVE MODE');
        setTimeout(() => void locker.query('ROLLBACK'), 1500);
        return rollingRestart(cluster);
      })();
      const first = cluster.hosts[0];
      const outcomes = await traffic(cluster, roll, `slow-${process.pid}`);
      const report = await roll;
      const rows = await stored(`slow-${process.pid}`);
      const unclean = outcomes.filter((o) => o.status === 0 || (o.status >= 500 && !(o.status === 503 && o.json)) || (o.status !== 204 && !o.json));
      console.log(`[roll] slow drain: ${outcomes.length} requests: ${JSON.stringify(tally(outcomes))}; not clean ${unclean.length}; longest ${Math.round(Math.max(...outcomes.map((o) => o.ms)))} ms; drains ${report.hosts.map((h) => Math.round(h.drainMs)).join('/')} ms`);
      // The scenario happened: the first host was still holding requests when its 300 ms ran
      // out (a host holding none exits at once), with no grace before, and closed them.
      expect(report.hosts[0].drainMs).toBeGreaterThanOrEqual(300);
      expect(first.output()).not.toMatch(/closing connections after their next response/);
      expect(first.output()).toMatch(/drain limit \(300 ms\) reached: closing the connections still open/);
      expect(unclean).toEqual([]);
      expect(outcomes.filter((o) => o.status === 201).every((o) => rows.get(o.name!) === 1)).toBe(true);
      expect([...rows.values()].every((n) => n === 1)).toBe(true);
    } finally {
      await locker.query('ROLLBACK').catch(() => undefined);
      locker.release();
      await cluster.stop();
    }
  }, 90_000);
});

// Issue 21: reads on real hot standbys (streaming replication from a real primary), exact
// under lag: one standby applies WAL 500 ms late. The writer sees its write on its next read,
// every cached answer equals the primary once quiet, a stopped standby costs no read, and
// with the primary killed reads are still answered while writes get a JSON 503.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type http from 'node:http';
import type { AddressInfo } from 'node:net';
import request from 'supertest';
import { createApp } from '../../src/app';
import { freePort } from '../../src/cluster/processes';
import { Db } from '../../src/db';
import { ReplicaSet } from '../../src/db/replicas';
import { followChanges } from '../../src/response-cache/invalidation-feed';
import { ResponseCache } from '../../src/response-cache/response-cache';
import type { ChannelListener } from '../../src/db';
import { startServer, startStandby, type Server } from '../helpers/pg-servers';
import { finishArrange, insertCharacteristics, insertReviews, LONG_BODY } from '../helpers/fixtures';

jest.setTimeout(120_000);

describe('reads on hot standbys', () => {
  let tmp: string;
  let primary: Server;
  let late: Server;
  let prompt: Server;
  let db: Db;
  let replicas: ReplicaSet;
  let feed: ChannelListener;
  let server: http.Server;
  let base: string;
  let truthDb: Db;
  let truth: http.Server;
  let truthUrl: string;

  beforeAll(async () => {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'atelier-replicas-'));
    fs.chmodSync(tmp, 0o755);
    primary = await startServer(['--dir', path.join(tmp, 'primary'), '--port', String(await freePort()), '--replication']);
    const url = primary.url;
    db = new Db({ connectionString: url, poolSize: 4, genericPlans: true });
    await insertCharacteristics(db, [1, 2, 3].map((p) => ({ id: p, product_id: p, name: 'Fit' })));
    await insertReviews(db, Array.from({ length: 15 }, (_, i) => ({ id: i + 1, product_id: 1 + (i % 3), rating: 1 + (i % 5), date: '2021-01-01T00:00:00.000Z', ratings: { [1 + (i % 3)]: 3 } })));
    await finishArrange(db);
    const standby = async (name: string, applyDelayMs: number) => startStandby(primary, path.join(tmp, name), name, await freePort(), applyDelayMs);
    late = await standby('late', 500);
    prompt = await standby('prompt', 0);
    const replicaDb = (s: Server) => new Db({ connectionString: s.url, poolSize: 2, genericPlans: true, connectTimeoutMs: 500 });
    replicas = new ReplicaSet(db, [{ name: 'late', db: replicaDb(late) }, { name: 'prompt', db: replicaDb(prompt) }],
      { maxLagBytes: 2 ** 30, maxLagSeconds: 60, probeMs: 100 });
    await replicas.start();
    const cache = new ResponseCache({ maxBytes: 8 << 20, ttlMs: 600_000, trusted: false });
    feed = followChanges(db, cache, () => undefined, { fence: replicas });
    server = createApp(db, { log: () => undefined, cache, replicas }).listen(0, '127.0.0.1');
    await new Promise((r) => server.once('listening', r));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    for (let i = 0; i < 100 && !cache.isTrusted; i++) await new Promise((r) => setTimeout(r, 50));
    // The primary's own answer, fresh for every request (no cache, no standby).
    truthDb = new Db({ connectionString: url, poolSize: 2 });
    truth = createApp(truthDb, { log: () => undefined }).listen(0, '127.0.0.1');
    await new Promise((r) => truth.once('listening', r));
    truthUrl = `http://127.0.0.1:${(truth.address() as AddressInfo).port}`;
  });

  afterAll(async () => {
    await feed?.close();
    replicas?.stop();
    await new Promise((r) => server?.close(r));
    await new Promise((r) => truth?.close(r));
    for (const r of replicas?.replicas ?? []) await r.db.close().catch(() => undefined);
    await db?.close().catch(() => undefined);
    await truthDb?.close().catch(() => undefined);
    await late?.stop().catch(() => undefined);
    await prompt?.stop().catch(() => undefined);
    await primary?.stop().catch(() => undefined);
    fs.rmSync(tmp, { recursive: true, force: true });
  });

  const text = async (url: string, headers: Record<string, string> = {}) => (await fetch(url, { headers })).text();
  const PATHS = [1, 2, 3].flatMap((p) => [`/reviews/meta?product_id=${p}`, `/reviews?product_id=${p}&sort=newest&count=50`]);

  test('a caught-up standby serves reads', async () => {
    const before = replicas.reads.replica;
    await new Promise((r) => setTimeout(r, 800));
    for (const p of PATHS) expect(await text(`${base}${p}&x=1`)).toBe(await text(`${truthUrl}${p}`));
    expect(replicas.reads.replica).toBeGreaterThan(before);
    expect(replicas.states.map((s) => s.up)).toEqual([true, true]);
  });

  test('with a standby 500 ms late, the writer reads its write at once, and once quiet every cached answer equals the primary', async () => {
    for (let i = 0; i < 15; i++) {
      const product = 1 + (i % 3);
      const res = await fetch(`${base}/reviews`, {
        method: 'POST', headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ product_id: product, rating: 1 + (i % 5), body: LONG_BODY, recommend: true, name: `replica-${i}`, email: 'r@example.com', characteristics: { [product]: 4 } }),
      });
      expect(res.status).toBe(201);
      const cookie = res.headers.get('set-cookie')!.split(';')[0];
      const mine = await text(`${base}/reviews/meta?product_id=${product}`, { cookie });
      expect(mine).toBe(await text(`${truthUrl}/reviews/meta?product_id=${product}`));
      // Other readers right after, on keys not cached yet (so each read chooses where to
      // run): the fence keeps them off the standby that has not replayed the write.
      for (const count of [200 + 2 * i, 201 + 2 * i]) {
        const p = `/reviews?product_id=${product}&count=${count}`;
        expect({ p, body: await text(`${base}${p}`) }).toEqual({ p, body: await text(`${truthUrl}${p}`) });
      }
      for (const p of PATHS) await text(`${base}${p}`);
      // And a change made outside this host (an operator's SQL) is heard and fenced too.
      if (i % 5 === 4) await truthDb.query('UPDATE atelier.product_ratings SET r2 = r2 + 1 WHERE product_id = $1', [product]);
    }
    await new Promise((r) => setTimeout(r, 1500));
    for (const p of PATHS) expect({ p, body: await text(`${base}${p}`) }).toEqual({ p, body: await text(`${truthUrl}${p}`) });
  });

  test('a standby that stops costs no read: reads move to the others', async () => {
    await prompt.stop();
    const statuses: number[] = [];
    for (let i = 0; i < 60; i++) statuses.push((await fetch(`${base}/reviews?product_id=${1 + (i % 3)}&count=${1 + i}`)).status);
    expect(statuses.filter((s) => s !== 200)).toEqual([]);
    await new Promise((r) => setTimeout(r, 400)); // a probe or two
    expect(replicas.states[1]).toMatchObject({ up: false, usable: false });
  });

  test('a write refused by this host\'s own admission (overload) is not "the primary is down": the 503 says overloaded and the primary stays trusted', async () => {
    // One connection, no queue: while it is held, the next statement is refused at once.
    const busy = new Db({ connectionString: primary.url, poolSize: 1, maxQueue: 0 });
    const set = new ReplicaSet(busy, [{ name: 'late', db: new Db({ connectionString: late.url, poolSize: 1 }) }], { maxLagBytes: 2 ** 30, maxLagSeconds: 60, probeMs: 3_600_000 });
    await set.start();
    set.stop();
    const app = createApp(busy, { log: () => undefined, replicas: set });
    const held = await busy.connect();
    try {
      const res = await request(app).put('/reviews/1/helpful');
      expect({ status: res.status, error: res.body.error }).toEqual({ status: 503, error: 'The service is overloaded; retry shortly.' });
      expect(set.writable).toBe(true);
    } finally {
      held.release();
      await busy.close();
      for (const r of set.replicas) await r.db.close();
    }
  });

  test('with the primary killed, reads are still answered (from the standby) and writes get a JSON 503', async () => {
    await new Promise((r) => setTimeout(r, 700)); // the late standby has replayed everything
    const expected = await text(`${truthUrl}/reviews/meta?product_id=2`);
    await primary.stop();
    const statuses: number[] = [];
    for (let i = 0; i < 30; i++) {
      const res = await fetch(`${base}/reviews?product_id=${1 + (i % 3)}&count=${100 + i}`);
      statuses.push(res.status);
    }
    expect(statuses.filter((s) => s !== 200)).toEqual([]);
    expect(await text(`${base}/reviews/meta?product_id=2&y=1`)).toBe(expected);
    const write = await fetch(`${base}/reviews/1/helpful`, { method: 'PUT' });
    expect(write.status).toBe(503);
    expect(((await write.json()) as { error: string }).error).toMatch(/writes are unavailable.*reads are served.*retry/i);
  });
});

test("a primary that streamed to standbys still starts without replication: the slots left behind are dropped", async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'atelier-slots-'));
  fs.chmodSync(dir, 0o755);
  const data = path.join(dir, 'pg');
  try {
    const port = String(await freePort());
    const streaming = await startServer(['--dir', data, '--port', port, '--replication']);
    // What a standby that never stopped cleanly leaves on its primary.
    const db = new Db({ connectionString: streaming.url, poolSize: 1 });
    await db.query("SELECT pg_create_physical_replication_slot('left_behind', true)");
    await db.close();
    await streaming.stop();
    const plain = await startServer(['--dir', data, '--port', port]);
    const again = new Db({ connectionString: plain.url, poolSize: 1 });
    expect((await again.query('SELECT count(*)::int AS n FROM pg_replication_slots')).rows[0].n).toBe(0);
    await again.close();
    await plain.stop();
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('with the primary down, a standby that fails a read hands it to another standby, not to the dead primary', async () => {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'atelier-fallback-'));
  fs.chmodSync(tmp, 0o755);
  const servers: Server[] = [];
  const dbs: Db[] = [];
  try {
    const primary = await startServer(['--dir', path.join(tmp, 'primary'), '--port', String(await freePort()), '--replication']);
    servers.push(primary);
    const seed = new Db({ connectionString: primary.url, poolSize: 1 });
    await insertCharacteristics(seed, [{ id: 1, product_id: 1, name: 'Fit' }]);
    await insertReviews(seed, [{ id: 1, product_id: 1, rating: 5, date: '2021-01-01T00:00:00.000Z', ratings: { 1: 4 } }]);
    await finishArrange(seed);
    await seed.close();
    const a = await startStandby(primary, path.join(tmp, 'a'), 'fallback_a', await freePort());
    const b = await startStandby(primary, path.join(tmp, 'b'), 'fallback_b', await freePort());
    servers.push(a, b);
    const db = new Db({ connectionString: primary.url, poolSize: 1, connectTimeoutMs: 500 });
    const standby = (s: Server) => new Db({ connectionString: s.url, poolSize: 1, connectTimeoutMs: 500 });
    const [dbA, dbB] = [standby(a), standby(b)];
    dbs.push(db, dbA, dbB);
    // Probes only when asked: what the set believes stays as the last probe left it.
    const replicas = new ReplicaSet(db, [{ name: 'a', db: dbA }, { name: 'b', db: dbB }], { maxLagBytes: 2 ** 30, maxLagSeconds: 60, probeMs: 3_600_000 });
    await replicas.start();
    replicas.stop();
    const server = createApp(db, { log: () => undefined, replicas }).listen(0, '127.0.0.1');
    await new Promise((r) => server.once('listening', r));
    const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    try {
      await primary.stop();
      await replicas.probe(); // the primary is down; both standbys up
      expect(replicas.states.map((s) => s.up)).toEqual([true, true]);
      // Standby a leaves before any probe sees it: the read that picks it must go on to b.
      await a.stop();
      const statuses: number[] = [];
      for (let i = 0; i < 6; i++) statuses.push((await fetch(`${base}/reviews?product_id=1&count=${10 + i}`)).status);
      expect(statuses).toEqual([200, 200, 200, 200, 200, 200]);
    } finally {
      await new Promise((r) => server.close(r));
    }
  } finally {
    for (const d of dbs) await d.close().catch(() => undefined);
    for (const s of servers.reverse()) await s.stop().catch(() => undefined);
    fs.rmSync(tmp, { recursive: true, force: true });
  }
});

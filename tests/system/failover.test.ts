// Issue 21: the hosts follow a promotion. Real servers: a primary streaming to a hot standby
// (synchronous, so nothing acknowledged can be lost), two hosts reading and writing.
// 1. The primary crashes under steady reads and writes: reads keep being answered, writes
//    get a JSON 503 saying reads are served, /readyz stays ready (read-only); the standby is
//    promoted; writes resume on it within a measured bound, every acknowledged write is
//    there, and every cached answer on both hosts equals the new primary's.
// 2. A standby promoted while the old primary still runs (and still takes writes): the
//    hosts move to the newer timeline, write there, and hear each other's changes there.
// The same with Patroni choosing the new primary: tests/system/patroni.test.ts.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { freePort } from '../../src/cluster/processes';
import { Db } from '../../src/db';
import { crash, startServer, startStandby, type Server } from '../helpers/pg-servers';
import { expectHostsEqual, makeSynchronous, post, seedThreeProducts, sleep, startHost, steadyTraffic, storedNames, text, truthOf, until, PATHS, type Host } from '../helpers/replica-hosts';

jest.setTimeout(180_000);

describe('failover: the primary crashes, its synchronous standby is promoted', () => {
  let tmp: string;
  let primary: Server;
  let standby: Server;
  let hosts: Host[] = [];

  beforeAll(async () => {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'atelier-failover-'));
    fs.chmodSync(tmp, 0o755);
    primary = await startServer(['--dir', path.join(tmp, 'primary'), '--port', String(await freePort()), '--replication']);
    await seedThreeProducts(primary.url);
    standby = await startStandby(primary, path.join(tmp, 'standby'), 'sync1', await freePort());
    // Zero loss of acknowledged writes: a commit returns once the standby has flushed it.
    await makeSynchronous(primary.url, 'sync1');
    hosts = [await startHost(primary.url, [standby.url]), await startHost(primary.url, [standby.url])];
  });

  afterAll(async () => {
    for (const h of hosts) await h.close().catch(() => undefined);
    await standby?.stop().catch(() => undefined);
    await primary?.stop().catch(() => undefined);
    fs.rmSync(tmp, { recursive: true, force: true });
  });

  test('a host whose DATABASE_URL names a standby answers a write with a JSON 503, not a 500', async () => {
    const t = await truthOf(standby.url);
    try {
      const res = await fetch(`${t.base}/reviews/1/helpful`, { method: 'PUT' });
      expect(res.status).toBe(503);
      expect(((await res.json()) as { error: string }).error).toMatch(/retry/i);
    } finally {
      await t.close();
    }
  });

  test('reads survive the crash, writes say so, and resume on the promoted standby with nothing acknowledged lost', async () => {
    for (const h of hosts) for (const p of PATHS) await text(`${h.base}${p}`);
    const traffic = steadyTraffic(hosts, 'fo');
    try {
      // Writes before the crash, counted rather than timed (a slow box commits fewer a second).
      await until('writes acknowledged before the crash', () => traffic.acknowledged.length > 20, 60_000);
      const crashedAt = Date.now();
      crash(primary);
      await until('a write refused after the crash', () => traffic.writes.some((w) => w.at > crashedAt && w.status === 503));
      await sleep(1000);
      const ready = await fetch(`${hosts[0].base}/readyz`);
      expect({ status: ready.status, body: await ready.json() }).toEqual({ status: 200, body: { status: 'ready', writes: 'unavailable' } });
      const refused = traffic.writes.filter((w) => w.at > crashedAt && w.status === 503);
      expect(JSON.parse(refused[refused.length - 1].error!).error).toMatch(/writes are unavailable.*reads are served/i);

      const promoted = new Db({ connectionString: standby.url, poolSize: 1 });
      await promoted.query('SELECT pg_promote(true, 60)');
      await promoted.close();
      const promotedAt = Date.now();
      await until('writes accepted again on both hosts', () => traffic.resumedAt(promotedAt) !== undefined);
      const resumedMs = traffic.resumedAt(promotedAt)! - promotedAt;
      console.log(`failover: writes resumed on both hosts ${resumedMs} ms after pg_promote() returned (probes every 100 ms)`);
      expect(resumedMs).toBeLessThan(10_000);
      await traffic.stop();

      // Every read answered, before, during and after.
      expect(traffic.reads.filter((r) => r.status !== 200)).toEqual([]);
      expect(traffic.reads.filter((r) => r.at > crashedAt && r.at < promotedAt).length).toBeGreaterThan(20);
      // Nothing acknowledged lost.
      const stored = await storedNames(standby.url, 'fo');
      expect(traffic.acknowledged.length).toBeGreaterThan(20);
      expect(traffic.acknowledged.filter((name) => !stored.has(name))).toEqual([]);

      // Each host's answers (cached or not) equal the new primary's, and a write on one host
      // is heard by the other (the change feed moved too).
      const truth = await truthOf(standby.url);
      try {
        await sleep(500);
        await expectHostsEqual(hosts, truth.base);
        expect((await post(hosts[0].base, 2, 'after-failover')).status).toBe(201);
        await sleep(300);
        await expectHostsEqual([hosts[1]], truth.base);
      } finally {
        await truth.close();
      }
      expect(hosts.map((h) => h.replicas.failovers)).toEqual([1, 1]);
    } finally {
      await traffic.stop();
    }
  });
});

test('a standby promoted while the old primary still runs: the hosts move to the newer timeline and hear each other there', async () => {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'atelier-split-'));
  fs.chmodSync(tmp, 0o755);
  const servers: Server[] = [];
  const hosts: Host[] = [];
  try {
    const old = await startServer(['--dir', path.join(tmp, 'primary'), '--port', String(await freePort()), '--replication']);
    servers.push(old);
    await seedThreeProducts(old.url);
    const standby = await startStandby(old, path.join(tmp, 'standby'), 'async1', await freePort());
    servers.push(standby);
    hosts.push(await startHost(old.url, [standby.url]), await startHost(old.url, [standby.url]));
    await sleep(300);
    for (const h of hosts) for (const p of PATHS) await text(`${h.base}${p}`);

    const promoted = new Db({ connectionString: standby.url, poolSize: 1 });
    await promoted.query('SELECT pg_promote(true, 60)');
    await promoted.close();
    await until('both hosts following the promoted node', () => hosts.every((h) => h.replicas.failovers === 1), 10_000);
    expect((await post(hosts[0].base, 3, 'split-1')).status).toBe(201);
    expect({ promoted: (await storedNames(standby.url, 'split')).size, old: (await storedNames(old.url, 'split')).size }).toEqual({ promoted: 1, old: 0 });
    await sleep(300);
    const truth = await truthOf(standby.url);
    try {
      await expectHostsEqual(hosts, truth.base);
    } finally {
      await truth.close();
    }
  } finally {
    for (const h of hosts) await h.close().catch(() => undefined);
    for (const s of servers.reverse()) await s.stop().catch(() => undefined);
    fs.rmSync(tmp, { recursive: true, force: true });
  }
});

// Issue 27: the caches stay exact when something fails. One host reads from a real hot
// standby that applies WAL 3 s late; each test makes a fault on the path that decides where
// a read goes (the fence read refused, a primary connection killed under a read, the change
// feed's connection dropped while the fence cannot be read) right after a change, then
// waits until the standby has replayed everything and asks again: the answer must be the
// primary's, not one the fault let the host keep. Each failed before the freshness rule
// (src/db/read-stamp.ts): the host answered the old value as a HIT for the cache's TTL.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { freePort } from '../../src/cluster/processes';
import { Db, type Client } from '../../src/db';
import { startServer, startStandby, type Server } from '../helpers/pg-servers';
import { seedThreeProducts, sleep, startHost, truthOf, until, type Host } from '../helpers/replica-hosts';

jest.setTimeout(120_000);

const APPLY_DELAY_MS = 3000;

describe('exact when something fails (a standby 3 s late)', () => {
  let tmp: string;
  let primary: Server;
  let standby: Server;
  let host: Host;
  let truth: Awaited<ReturnType<typeof truthOf>>;
  let operator: Db;

  beforeAll(async () => {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'atelier-freshness-'));
    fs.chmodSync(tmp, 0o755);
    primary = await startServer(['--dir', path.join(tmp, 'primary'), '--port', String(await freePort()), '--replication']);
    await seedThreeProducts(primary.url);
    standby = await startStandby(primary, path.join(tmp, 'standby'), 'late', await freePort(), APPLY_DELAY_MS);
    // Two connections and a short queue: holding both makes the host refuse queries.
    host = await startHost(primary.url, [standby.url], { poolSize: 2, queueTimeoutMs: 200 });
    truth = await truthOf(primary.url);
    operator = new Db({ connectionString: primary.url, poolSize: 2, application: 'atelier-operator' });
    // The standby has replayed the seed.
    await until('the standby to catch up', () => host.replicas.states[0].usable && host.replicas.states[0].lagBytes === 0, 30_000);
  });

  afterAll(async () => {
    await host?.close();
    await truth?.close();
    await operator?.close();
    await standby?.stop().catch(() => undefined);
    await primary?.stop().catch(() => undefined);
    fs.rmSync(tmp, { recursive: true, force: true });
  });

  const ask = async (p: string, headers: Record<string, string> = {}) => {
    const res = await fetch(`${host.base}${p}`, { headers });
    return { status: res.status, etag: res.headers.get('etag'), body: await res.text(), cache: res.headers.get('x-response-cache'), nginx: res.headers.get('x-accel-expires') };
  };
  const fresh = async (p: string) => (await fetch(`${truth.base}${p}`)).text();
  /** Until the standby has replayed everything the primary has (the apply delay passed). */
  const caughtUp = async () => {
    const { rows } = await operator.query<{ l: string }>('SELECT pg_current_wal_flush_lsn()::text AS l');
    const sb = new Db({ connectionString: standby.url, poolSize: 1 });
    try {
      await until('the standby to replay the change', async () => (await sb.query<{ ok: boolean }>('SELECT pg_last_wal_replay_lsn() >= $1::pg_lsn AS ok', [rows[0].l])).rows[0].ok, 30_000);
    } finally {
      await sb.close();
    }
    await sleep(300); // a probe or two
  };
  /** Runs `fn` while both of the host's primary connections are held: a query queued meanwhile is refused after 200 ms. */
  const whilePrimaryHeld = async (fn: () => Promise<void>) => {
    const held: Client[] = [await host.db.connect(), await host.db.connect()];
    try {
      await fn();
    } finally {
      for (const c of held) c.release();
    }
  };
  /**
   * The answer right after the fault is served from wherever it went (when stale, marked so
   * nginx does not keep it); once the standby has everything, what the host answers (and
   * keeps) equals the primary's.
   */
  const expectNothingStaleKept = async (p: string) => {
    const first = await ask(p);
    if (first.body !== (await fresh(p))) expect(first.nginx).toBe('0');
    await caughtUp();
    expect((await ask(p)).body).toBe(await fresh(p));
  };
  const rename = (product: number, name: string) => operator.query('UPDATE atelier.characteristics SET name = $2 WHERE product_id = $1', [product, name]);

  test('the fence read refused (the primary pool held busy): no standby answer is kept', async () => {
    const p = '/reviews/meta?product_id=1';
    await ask(p);
    // The fence read after the change waits in the queue and is refused.
    await whilePrimaryHeld(async () => {
      await rename(1, 'Fit (refused fence)');
      await sleep(600);
    });
    await expectNothingStaleKept(p);
  });

  for (const writer of [false, true]) {
    test(`a primary connection killed under a read${writer ? " (the writer's own read, from its cookie)" : ''}: the fallback's standby answer is served, not kept`, async () => {
      const product = writer ? 3 : 2;
      const p = `/reviews/meta?product_id=${product}`;
      const before = await ask(p);
      const heard = host.cache.stats().invalidations;
      await rename(product, `Fit (killed ${writer})`);
      // Heard (the fence is known and the standby is behind it).
      await until('the change heard', () => host.cache.stats().invalidations > heard && host.replicas.fenceKnown, 10_000);
      const locker = await operator.connect();
      let first: Awaited<ReturnType<typeof ask>>;
      try {
        await locker.query('BEGIN');
        await locker.query('LOCK TABLE atelier.characteristics IN ACCESS EXCLUSIVE MODE');
        // The read goes to the primary (the standby is behind the fence) and waits for the lock.
        // Revalidating the answer from before the change, as nginx does when its entry expires.
        const reading = ask(p, { 'if-none-match': before.etag!, ...(writer ? { cookie: `atelier_wrote=${product}` } : {}) });
        await until('the read to wait for the lock', async () => (await operator.query(
          "SELECT 1 FROM pg_stat_activity WHERE application_name = 'atelier-reviews' AND wait_event_type = 'Lock'")).rowCount! > 0, 10_000);
        // One backend terminated (57P01), as pg_terminate_backend or a pooler would.
        await operator.query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'atelier-reviews' AND wait_event_type = 'Lock'");
        await locker.query('ROLLBACK');
        first = await reading;
      } finally {
        await locker.query('ROLLBACK').catch(() => undefined);
        locker.release();
      }
      // Not proven: a whole 200 that nobody keeps, never a 304 (nginx would renew its old
      // entry for another TTL: found by review).
      if (first.nginx === '0') expect(first.status).toBe(200);
      if (first.status === 304 || first.body !== (await fresh(p))) expect({ status: first.status, nginx: first.nginx }).toEqual({ status: 200, nginx: '0' });
      await caughtUp();
      expect((await ask(p)).body).toBe(await fresh(p));
    });
  }

  test('the change feed dropped while the fence cannot be read: what it missed is not kept from the standby', async () => {
    const p = '/reviews?product_id=1&count=7';
    await ask(p);
    await whilePrimaryHeld(async () => {
      const listener = host.feed.backendPid;
      await operator.query('SELECT pg_terminate_backend($1)', [listener]);
      // A change the feed cannot hear, then the feed back (its fence read refused).
      await operator.query('UPDATE atelier.reviews SET helpfulness = helpfulness + 5 WHERE product_id = 1');
      await until('the feed back', () => host.cache.isTrusted && host.feed.backendPid !== listener, 10_000);
      await sleep(400);
    });
    await expectNothingStaleKept(p);
  });
});

// Hosts for the replication and failover suites, wired as src/server.ts wires one: the
// primary's pool, a pool per standby, the DATABASE_URL node, a response cache and its change
// feed. Plus the truth (a plain app on one server, fresh reads), the seed data and a steady
// storefront of reads and writes that records every answer.
import type http from 'node:http';
import type { AddressInfo } from 'node:net';
import { createApp } from '../../src/app';
import { Db, type ChannelListener } from '../../src/db';
import { ReplicaSet } from '../../src/db/replicas';
import { followChanges } from '../../src/response-cache/invalidation-feed';
import { ResponseCache } from '../../src/response-cache/response-cache';
import { finishArrange, insertCharacteristics, insertReviews, LONG_BODY } from './fixtures';

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export async function until(what: string, ok: () => boolean | Promise<boolean>, ms = 20_000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await Promise.resolve().then(ok).catch(() => false))) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}

/** A host: its URL, the primary's pool (`db`), its standbys, its cache and its change feed. */
export interface Host { base: string; db: Db; replicas: ReplicaSet; cache: ResponseCache; feed: ChannelListener; close(): Promise<void> }

export async function startHost(primaryUrl: string, standbyUrls: string[], opts: { poolSize?: number; queueTimeoutMs?: number } = {}): Promise<Host> {
  const options = { poolSize: opts.poolSize ?? 2, genericPlans: true, connectTimeoutMs: 500, queueTimeoutMs: opts.queueTimeoutMs ?? 2000 };
  const db = new Db({ ...options, connectionString: primaryUrl });
  let cache: ResponseCache | undefined;
  const replicas = new ReplicaSet(db, standbyUrls.map((url, i) => ({ name: `standby${i + 1}`, db: new Db({ ...options, connectionString: url }) })), {
    maxLagBytes: 2 ** 30, maxLagSeconds: 60, probeMs: 100,
    primaryNode: { name: 'database-url', db: new Db({ ...options, connectionString: primaryUrl }) },
    onPrimaryChange: () => cache?.invalidateAll(),
  });
  await replicas.start();
  cache = new ResponseCache({ maxBytes: 8 << 20, ttlMs: 600_000, trusted: false });
  const feed: ChannelListener = followChanges(db, cache, () => undefined, { heartbeatMs: 500, fence: replicas });
  const server: http.Server = createApp(db, { log: () => undefined, cache, replicas }).listen(0, '127.0.0.1');
  await new Promise((r) => server.once('listening', r));
  await until('the change feed', () => cache!.isTrusted, 5000);
  return {
    base: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, db, replicas, cache, feed,
    close: async () => {
      await feed.close();
      replicas.stop();
      await new Promise((r) => server.close(r));
      for (const d of [db, ...replicas.nodes.map((n) => n.db)]) await d.close().catch(() => undefined);
    },
  };
}

/**
 * Makes the standby named `slot` synchronous for the primary at `primaryUrl` (zero loss of
 * acknowledged writes: a commit returns once the standby has flushed it), once it is so.
 */
export async function makeSynchronous(primaryUrl: string, slot: string): Promise<void> {
  const admin = new Db({ connectionString: primaryUrl, poolSize: 1 });
  try {
    await admin.query(`ALTER SYSTEM SET synchronous_standby_names = '${slot}'`);
    await admin.query('SELECT pg_reload_conf()');
    await until('a synchronous standby', async () => (await admin.query("SELECT 1 FROM pg_stat_replication WHERE sync_state = 'sync'")).rowCount === 1);
  } finally {
    await admin.close();
  }
}

/** A plain app on one server, reading it fresh for every request: the truth to compare with. */
export async function truthOf(url: string): Promise<{ base: string; db: Db; close(): Promise<void> }> {
  const db = new Db({ connectionString: url, poolSize: 2, application: 'atelier-truth' });
  const server = createApp(db, { log: () => undefined }).listen(0, '127.0.0.1');
  await new Promise((r) => server.once('listening', r));
  return { base: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, db, close: async () => { await new Promise((r) => server.close(r)); await db.close(); } };
}

/** Three products with three reviews each, on a migrated database. */
export async function seedThreeProducts(url: string): Promise<void> {
  const db = new Db({ connectionString: url, poolSize: 2 });
  await insertCharacteristics(db, [1, 2, 3].map((p) => ({ id: p, product_id: p, name: 'Fit' })));
  await insertReviews(db, Array.from({ length: 9 }, (_, i) => ({ id: i + 1, product_id: 1 + (i % 3), rating: 1 + (i % 5), date: '2021-01-01T00:00:00.000Z', ratings: { [1 + (i % 3)]: 3 } })));
  await finishArrange(db);
  await db.close();
}

export const text = async (url: string) => (await fetch(url)).text();
export const PATHS = [1, 2, 3].flatMap((p) => [`/reviews/meta?product_id=${p}`, `/reviews?product_id=${p}&sort=newest&count=50`]);
export const post = (base: string, product: number, name: string) => fetch(`${base}/reviews`, {
  method: 'POST', headers: { 'content-type': 'application/json' },
  body: JSON.stringify({ product_id: product, rating: 4, body: LONG_BODY, recommend: true, name, email: 'f@example.com', characteristics: { [product]: 4 } }),
});

/** Each host's answers, cached or not, equal the truth's. */
export async function expectHostsEqual(hosts: Host[], truthBase: string): Promise<void> {
  for (const h of hosts) for (const p of PATHS) expect({ p, body: await text(`${h.base}${p}`) }).toEqual({ p, body: await text(`${truthBase}${p}`) });
}

export interface Answer { at: number; host: number; status: number; error?: string }

/**
 * The storefront, steadily, through the hosts in turn: a POST every 10 ms (reviewer names
 * `prefix-N`), a read every 5 ms. Records every answer and the names acknowledged (201).
 */
export function steadyTraffic(hosts: Host[], prefix: string) {
  const acknowledged: string[] = [];
  const writes: Answer[] = [];
  const reads: Answer[] = [];
  let running = true;
  const writer = (async () => {
    for (let i = 0; running; i++) {
      const host = i % hosts.length;
      const res = await post(hosts[host].base, 1 + (i % 3), `${prefix}-${i}`).catch(() => undefined);
      const body = res ? await res.text() : '';
      if (res?.status === 201) acknowledged.push(`${prefix}-${i}`);
      writes.push({ at: Date.now(), host, status: res?.status ?? 0, error: res && res.status !== 201 ? body : undefined });
      await sleep(10);
    }
  })();
  const reader = (async () => {
    for (let i = 0; running; i++) {
      const host = i % hosts.length;
      const p = PATHS[i % PATHS.length];
      const res = await fetch(`${hosts[host].base}${p}${i % 4 === 0 ? `&x=${i}` : ''}`).catch(() => undefined);
      const body = res ? await res.text() : '';
      reads.push({ at: Date.now(), host, status: res?.status ?? 0, error: res && res.status !== 200 ? body : undefined });
      await sleep(5);
    }
  })();
  return {
    acknowledged, writes, reads,
    /** When every host has accepted a write after `since` (ms since the epoch). */
    resumedAt: (since: number) => {
      const firsts = hosts.map((_, h) => writes.find((w) => w.at > since && w.status === 201 && w.host === h)?.at);
      return firsts.every((t) => t !== undefined) ? Math.max(...(firsts as number[])) : undefined;
    },
    stop: async () => {
      running = false;
      await Promise.all([writer, reader]);
    },
  };
}

/** Names of the `prefix-N` reviews stored on the server at `url`. */
export async function storedNames(url: string, prefix: string): Promise<Set<string>> {
  const db = new Db({ connectionString: url, poolSize: 1 });
  try {
    const { rows } = await db.query<{ name: string }>('SELECT reviewer_name AS name FROM atelier.reviews WHERE reviewer_name LIKE $1', [`${prefix}-%`]);
    return new Set(rows.map((r) => r.name));
  } finally {
    await db.close();
  }
}

// The real nginx config in front of two real API hosts: round-robin, micro-cache,
// writes never cached or retried, failover on a dead host, freshness within the TTL.
import os from 'node:os';
import path from 'node:path';
import fs from 'node:fs';
import { freePort, startCluster, testNginxConfig, type Cluster } from '../src/cluster/cluster';
import { findNginx, writeNginxConfig } from '../src/cluster/nginx-config';
import { finishArrange, insertCharacteristics, insertReviews, LONG_BODY } from './helpers/fixtures';
import { concurrently } from './helpers/concurrently';
import { createTestDatabase, type TestDatabase } from './helpers/test-db';

const nginx = findNginx();
if (!nginx && process.env.CI === 'true') throw new Error('nginx is required in CI (.ci/run installs it)');
if (!nginx) console.log('nginx not found on this machine: skipping the nginx cluster tests (set NGINX_BIN or install nginx)');
const maybe = nginx ? describe : describe.skip;

const TTL_SECONDS = 1;

maybe('nginx in front of two hosts', () => {
  let t: TestDatabase;
  let cluster: Cluster;
  let tmp: string;

  beforeAll(async () => {
    t = await createTestDatabase();
    await insertCharacteristics(t.db, [{ id: 1, product_id: 1, name: 'Fit' }]);
    await insertReviews(t.db, Array.from({ length: 20 }, (_, i) => ({
      id: i + 1, product_id: 1 + (i % 4), rating: 4, date: '2021-01-01T00:00:00.000Z', ratings: i % 4 === 0 ? { 1: 4 } : {},
    })));
    await finishArrange(t.db);
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'atelier-nginx-'));
    const [port, a, b] = [await freePort(), await freePort(), await freePort()];
    cluster = await startCluster({
      // One worker: round-robin order is per worker, so strict alternation is observable.
      databaseUrl: t.url, port, hostPorts: [a, b], prefix: tmp, cacheTtl: `${TTL_SECONDS}s`, workerProcesses: '1',
    });
  }, 60_000);

  afterAll(async () => {
    await cluster?.stop();
    await t.drop();
    fs.rmSync(tmp, { recursive: true, force: true });
  });

  const get = (p: string) => fetch(`${cluster.url}${p}`);
  /** A response body as the API's JSON (meta or error). */
  const body = async (res: Response) => (await res.json()) as { ratings: Record<string, string>; error: string };

  test('the production rendering passes nginx -t', () => {
    const prefix = path.join(tmp, 'prod');
    const file = writeNginxConfig({ prefix, listen: '8080', upstreams: ['10.0.0.11:3000', '10.0.0.12:3000'] });
    expect(() => testNginxConfig(file, prefix)).not.toThrow();
  });

  test('consecutive uncached GETs alternate between the two hosts', async () => {
    const upstreams: string[] = [];
    // One at a time, each URI new to the cache.
    for (let i = 0; i < 8; i++) {
      const res = await get(`/reviews?product_id=1&count=${i + 1}`);
      expect(res.status).toBe(200);
      expect(res.headers.get('x-cache-status')).toBe('MISS');
      upstreams.push(res.headers.get('x-upstream')!);
    }
    expect(new Set(upstreams)).toEqual(new Set(cluster.hosts.map((h) => h.address)));
    upstreams.slice(1).forEach((u, i) => expect(u).not.toBe(upstreams[i]));
  });

  test('the second identical GET is a cache HIT with the same body', async () => {
    const first = await get('/reviews/meta?product_id=2');
    const second = await get('/reviews/meta?product_id=2');
    expect(first.headers.get('x-cache-status')).toBe('MISS');
    expect(second.headers.get('x-cache-status')).toBe('HIT');
    expect(await second.text()).toBe(await first.text());
  });

  test('a POST is never cached and is applied exactly once', async () => {
    const body = JSON.stringify({ product_id: 3, rating: 5, body: LONG_BODY, recommend: true, name: 'nginx-once', email: 'once@example.com' });
    const res = await fetch(`${cluster.url}/reviews`, { method: 'POST', headers: { 'content-type': 'application/json' }, body });
    expect(res.status).toBe(201);
    expect(res.headers.get('x-cache-status')).toBeNull();
    const { rows } = await t.db.query("SELECT count(*)::int AS n FROM atelier.reviews WHERE reviewer_name = 'nginx-once'");
    expect(rows[0].n).toBe(1);
  });

  test('a new review becomes visible through nginx within the TTL', async () => {
    const before = await body(await get('/reviews/meta?product_id=4'));
    expect((await get('/reviews/meta?product_id=4')).headers.get('x-cache-status')).toBe('HIT');
    const res = await fetch(`${cluster.url}/reviews`, {
      method: 'POST', headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ product_id: 4, rating: 1, body: LONG_BODY, recommend: false, name: 'fresh', email: 'fresh@example.com' }),
    });
    expect(res.status).toBe(201);
    const posted = Date.now();
    // Still the cached answer right after the write…
    expect((await body(await get('/reviews/meta?product_id=4'))).ratings['1']).toBe(before.ratings['1']);
    // …and the new one once the TTL (plus one background refresh) has passed.
    let seen: { ratings: Record<string, string> } | undefined;
    while (Date.now() - posted < TTL_SECONDS * 1000 + 3000) {
      const meta = await body(await get('/reviews/meta?product_id=4'));
      if (meta.ratings['1'] === '1') {
        seen = meta;
        break;
      }
      await new Promise((r) => setTimeout(r, 100));
    }
    expect(seen?.ratings['1']).toBe('1');
  });

  test("errors nginx makes itself are JSON: unknown route, oversized body, write rate limit", async () => {
    const unknown = await get('/nope');
    expect(unknown.status).toBe(404);
    expect(await unknown.json()).toEqual({ error: 'No such route.' });

    const big = await fetch(`${cluster.url}/reviews`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: 'x'.repeat(70_000) });
    expect(big.status).toBe(413);
    expect((await body(big)).error).toMatch(/64 KiB/);

    const statuses: number[] = [];
    for (let i = 0; i < 40; i++) statuses.push((await fetch(`${cluster.url}/reviews/5/helpful`, { method: 'PUT' })).status);
    expect(statuses.filter((s) => s === 204).length).toBeGreaterThanOrEqual(20);
    expect(statuses).toContain(429);
    const limited = await fetch(`${cluster.url}/reviews/5/helpful`, { method: 'PUT' });
    expect(limited.status).toBe(429);
    expect(limited.headers.get('retry-after')).toBe('1');
    expect((await body(limited)).error).toMatch(/Too many writes/);
    // Reads are not limited.
    expect((await get('/reviews?product_id=1&count=77')).status).toBe(200);
  });

  test('when one host is killed in the middle of a burst of GETs, no GET fails', async () => {
    const statuses: number[] = [];
    const total = 400;
    await concurrently(total, 8, async (i) => {
      if (i === 120) cluster.hosts[0].process.kill('SIGKILL');
      // Distinct URIs: every request goes to a host, none is a cache hit.
      const res = await get(`/reviews?product_id=${1 + (i % 4)}&count=${100 + i}`);
      statuses.push(res.status);
      await res.arrayBuffer();
    });
    expect(statuses).toHaveLength(total);
    expect(statuses.filter((s) => s !== 200)).toEqual([]);
    expect(cluster.hosts[0].process.signalCode).toBe('SIGKILL');
  });
});

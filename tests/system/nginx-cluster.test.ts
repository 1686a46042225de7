// The real nginx config in front of two real API hosts: round-robin, micro-cache,
// writes never cached or retried, failover on a dead host, freshness within the TTL.
import os from 'node:os';
import path from 'node:path';
import fs from 'node:fs';
import http from 'node:http';
import autocannon from 'autocannon';
import { freePort, startCluster, startNginx, testNginxConfig, type Cluster } from '../../src/cluster/cluster';
import { writeNginxConfig } from '../../src/cluster/nginx-config';
import { finishArrange, insertCharacteristics, insertReviews, LONG_BODY } from '../helpers/fixtures';
import { concurrently } from '../helpers/concurrently';
import { available } from '../helpers/requirements';
import { createTestDatabase, type TestDatabase } from '../helpers/test-db';

const maybe = available(__filename, 'the nginx cluster tests', 'nginx') ? describe : describe.skip;

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
      // These tests send hundreds of reads a second from one address; the flood test has its own nginx.
      readRate: '1000000r/s',
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

  test('a read is stored from its second request on: MISS, MISS, then a HIT with the same body', async () => {
    // proxy_cache_min_uses 2: most keys of the storefront's tail are read once, and storing
    // each of them wrote a file for nothing (docs/benchmarks.md, twelfth session).
    const first = await get('/reviews/meta?product_id=2');
    const second = await get('/reviews/meta?product_id=2');
    const third = await get('/reviews/meta?product_id=2');
    expect([first, second, third].map((r) => r.headers.get('x-cache-status'))).toEqual(['MISS', 'MISS', 'HIT']);
    const body = await first.text();
    expect(await second.text()).toBe(body);
    expect(await third.text()).toBe(body);
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
    // Stored from the second read on (proxy_cache_min_uses 2).
    await get('/reviews/meta?product_id=4');
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
    expect(await unknown.json()).toEqual({ error: 'No route for GET /nope.', request_id: unknown.headers.get('x-request-id') });

    const big = await fetch(`${cluster.url}/reviews`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: 'x'.repeat(70_000) });
    expect(big.status).toBe(413);
    expect((await body(big)).error).toMatch(/64 KiB/);

    // Counted, not timed: 10 writes/s with a burst of 20 lets through the burst, then one per
    // 100 ms, so at most 21 + 10 x elapsed of these pass however fast the machine is.
    const statuses: number[] = [];
    let limited: Response | undefined;
    const started = performance.now();
    await concurrently(60, 16, async () => {
      const res = await fetch(`${cluster.url}/reviews/5/helpful`, { method: 'PUT' });
      statuses.push(res.status);
      if (res.status === 429) limited = res;
      else await res.arrayBuffer();
    });
    const elapsed = (performance.now() - started) / 1000;
    expect(statuses.filter((s) => s === 204).length).toBeGreaterThanOrEqual(20);
    expect(statuses.filter((s) => s !== 429).length).toBeLessThanOrEqual(21 + Math.ceil(10 * elapsed));
    if (limited) {
      expect(limited.headers.get('retry-after')).toBe('1');
      expect((await body(limited)).error).toMatch(/Too many writes/);
    }
    // Reads have their own, far higher limit.
    expect((await get('/reviews?product_id=1&count=77')).status).toBe(200);
  });

  test('the cache key is the parameters that change the answer: four spellings, one entry', async () => {
    // The first spelling twice: an answer is stored from a key's second read on.
    const spellings = ['/reviews?product_id=3', '/reviews?product_id=3', '/reviews?product_id=3&page=1&count=5&sort=relevant', '/reviews?count=5&product_id=3', '/reviews?product_id=3&x=1', '/reviews?product_id=03&page=01'];
    const seen: string[] = [];
    let first = '';
    for (const s of spellings) {
      const res = await get(s);
      expect(res.status).toBe(200);
      seen.push(res.headers.get('x-cache-status')!);
      const b = await res.text();
      first ||= b;
      expect(b).toBe(first);
    }
    // HIT, or on a slow machine the entry's 1 s TTL may have passed (STALE, REVALIDATED…):
    // never a MISS, which is what a separate entry per spelling gives.
    expect(seen.slice(0, 2)).toEqual(['MISS', 'MISS']);
    expect(seen.slice(2).filter((s) => s === 'MISS' || s === 'BYPASS')).toEqual([]);
    // Another product, sort or page is another entry.
    expect((await get('/reviews?product_id=3&sort=newest')).headers.get('x-cache-status')).toBe('MISS');
  });

  test('?rating= is part of the cache key: a filtered page is cached apart from the full one', async () => {
    const filtered = await get('/reviews?product_id=4&rating=4,5&sort=newest');
    expect([filtered.status, filtered.headers.get('x-cache-status')]).toEqual([200, 'MISS']);
    await get('/reviews?product_id=4&rating=4,5&sort=newest');
    expect((await get('/reviews?product_id=4&rating=4,5&sort=newest')).headers.get('x-cache-status')).not.toMatch(/MISS|BYPASS/);
    const full = await get('/reviews?product_id=4&sort=newest');
    expect(full.headers.get('x-cache-status')).toBe('MISS');
    expect(full.headers.get('x-total-count')).toMatch(/^\d+$/);
  });

  test('query strings the key could misread skip the cache and get the hosts\' own answer', async () => {
    const cases: [string, number][] = [
      ['/reviews?product_id=3&product_id=4', 400],
      ['/reviews?PRODUCT_ID=3', 400],
      ['/reviews?product_id=3&page=', 400],
      ['/reviews?product%5Fid=3', 200],
      ['/reviews/meta?product_id=3&Product_Id=4', 200],
    ];
    for (const [p, status] of cases) {
      for (let i = 0; i < 2; i++) {
        const res = await get(p);
        expect([p, res.status, res.headers.get('x-cache-status')]).toEqual([p, status, 'BYPASS']);
      }
    }
  });

  test('the writer reads its own write at once; its cookie names the product', async () => {
    const url = '/reviews?product_id=2&sort=newest&count=50';
    await get(url);
    await get(url);
    expect((await get(url)).headers.get('x-cache-status')).not.toBe('MISS');
    // An earlier test used up this client's write allowance: honour Retry-After as a client would.
    let res: Response;
    for (let attempt = 0; ; attempt++) {
      res = await fetch(`${cluster.url}/reviews`, {
        method: 'POST', headers: { 'content-type': 'application/json', cookie: 'atelier_wrote=7.9', 'idempotency-key': 'writer-test' },
        body: JSON.stringify({ product_id: 2, rating: 2, body: LONG_BODY, recommend: true, name: 'writer', email: 'w@example.com' }),
      });
      if (res.status !== 429 || attempt === 10) break;
      await new Promise((r) => setTimeout(r, 1000));
    }
    expect(res.status).toBe(201);
    const { review_id: id } = (await res.json()) as { review_id: number };
    const cookie = res.headers.get('set-cookie')!;
    expect(cookie).toMatch(/^atelier_wrote=7\.9\.2; Max-Age=\d+; Path=\/reviews; HttpOnly; SameSite=Lax$/);
    const mine = await fetch(`${cluster.url}${url}`, { headers: { cookie: 'atelier_wrote=7.9.2' } });
    expect(mine.headers.get('x-cache-status')).toBe('BYPASS');
    expect(((await mine.json()) as { results: { review_id: number }[] }).results.map((r) => r.review_id)).toContain(id);
    // The writer's read is not stored: nginx 1.22 would claim its key only after sending the
    // header, and on a full keys zone that fails mid-answer (nginx-hardening). Another reader
    // of a key the writer read first gets the host's answer, with the review.
    const unread = '/reviews?product_id=2&sort=newest&count=49';
    for (let i = 0; i < 2; i++) {
      const bypassed = await fetch(`${cluster.url}${unread}`, { headers: { cookie: 'atelier_wrote=2' } });
      await bypassed.arrayBuffer();
      expect(bypassed.headers.get('x-cache-status')).toBe('BYPASS');
    }
    const after = await get(unread);
    expect(after.headers.get('x-cache-status')).toBe('MISS');
    expect(((await after.json()) as { results: { review_id: number }[] }).results.map((r) => r.review_id)).toContain(id);
    // The same client's reads of products it did not write still use the cache.
    for (const cookie of ['atelier_wrote=7.9.2', 'atelier_wrote=11.12', 'atelier_wrote=21']) {
      expect((await fetch(`${cluster.url}/reviews/meta?product_id=1`, { headers: { cookie } })).headers.get('x-cache-status')).not.toBe('BYPASS');
    }
    expect((await fetch(`${cluster.url}/reviews/meta?product_id=1`, { headers: { cookie: 'atelier_wrote=1' } })).headers.get('x-cache-status')).toBe('BYPASS');
  });

  test("nginx's stub_status answers this machine only", async () => {
    const from = (address: string) => new Promise<{ status: number; body: string }>((resolve, reject) => {
      http.get(`${cluster.url}/nginx_status`, { localAddress: address, agent: false }, (res) => {
        let body = '';
        res.on('data', (d) => (body += d));
        res.on('end', () => resolve({ status: res.statusCode!, body }));
      }).on('error', reject);
    });
    const local = await from('127.0.0.1');
    expect(local.status).toBe(200);
    expect(local.body).toMatch(/^Active connections: \d+/);
    const other = await from('127.0.0.2');
    expect(other.status).toBe(403);
    expect(JSON.parse(other.body)).toMatchObject({ error: 'Forbidden.' });
  });

  test('conditional requests: a matching If-None-Match gets a 304 from the cache', async () => {
    const first = await get('/reviews/meta?product_id=1');
    const etag = first.headers.get('etag')!;
    expect(etag).toMatch(/^"[\w-]+"$/);
    const again = await fetch(`${cluster.url}/reviews/meta?product_id=1`, { headers: { 'if-none-match': etag } });
    expect(again.status).toBe(304);
  });

  test('a read flood from one client gets JSON 429s while another client is served', async () => {
    // Its own nginx with a low read limit, in front of the same hosts.
    const flood = await startNginx({
      prefix: path.join(tmp, 'flood'), listen: `127.0.0.1:${await freePort()}`, upstreams: cluster.hosts.map((h) => h.address),
      readRate: '20r/s', workerProcesses: '1',
    });
    try {
      const from = (address: string) => new Promise<{ status: number; body: string; retryAfter?: string }>((resolve, reject) => {
        http.get(`${flood.url}/reviews/meta?product_id=1`, { localAddress: address, agent: false }, (res) => {
          let body = '';
          res.on('data', (d) => (body += d));
          res.on('end', () => resolve({ status: res.statusCode!, body, retryAfter: res.headers['retry-after'] as string | undefined }));
        }).on('error', reject);
      });
      const statuses: number[] = [];
      let limited: { body: string; retryAfter?: string } | undefined;
      const started = performance.now();
      await concurrently(200, 8, async () => {
        const r = await from('127.0.0.1');
        statuses.push(r.status);
        if (r.status === 429) limited = r;
      });
      const elapsed = (performance.now() - started) / 1000;
      const other = await from('127.0.0.2');
      // Counted, not timed: at most burst + 1 + rate x elapsed pass, however fast the machine.
      expect(statuses.filter((s) => s !== 429).length).toBeLessThanOrEqual(41 + Math.ceil(20 * elapsed));
      expect(statuses.every((s) => s === 200 || s === 429)).toBe(true);
      if (limited) {
        expect(JSON.parse(limited.body)).toMatchObject({ error: 'Too many requests from this client; retry shortly.' });
        expect(limited.retryAfter).toBe('1');
      }
      expect(other.status).toBe(200);
    } finally {
      await flood.stop();
    }
  });

  test('under 500 connections nginx keeps the hosts serving near capacity and refuses the excess with JSON 503s (no host marked down)', async () => {
    // Every request a different page size of an uncached product: each one reaches a host.
    // (The collapse max_conns prevents — accept queues overflowing, both hosts marked down —
    // needs slow hosts: it shows at full scale in `npm run bench`, not on this small data set.
    // Here the test holds the no-collapse property itself: statuses, no socket errors, goodput.)
    let n = 0;
    const run = (connections: number, duration: number) => autocannon({
      url: cluster.url, connections, duration, timeout: 10,
      requests: [{ setupRequest: (req) => ({ ...req, path: `/reviews?product_id=1&count=${1000 + (n++ % 100_000)}&sort=newest` }) }],
    }) as unknown as Promise<autocannon.Result & { statusCodeStats?: Record<string, { count: number }> }>;
    const capacity = await run(16, 3);
    const overload = await run(500, 4);
    const statuses = Object.fromEntries(Object.entries(overload.statusCodeStats ?? {}).map(([k, v]) => [k, v.count]));
    const goodput = overload['2xx'] / overload.duration / (capacity['2xx'] / capacity.duration);
    console.log(`[nginx overload] capacity ${Math.round(capacity['2xx'] / capacity.duration)} 2xx/s at 16 connections; at 500: ${Math.round(overload['2xx'] / overload.duration)} 2xx/s (ratio ${goodput.toFixed(2)}), statuses ${JSON.stringify(statuses)}, p99 ${overload.latency.p99} ms`);
    expect(Object.keys(statuses).every((s) => s === '200' || s === '503')).toBe(true);
    expect(overload.errors + overload.timeouts).toBe(0);
    // The goodput ratio depends on this box's speed (the generator shares it): it is printed
    // here and measured in `npm run bench -- --only overload`. What must hold on any machine:
    // answers were served throughout, and afterwards both hosts serve (none was marked down).
    expect(overload['2xx']).toBeGreaterThan(0);
    const upstreams = new Set<string>();
    for (let i = 0; i < 6; i++) {
      const res = await fetch(`${cluster.url}/reviews?product_id=2&count=${500 + i}`);
      expect(res.status).toBe(200);
      upstreams.add(res.headers.get('x-upstream') ?? '');
    }
    expect(upstreams.size).toBe(2);
  }, 30_000);

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

// The storefront runs in a browser on another origin: CORS with preflight, directly and
// through nginx over HTTPS, checked in a real headless Chromium (Debian's package driven by
// playwright-core), plus the preflight rules and nginx's cache keeping origins apart.
import fs from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import request from 'supertest';
import { createApp } from '../../src/app';
import { freePort, startCluster, type Cluster } from '../../src/cluster/cluster';
import { parseCorsOrigins } from '../../src/http/cors';
import { finishArrange, insertCharacteristics, insertReviews, LONG_BODY } from '../helpers/fixtures';
import { available, findChromium } from '../helpers/requirements';
import { createTestDatabase, type TestDatabase } from '../helpers/test-db';

const CHROMIUM = findChromium();
const inBrowser = available(__filename, 'the browser tests through nginx', 'chromium', 'nginx', 'openssl') ? describe : describe.skip;

let t: TestDatabase;

beforeAll(async () => {
  t = await createTestDatabase();
  await insertCharacteristics(t.db, [{ id: 1, product_id: 1, name: 'Fit' }]);
  await insertReviews(t.db, [{ id: 1, product_id: 1, rating: 5, date: '2021-01-01T00:00:00.000Z', ratings: { 1: 4 } }]);
  await finishArrange(t.db);
});

afterAll(async () => {
  await t.drop();
});

describe('CORS rules', () => {
  const shop = 'https://shop.example.com';
  const app = () => createApp(t.db, { log: () => undefined, cors: parseCorsOrigins(`${shop},http://localhost:5173`) });

  test('a preflight from an allowed origin for a JSON POST with an Idempotency-Key is a 204 browsers may cache', async () => {
    const res = await request(app()).options('/reviews').set('Origin', shop)
      .set('Access-Control-Request-Method', 'POST').set('Access-Control-Request-Headers', 'content-type, idempotency-key');
    expect(res.status).toBe(204);
    expect(res.headers['access-control-allow-origin']).toBe(shop);
    expect(res.headers['access-control-allow-methods']).toBe('GET, HEAD, POST, PUT');
    expect(res.headers['access-control-allow-headers']).toMatch(/idempotency-key/);
    expect(Number(res.headers['access-control-max-age'])).toBeGreaterThanOrEqual(600);
    expect(res.headers.vary).toMatch(/Origin/);
  });

  test('a preflight from another origin, or for another header, is a JSON 403 naming the problem', async () => {
    const other = await request(app()).options('/reviews/1/helpful').set('Origin', 'https://evil.example').set('Access-Control-Request-Method', 'PUT');
    expect(other.status).toBe(403);
    expect(other.body.error).toMatch(/Origin https:\/\/evil\.example is not allowed/);
    expect(other.headers['access-control-allow-origin']).toBeUndefined();
    const header = await request(app()).options('/reviews').set('Origin', shop).set('Access-Control-Request-Method', 'POST').set('Access-Control-Request-Headers', 'x-secret');
    expect(header.status).toBe(403);
    expect(header.body.error).toMatch(/x-secret/);
  });

  test('answers carry the allowance for a listed origin only, expose Retry-After and ETag, and vary on Origin', async () => {
    const ok = await request(app()).get('/reviews?product_id=1').set('Origin', shop);
    expect(ok.headers['access-control-allow-origin']).toBe(shop);
    expect(ok.headers['access-control-expose-headers']).toMatch(/Retry-After/);
    expect(ok.headers.vary).toMatch(/Origin/);
    const no = await request(app()).get('/reviews/meta?product_id=1').set('Origin', 'https://evil.example');
    expect(no.status).toBe(200);
    expect(no.headers['access-control-allow-origin']).toBeUndefined();
    const err = await request(app()).get('/reviews?product_id=x').set('Origin', shop);
    expect(err.status).toBe(400);
    expect(err.headers['access-control-allow-origin']).toBe(shop);
  });

  test('"*" lets any origin read, never write; no setting means no cross-origin access', async () => {
    const star = createApp(t.db, { log: () => undefined, cors: parseCorsOrigins('*') });
    expect((await request(star).get('/reviews?product_id=1').set('Origin', 'https://a.example')).headers['access-control-allow-origin']).toBe('*');
    expect((await request(star).options('/reviews').set('Origin', 'https://a.example').set('Access-Control-Request-Method', 'POST')).status).toBe(403);
    const none = createApp(t.db, { log: () => undefined });
    expect((await request(none).get('/reviews?product_id=1').set('Origin', shop)).headers['access-control-allow-origin']).toBeUndefined();
    expect(() => parseCorsOrigins('shop.example.com')).toThrow(/not an origin/);
  });
});

/** A page that calls the API from its own origin and reports what it could read. */
const PAGE = `<!doctype html><html><body><pre id="out">running</pre><script>
(async () => {
  const api = new URLSearchParams(location.search).get('api');
  const out = {};
  const attempt = async (name, fn) => { try { out[name] = await fn(); } catch (e) { out[name] = 'blocked: ' + e.message; } };
  await attempt('list', async () => { const r = await fetch(api + '/reviews?product_id=1'); return { status: r.status, etag: r.headers.get('etag'), n: (await r.json()).results.length }; });
  await attempt('meta', async () => { const r = await fetch(api + '/reviews/meta?product_id=1'); return { status: r.status, product: (await r.json()).product_id }; });
  await attempt('post', async () => {
    const r = await fetch(api + '/reviews', { method: 'POST', credentials: 'include', headers: { 'Content-Type': 'application/json', 'Idempotency-Key': 'browser-' + location.port + '-' + Date.now() },
      body: JSON.stringify({ product_id: 1, rating: 5, body: ${JSON.stringify(LONG_BODY)}, recommend: true, name: 'browser', email: 'b@example.com', characteristics: { 1: 5 } }) });
    return { status: r.status, id: (await r.json()).review_id };
  });
  document.getElementById('out').textContent = JSON.stringify(out);
  window.__done = out;
})();
</script></body></html>`;

async function pageServer(): Promise<{ origin: string; close(): void }> {
  const server = http.createServer((_req, res) => {
    res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8' });
    res.end(PAGE);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { origin: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, close: () => server.close() };
}

inBrowser('in a real browser, from another origin', () => {
  let allowed: Awaited<ReturnType<typeof pageServer>>;
  let stranger: Awaited<ReturnType<typeof pageServer>>;
  let browser: import('playwright-core').Browser;

  beforeAll(async () => {
    allowed = await pageServer();
    stranger = await pageServer();
    const { chromium } = await import('playwright-core');
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--ignore-certificate-errors'],
    });
  }, 60_000);

  afterAll(async () => {
    await browser?.close();
    allowed?.close();
    stranger?.close();
  });

  const visit = async (origin: string, api: string) => {
    const page = await browser.newPage();
    try {
      await page.goto(`${origin}/?api=${encodeURIComponent(api)}`);
      await page.waitForFunction(() => (globalThis as unknown as { __done?: unknown }).__done, undefined, { timeout: 20_000 });
      return (await page.evaluate(() => (globalThis as unknown as { __done: Record<string, unknown> }).__done)) as Record<string, { status?: number } | string>;
    } finally {
      await page.close();
    }
  };

  const expectAllowed = (r: Record<string, unknown>) => {
    expect(r.list).toEqual({ status: 200, etag: expect.stringMatching(/^"/), n: expect.any(Number) });
    expect(r.meta).toEqual({ status: 200, product: '1' });
    expect(r.post).toEqual({ status: 201, id: expect.any(Number) });
  };
  const expectBlocked = (r: Record<string, unknown>) => {
    for (const k of ['list', 'meta', 'post']) expect(String(r[k])).toMatch(/^blocked/);
  };

  test('directly: an allowed origin reads and posts; another origin sees nothing', async () => {
    const app = createApp(t.db, { log: () => undefined, cors: parseCorsOrigins(allowed.origin) });
    const server = app.listen(0, '127.0.0.1');
    await new Promise((r) => server.once('listening', r));
    try {
      const api = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
      expectAllowed(await visit(allowed.origin, api));
      expectBlocked(await visit(stranger.origin, api));
    } finally {
      server.closeAllConnections();
      server.close();
    }
  }, 60_000);

  test('through nginx over HTTPS (a self-signed certificate made for the run)', async () => {
    const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'atelier-tls-'));
    let cluster: Cluster | undefined;
    try {
      cluster = await startCluster({
        databaseUrl: t.url, port: await freePort(), hostPorts: [await freePort(), await freePort()], prefix: tmp, workerProcesses: '1',
        hostEnv: { CORS_ORIGINS: allowed.origin }, corsOrigins: [allowed.origin], tls: { port: await freePort() },
      });
      const api = cluster.httpsUrl!;
      expect(api).toMatch(/^https:/);
      expectAllowed(await visit(allowed.origin, api));
      expectBlocked(await visit(stranger.origin, api));
      // Plain HTTP is redirected to HTTPS.
      const plain = await fetch(`${cluster.url}/reviews?product_id=1`, { redirect: 'manual' });
      expect(plain.status).toBe(301);
      expect(plain.headers.get('location')).toBe(`${api}/reviews?product_id=1`);
    } finally {
      await cluster?.stop();
      fs.rmSync(tmp, { recursive: true, force: true });
    }
  }, 90_000);
});

(available(__filename, 'nginx keeps origins apart in its cache', 'nginx') ? describe : describe.skip)('nginx keeps origins apart in its cache', () => {
  test("a cached answer never carries another origin's allowance", async () => {
    const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'atelier-origins-'));
    const a = 'https://a.example';
    const b = 'https://b.example';
    const cluster = await startCluster({
      databaseUrl: t.url, port: await freePort(), hostPorts: [await freePort(), await freePort()], prefix: tmp, workerProcesses: '1',
      hostEnv: { CORS_ORIGINS: `${a},${b}` }, corsOrigins: [a, b],
    });
    try {
      const get = (origin?: string) => fetch(`${cluster.url}/reviews/meta?product_id=1`, { headers: origin ? { origin } : {} });
      const first = await get(a);
      expect(first.headers.get('access-control-allow-origin')).toBe(a);
      // Stored from a key's second read on (proxy_cache_min_uses 2).
      await get(a);
      expect((await get(a)).headers.get('x-cache-status')).toBe('HIT');
      const other = await get(b);
      expect(other.headers.get('access-control-allow-origin')).toBe(b);
      const stranger = await get('https://evil.example');
      expect(stranger.headers.get('access-control-allow-origin')).toBeNull();
      const none = await get();
      expect(none.headers.get('access-control-allow-origin')).toBeNull();
      // A stranger and no Origin share an entry (their answers are the same).
      expect((await get('https://evil2.example')).headers.get('x-cache-status')).toBe('HIT');
    } finally {
      await cluster.stop();
      fs.rmSync(tmp, { recursive: true, force: true });
    }
  }, 60_000);
});

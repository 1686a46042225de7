// GET /metrics: Prometheus text with the request histogram by route template and status,
// in-flight requests, overload refusals, the pool, the response cache and Node's own.
import request from 'supertest';
import { createApp } from '../../src/app';
import { createMetrics } from '../../src/http/metrics';
import { ResponseCache } from '../../src/response-cache/response-cache';
import { finishArrange, insertReviews, validReview } from '../helpers/fixtures';
import { createTestDatabase, type TestDatabase } from '../helpers/test-db';

let t: TestDatabase;

beforeAll(async () => {
  t = await createTestDatabase();
  await insertReviews(t.db, [{ id: 1, product_id: 1, rating: 4, date: '2021-01-01T00:00:00.000Z' }]);
  await finishArrange(t.db);
});

afterAll(async () => {
  await t.drop();
});

test('after some traffic, /metrics answers what ops ask: is it slow, is it shedding, is the cache working', async () => {
  const cache = new ResponseCache({ maxBytes: 1 << 20, ttlMs: 60_000 });
  const app = createApp(t.db, { log: () => undefined, cache, metrics: createMetrics({ db: t.db, cache }) });
  await request(app).get('/reviews?product_id=1');
  await request(app).get('/reviews?product_id=1');
  await request(app).get('/reviews/meta?product_id=987654');
  await request(app).get('/reviews?product_id=abc');
  await request(app).put('/reviews/1/helpful');
  await request(app).put('/reviews/424242/helpful');
  await request(app).post('/reviews').send(validReview({ product_id: 1 }));
  await request(app).get('/nope/123');
  const res = await request(app).get('/metrics');
  expect(res.status).toBe(200);
  expect(res.headers['content-type']).toMatch(/^text\/plain; version=0\.0\.4/);
  const text = res.text;
  const count = (labels: string) => Number(new RegExp(`^http_request_duration_seconds_count\\{${labels}\\} (\\d+)$`, 'm').exec(text)?.[1] ?? NaN);
  expect(count('route="/reviews",method="GET",status="200"')).toBe(2);
  expect(count('route="/reviews",method="GET",status="400"')).toBe(1);
  expect(count('route="/reviews/meta",method="GET",status="200"')).toBe(1);
  expect(count('route="/reviews/:review_id/helpful",method="PUT",status="204"')).toBe(1);
  expect(count('route="/reviews/:review_id/helpful",method="PUT",status="404"')).toBe(1);
  expect(count('route="/reviews",method="POST",status="201"')).toBe(1);
  expect(count('route="unmatched",method="GET",status="404"')).toBe(1);
  // Low cardinality: route templates, never URLs or ids.
  expect(text).not.toMatch(/route="[^"]*(\?|\d)/);
  expect(text).toMatch(/^http_requests_in_flight 1$/m); // the /metrics request itself
  expect(text).toMatch(/^atelier_requests_refused_total\{reason="queue_timeout"\} 0$/m);
  expect(text).toMatch(/^atelier_db_pool_connections\{state="waiting"\} 0$/m);
  // One list and one meta miss, each its own statement (nothing else was waiting).
  expect(text).toMatch(/^atelier_db_batched_total\{what="statements"\} 2$/m);
  expect(text).toMatch(/^atelier_db_batched_total\{what="requests"\} 2$/m);
  expect(text).toMatch(/^atelier_response_cache_events_total\{event="hits"\} 1$/m);
  expect(text).toMatch(/^atelier_response_cache_events_total\{event="invalidations"\} [1-9]/m);
  expect(text).toMatch(/^atelier_response_cache_size\{measure="trusted"\} 1$/m);
  expect(text).toMatch(/^nodejs_eventloop_lag_seconds /m);
  expect(text).toMatch(/^process_cpu_seconds_total /m);
});

test('without metrics there is no /metrics route', async () => {
  expect((await request(createApp(t.db, { log: () => undefined })).get('/metrics')).status).toBe(404);
});

test.each(['tiny', 'json'])('with metrics on, LOG_FORMAT=%s still logs the reads the read path serves', async (format) => {
  const cache = new ResponseCache({ maxBytes: 1 << 20, ttlMs: 60_000 });
  const lines: string[] = [];
  const write = process.stdout.write.bind(process.stdout);
  const spy = jest.spyOn(process.stdout, 'write').mockImplementation(((chunk: string | Uint8Array, ...rest: never[]) => {
    lines.push(String(chunk));
    return write(chunk, ...rest);
  }) as typeof process.stdout.write);
  try {
    const app = createApp(t.db, { log: () => undefined, cache, logFormat: format, metrics: createMetrics({ db: t.db, cache }) });
    await request(app).get('/reviews/meta?product_id=1&logged=1');
    // The JSON log writes every 20 ms.
    await new Promise((r) => setTimeout(r, 100));
  } finally {
    spy.mockRestore();
  }
  expect(lines.join('')).toMatch(format === 'json' ? /"route":"\/reviews\/meta","status":200/ : /GET \/reviews\/meta\?product_id=1&logged=1 200/);
});

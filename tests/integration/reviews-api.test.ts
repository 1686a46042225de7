// The contract of docs/api.md, end to end over HTTP against a real PostgreSQL.
import request from 'supertest';
import { createApp } from '../../src/app';
import { contractChecked } from '../helpers/contract-check';
import { productTotalsSql } from '../../src/reviews/aggregates';
import { finishArrange, insertCharacteristics, insertReviews, LONG_BODY, validReview } from '../helpers/fixtures';
import { createTestDatabase, type TestDatabase } from '../helpers/test-db';

let t: TestDatabase;
let app: ReturnType<typeof contractChecked>;

beforeAll(async () => {
  t = await createTestDatabase();
  // Every response is also checked against the OpenAPI document (src/openapi.ts).
  app = contractChecked(createApp(t.db, { log: () => undefined }));
  await insertCharacteristics(t.db, [
    { id: 10, product_id: 1, name: 'Fit' },
    { id: 11, product_id: 1, name: 'Length' },
    { id: 12, product_id: 1, name: 'Comfort' },
    { id: 20, product_id: 2, name: 'Quality' },
    { id: 30, product_id: 5, name: 'Size' },
  ]);
  await insertReviews(t.db, [
    { id: 1, product_id: 1, rating: 5, date: '2021-01-01T10:20:30.123Z', helpfulness: 10, recommend: true,
      summary: 'Great "quoted", with commas', reviewer_name: 'alice', reviewer_email: 'alice@secret.example',
      photos: [{ id: 2, url: 'https://img.example/b.jpg' }, { id: 1, url: 'https://img.example/a.jpg' }], ratings: { 10: 4, 11: 3 } },
    { id: 2, product_id: 1, rating: 3, date: '2021-06-01T00:00:00.000Z', helpfulness: 2, recommend: false,
      response: 'Thanks for the feedback', ratings: { 10: 2, 11: 5 } },
    { id: 3, product_id: 1, rating: 4, date: '2021-06-01T00:00:00.000Z', helpfulness: 2, recommend: true, ratings: { 10: 5, 11: 4 } },
    { id: 4, product_id: 1, rating: 1, date: '2021-12-01T00:00:00.000Z', helpfulness: 100, recommend: false, reported: true, ratings: { 10: 1, 11: 1 } },
    { id: 5, product_id: 1, rating: 5, date: '2020-01-01T00:00:00.000Z', helpfulness: 30, recommend: true, ratings: { 10: 3, 11: 3 } },
    // product 2: eleven ratings summing to 35, the contract's 3.1818181818181818 example
    ...[5, 5, 5, 3, 3, 3, 3, 2, 2, 2, 2].map((v, i) => ({
      id: 100 + i, product_id: 2, rating: v, date: `2021-02-${String(i + 1).padStart(2, '0')}T00:00:00.000Z`, ratings: { 20: v },
    })),
    // product 5: its only review is reported
    { id: 200, product_id: 5, rating: 2, date: '2021-03-01T00:00:00.000Z', reported: true, ratings: { 30: 2 } },
  ]);
  await finishArrange(t.db);
});

afterAll(async () => {
  await t.drop();
});

const ids = (res: request.Response) => res.body.results.map((r: { review_id: number }) => r.review_id);

describe('GET /reviews', () => {
  test('returns the live shape with exact types, photos ordered by id, null response, no email', async () => {
    const res = await request(app).get('/reviews?product_id=1&sort=newest&count=10');
    expect(res.status).toBe(200);
    expect(res.headers['content-type']).toBe('application/json; charset=utf-8');
    expect(Object.keys(res.body)).toEqual(['product', 'page', 'count', 'results']);
    expect(res.body.product).toBe('1');
    expect(res.body.page).toBe(0);
    expect(res.body.count).toBe(10);
    const r1 = res.body.results.find((r: { review_id: number }) => r.review_id === 1);
    expect(r1).toEqual({
      review_id: 1,
      rating: 5,
      summary: 'Great "quoted", with commas',
      recommend: true,
      response: null,
      body: 'body of review 1',
      date: '2021-01-01T10:20:30.123Z',
      reviewer_name: 'alice',
      helpfulness: 10,
      photos: [{ id: 1, url: 'https://img.example/a.jpg' }, { id: 2, url: 'https://img.example/b.jpg' }],
    });
    const r2 = res.body.results.find((r: { review_id: number }) => r.review_id === 2);
    expect(r2.response).toBe('Thanks for the feedback');
    expect(r2.recommend).toBe(false);
    expect(r2.photos).toEqual([]);
    expect(res.text).not.toContain('secret.example');
    expect(res.text).not.toContain('reviewer_email');
  });

  test('defaults: page 1 (echoed as 0), count 5, sort relevant', async () => {
    const res = await request(app).get('/reviews?product_id=1');
    expect(res.status).toBe(200);
    expect(res.body.page).toBe(0);
    expect(res.body.count).toBe(5);
    expect(ids(res)).toEqual([1, 3, 2, 5]);
  });

  test('newest orders by date, ties broken by higher id', async () => {
    expect(ids(await request(app).get('/reviews?product_id=1&sort=newest'))).toEqual([3, 2, 1, 5]);
  });

  test('helpful orders by helpfulness, ties by newer then higher id', async () => {
    expect(ids(await request(app).get('/reviews?product_id=1&sort=helpful'))).toEqual([5, 1, 3, 2]);
  });

  test('relevant differs from both newest and helpful: a helpful new review beats an old one with more votes', async () => {
    // scores: log2(h+1) + days/90 — r1 210.44, r3 = r2 210.24 (tie → higher id), r5 207.87
    expect(ids(await request(app).get('/reviews?product_id=1&sort=relevant'))).toEqual([1, 3, 2, 5]);
  });

  test('pages are stable slices of the order, and past the end is empty', async () => {
    const p1 = await request(app).get('/reviews?product_id=1&sort=newest&count=2&page=1');
    const p2 = await request(app).get('/reviews?product_id=1&sort=newest&count=2&page=2');
    const p3 = await request(app).get('/reviews?product_id=1&sort=newest&count=2&page=3');
    expect([ids(p1), ids(p2), ids(p3)]).toEqual([[3, 2], [1, 5], []]);
    expect(p2.body.page).toBe(1);
    expect(p2.body.count).toBe(2);
  });

  test('reported reviews are never listed', async () => {
    for (const sort of ['newest', 'helpful', 'relevant']) {
      expect(ids(await request(app).get(`/reviews?product_id=1&sort=${sort}&count=100`))).not.toContain(4);
    }
    expect((await request(app).get('/reviews?product_id=5')).body.results).toEqual([]);
  });

  test('a product without reviews is 200 with empty results', async () => {
    const res = await request(app).get('/reviews?product_id=999');
    expect(res.status).toBe(200);
    expect(res.body).toEqual({ product: '999', page: 0, count: 5, results: [] });
  });

  test('count above 1000 is clamped to 1000', async () => {
    expect((await request(app).get('/reviews?product_id=1&count=5000')).body.count).toBe(1000);
    expect((await request(app).get('/reviews?product_id=1&count=99999999999999999999')).body.count).toBe(1000);
  });

  test.each([
    ['product_id=abc', 'product_id'],
    ['', 'product_id'],
    ['product_id=0', 'product_id'],
    ['product_id=2147483648', 'product_id'],
    ['product_id=1.5', 'product_id'],
    ['product_id=1&product_id=2', 'product_id'],
    ['product_id=1&page=0', 'page'],
    ['product_id=1&page=-1', 'page'],
    ['product_id=1&count=-3', 'count'],
    ['product_id=1&count=0', 'count'],
    ['product_id=1&count=', 'count'],
    ['product_id=1&sort=oldest', 'sort'],
  ])('?%s is a 400 naming %s', async (qs, field) => {
    const res = await request(app).get(`/reviews?${qs}`);
    expect(res.status).toBe(400);
    expect(res.headers['content-type']).toMatch(/^application\/json/);
    expect(res.body.error).toContain(field);
    expect(res.body.details.map((d: { field: string }) => d.field)).toContain(field);
  });
});

describe('GET /reviews/meta', () => {
  test('counts are strings, zero keys left out, averages print like avg(), an unrated characteristic is null', async () => {
    const res = await request(app).get('/reviews/meta?product_id=1');
    expect(res.status).toBe(200);
    expect(res.body).toEqual({
      product_id: '1',
      ratings: { 3: '1', 4: '1', 5: '2' },
      recommended: { false: '1', true: '3' },
      characteristics: {
        Fit: { id: 10, value: '3.5000000000000000' },
        Length: { id: 11, value: '3.7500000000000000' },
        Comfort: { id: 12, value: null },
      },
    });
  });

  test('averages match PostgreSQL avg() digit for digit', async () => {
    const res = await request(app).get('/reviews/meta?product_id=2');
    expect(res.body.characteristics.Quality).toEqual({ id: 20, value: '3.1818181818181818' });
    expect(res.body.ratings).toEqual({ 2: '4', 3: '4', 5: '3' });
    const { rows } = await t.db.query<{ avg: string }>('SELECT avg(value)::text AS avg FROM atelier.characteristic_reviews WHERE characteristic_id = 20');
    expect(res.body.characteristics.Quality.value).toBe(rows[0].avg);
  });

  test('a product with nothing at all', async () => {
    const res = await request(app).get('/reviews/meta?product_id=9');
    expect(res.body).toEqual({ product_id: '9', ratings: {}, recommended: {}, characteristics: {} });
  });

  test('reported reviews do not count', async () => {
    const res = await request(app).get('/reviews/meta?product_id=5');
    expect(res.body).toEqual({ product_id: '5', ratings: {}, recommended: {}, characteristics: { Size: { id: 30, value: null } } });
  });

  test.each(['', 'product_id=x', 'product_id=-1', 'product_id=1&product_id=1'])('?%s is a 400 naming product_id', async (qs) => {
    const res = await request(app).get(`/reviews/meta?${qs}`);
    expect(res.status).toBe(400);
    expect(res.body.error).toContain('product_id');
  });
});

describe('POST /reviews', () => {
  const reviewCount = async () => Number((await t.db.query('SELECT count(*) AS n FROM atelier.reviews')).rows[0].n);

  test('creates the review, photos, ratings and aggregates, answering 201 with the new id', async () => {
    const before = (await request(app).get('/reviews/meta?product_id=1')).body;
    const res = await request(app).post('/reviews').send(validReview({
      rating: 2, recommend: false, photos: ['https://img.example/new1.jpg', 'http://img.example/new2.jpg'],
      characteristics: { 10: 1, 11: 5 },
    }));
    expect(res.status).toBe(201);
    expect(res.body).toEqual({ review_id: expect.any(Number) });
    const id = res.body.review_id;
    expect(id).toBeGreaterThan(200);

    const list = await request(app).get('/reviews?product_id=1&sort=newest&count=1');
    expect(list.body.results[0]).toMatchObject({
      review_id: id, rating: 2, summary: 'Nice', body: LONG_BODY, recommend: false, response: null,
      reviewer_name: 'shopper', helpfulness: 0,
    });
    expect(list.body.results[0].photos.map((p: { url: string }) => p.url)).toEqual(['https://img.example/new1.jpg', 'http://img.example/new2.jpg']);
    expect(new Date(list.body.results[0].date).getTime()).toBeGreaterThan(Date.now() - 60_000);

    const after = (await request(app).get('/reviews/meta?product_id=1')).body;
    expect(after.ratings['2']).toBe('1');
    expect(before.ratings['2']).toBeUndefined();
    expect(after.recommended.false).toBe(String(Number(before.recommended.false) + 1));
    expect(after.characteristics.Fit.value).toBe('3.0000000000000000'); // (14 + 1) / 5
    expect(after.characteristics.Length.value).toBe('4.0000000000000000'); // (15 + 5) / 5
  });

  test('accepts form-style strings for integers and booleans', async () => {
    const res = await request(app).post('/reviews').send(validReview({ product_id: '3', rating: '5', recommend: 'true', characteristics: {} }));
    expect(res.status).toBe(201);
    const meta = (await request(app).get('/reviews/meta?product_id=3')).body;
    expect(meta).toEqual({ product_id: '3', ratings: { 5: '1' }, recommended: { true: '1' }, characteristics: {} });
  });

  test.each([
    ['product_id', { product_id: 0 }],
    ['product_id', { product_id: 'abc' }],
    ['product_id', { product_id: 2147483648 }],
    ['rating', { rating: 0 }],
    ['rating', { rating: 6 }],
    ['rating', { rating: '5.5' }],
    ['rating', { rating: 4.5 }],
    ['rating', { rating: null }],
    ['summary', { summary: 'x'.repeat(61) }],
    ['summary', { summary: 42 }],
    ['body', { body: 'x'.repeat(49) }],
    ['body', { body: 'x'.repeat(1001) }],
    ['body', { body: undefined }],
    ['recommend', { recommend: 'yes' }],
    ['recommend', { recommend: 7 }],
    ['recommend', { recommend: 1 }],
    ['name', { name: '' }],
    ['name', { name: 'x'.repeat(61) }],
    ['name', { name: { first: 'a' } }],
    ['email', { email: 'not-an-address' }],
    ['email', { email: `${'x'.repeat(50)}@example.com` }],
    ['photos', { photos: 'https://img.example/a.jpg' }],
    ['photos', { photos: Array.from({ length: 6 }, (_, i) => `https://img.example/${i}.jpg`) }],
    ['photos.0', { photos: ['ftp://img.example/a.jpg'] }],
    ['photos.0', { photos: ['not a url'] }],
    ['photos.0', { photos: [`https://img.example/${'x'.repeat(2048)}`] }],
    ['characteristics.10', { characteristics: { 10: 6 } }],
    ['characteristics.10', { characteristics: { 10: '2.5' } }],
    ['characteristics.abc', { characteristics: { abc: 3 } }],
    ['characteristics', { characteristics: [3] }],
    ['characteristics.20', { characteristics: { 10: 3, 20: 3 } }],
    ['characteristics.999', { characteristics: { 999: 3 } }],
  ])('a bad %s is a 400 naming it, and nothing is written', async (field, overrides) => {
    const before = await reviewCount();
    const res = await request(app).post('/reviews').send(validReview(overrides));
    expect(res.status).toBe(400);
    expect(res.body.error).toEqual(expect.any(String));
    expect(res.body.details.map((d: { field: string }) => d.field)).toContain(field);
    expect(await reviewCount()).toBe(before);
  });

  test('every offending field is named at once', async () => {
    const res = await request(app).post('/reviews').send({ product_id: 1, rating: 9, body: 'short', recommend: 'maybe' });
    expect(res.status).toBe(400);
    const fields = res.body.details.map((d: { field: string }) => d.field).sort();
    expect(fields).toEqual(['body', 'email', 'name', 'rating', 'recommend']);
    for (const f of fields) expect(res.body.error).toContain(f);
  });

  test('fields found wrong at different stages are named together: the schema, the key header, and characteristics of another product', async () => {
    // Issue 28: rating 7, a 40-character body and another product's characteristic named
    // rating and body only; fixing those met a second 400.
    const before = await reviewCount();
    for (const keyed of [false, true]) {
      const agent = keyed ? request(app).post('/reviews').set('Idempotency-Key', 'bad key with spaces') : request(app).post('/reviews');
      const res = await agent.send(validReview({ rating: 7, body: 'x'.repeat(40), characteristics: { 10: 4, 20: 3, 30: 5 } }));
      expect(res.status).toBe(400);
      const fields = res.body.details.map((d: { field: string }) => d.field).sort();
      expect(fields).toEqual([...(keyed ? ['Idempotency-Key'] : []), 'body', 'characteristics.20', 'characteristics.30', 'rating']);
      for (const f of fields) expect(res.body.error).toContain(f);
    }
    expect(await reviewCount()).toBe(before);
  });

  test('a body that is not JSON is a 400; a non-JSON content type is a 415; an oversized body is a 413', async () => {
    const bad = await request(app).post('/reviews').set('Content-Type', 'application/json').send('{"product_id": 1,');
    expect(bad.status).toBe(400);
    expect(bad.body.error).toMatch(/JSON/);
    const form = await request(app).post('/reviews').set('Content-Type', 'text/plain').send('product_id=1');
    expect(form.status).toBe(415);
    expect(form.body.error).toMatch(/JSON/);
    const huge = await request(app).post('/reviews').set('Content-Type', 'application/json').send(JSON.stringify(validReview({ body: 'x'.repeat(200_000) })));
    expect(huge.status).toBe(413);
    expect(huge.body.error).toMatch(/limit/);
  });
});

// POST /reviews with plain JSON headers is served before Express (src/reviews/routes.ts,
// postDispatch); any other spelling (here: a query string) or body framing goes to the
// Express route and its body parser. The same requests through both must answer alike.
describe('POST /reviews served before Express and by Express', () => {
  const pick = (res: request.Response) => ({
    status: res.status, type: res.headers['content-type'], replayed: res.headers['idempotent-replayed'], nosniff: res.headers['x-content-type-options'],
    cookie: (res.headers['set-cookie'] as unknown as string[] | undefined)?.[0]?.replace(/=[^;]*/, '=…'),
    body: res.text.replace(/"request_id":"[^"]*"/, '"request_id":"…"').replace(/"review_id":\d+/, '"review_id":N').replace(/twin-key-\w+/, 'twin-key-…'),
  });
  const send = (path: string, body: string, headers: Record<string, string> = {}) => {
    let r = request(app).post(path).set('Content-Type', headers['Content-Type'] ?? 'application/json');
    for (const [k, v] of Object.entries(headers)) if (k !== 'Content-Type') r = r.set(k, v);
    return r.send(body);
  };
  const both = async (body: (path: string) => string, headers: (path: string) => Record<string, string> = () => ({})) => {
    const fast = await send('/reviews', body('/reviews'), headers('/reviews'));
    const slow = await send('/reviews?via=express', body('/reviews?via=express'), headers('/reviews?via=express'));
    expect(pick(fast)).toEqual(pick(slow));
    return fast;
  };

  test('valid, invalid, empty, BOM-prefixed and mistyped bodies', async () => {
    const named = (path: string) => JSON.stringify(validReview({ name: `twin ${path}`, characteristics: { 10: 3 } }));
    expect((await both(named)).status).toBe(201);
    expect((await both(() => '{"product_id": 1,')).status).toBe(400);
    expect((await both(() => '')).status).toBe(400);
    expect((await both(() => 'null')).status).toBe(400);
    expect((await both((p) => `\ufeff${named(`${p} bom`)}`)).status).toBe(201);
    expect((await both(() => JSON.stringify(validReview({ rating: 9 })))).status).toBe(400);
    expect((await both(() => JSON.stringify(validReview({ characteristics: { 20: 3 } })))).status).toBe(400);
    expect((await both((p) => named(`${p} upper`), () => ({ 'Content-Type': 'Application/JSON; charset=UTF-8' }))).status).toBe(201);
  });

  test('keys: first use, replay, reuse with another body, a malformed key', async () => {
    const body = (p: string) => JSON.stringify(validReview({ name: `keyed ${p}` }));
    const key = (p: string) => ({ 'Idempotency-Key': `twin-key-${p.includes('?') ? 'express' : 'fast'}` });
    expect((await both(body, key)).status).toBe(201);
    expect((await both(body, key)).headers['idempotent-replayed']).toBe('true');
    expect((await both((p) => JSON.stringify(validReview({ name: `other ${p}` })), key)).status).toBe(422);
    expect((await both(body, () => ({ 'Idempotency-Key': 'has space' }))).status).toBe(400);
  });
});

describe('POST /reviews with an Idempotency-Key', () => {
  const count = async (name: string) => (await t.db.query('SELECT count(*)::int AS n FROM atelier.reviews WHERE reviewer_name = $1', [name])).rows[0].n;

  test('a retried request returns the first review and writes nothing more', async () => {
    const body = validReview({ name: 'retrier', characteristics: { 10: 4 } });
    const first = await request(app).post('/reviews').set('Idempotency-Key', 'order-1-review').send(body);
    const again = await request(app).post('/reviews').set('Idempotency-Key', 'order-1-review').send(body);
    expect(first.status).toBe(201);
    expect(again.status).toBe(201);
    expect(again.body).toEqual(first.body);
    expect(first.headers['idempotent-replayed']).toBeUndefined();
    expect(again.headers['idempotent-replayed']).toBe('true');
    expect(await count('retrier')).toBe(1);
  });

  test('concurrent requests with one key create exactly one review', async () => {
    const body = validReview({ product_id: 6, name: 'racer' });
    const server = app.listen(0);
    try {
      const results = await Promise.all(Array.from({ length: 12 }, () => request(server).post('/reviews').set('Idempotency-Key', 'race-key').send(body)));
      expect(results.map((r) => r.status)).toEqual(Array(12).fill(201));
      expect(new Set(results.map((r) => r.body.review_id)).size).toBe(1);
      expect(await count('racer')).toBe(1);
    } finally {
      server.closeAllConnections();
      server.close();
    }
  });

  test('a request whose key is claimed by a transaction still open gets that review once it commits, and leaves nothing of its own', async () => {
    // A holds the key uncommitted; B (the same request, a retry) finds no key, writes its
    // review, then waits on the key, finds it taken when A commits, and rolls its own writes
    // back (public.create_review, db/migrations/0004 and 0005).
    const a = await t.db.connect();
    try {
      await a.query('BEGIN');
      const mine = await a.query<{ review_id: number }>("SELECT review_id FROM public.create_review(9, 4::smallint, 's', $1, true, 'key-holder', 'k@example.com', '{}', '{}', '{}', 'held-key')", [LONG_BODY]);
      const b = request(app).post('/reviews').set('Idempotency-Key', 'held-key')
        .send({ product_id: 9, rating: 4, summary: 's', body: LONG_BODY, recommend: true, name: 'key-holder', email: 'k@example.com' }).then((r) => r);
      await new Promise((r) => setTimeout(r, 300));
      await a.query('COMMIT');
      const res = await b;
      expect(res.status).toBe(201);
      expect(res.body.review_id).toBe(mine.rows[0].review_id);
      expect(res.headers['idempotent-replayed']).toBe('true');
      expect(await count('key-holder')).toBe(1);
      const ratings = (await request(app).get('/reviews/meta?product_id=9')).body.ratings;
      expect(ratings).toEqual({ 4: '1' });
    } finally {
      await a.query('ROLLBACK').catch(() => undefined);
      a.release();
    }
  });

  test('a key reused with a different request is a 422 naming the key, and nothing of that request is stored', async () => {
    const first = await request(app).post('/reviews').set('Idempotency-Key', 'reused-key').send(validReview({ product_id: 1, name: 'first-use' }));
    expect(first.status).toBe(201);
    const before = (await request(app).get('/reviews/meta?product_id=2')).body;
    for (const other of [validReview({ product_id: 1, name: 'first-use', body: `${LONG_BODY} (edited)` }), validReview({ product_id: 2, name: 'first-use' })]) {
      const res = await request(app).post('/reviews').set('Idempotency-Key', 'reused-key').send(other);
      expect(res.status).toBe(422);
      expect(res.body.error).toContain('"reused-key"');
      expect(res.headers['idempotent-replayed']).toBeUndefined();
      expect(res.headers['set-cookie']).toBeUndefined();
    }
    expect(await count('first-use')).toBe(1);
    expect((await request(app).get('/reviews/meta?product_id=2')).body).toEqual(before);
    // The same request again still replays.
    const again = await request(app).post('/reviews').set('Idempotency-Key', 'reused-key').send(validReview({ product_id: 1, name: 'first-use' }));
    expect(again.status).toBe(201);
    expect(again.body).toEqual(first.body);
  });

  test('a different request racing an uncommitted use of its key gets the 422 once that commits, and leaves nothing', async () => {
    const before = (await request(app).get('/reviews/meta?product_id=8')).body;
    const a = await t.db.connect();
    try {
      await a.query('BEGIN');
      await a.query("SELECT review_id FROM public.create_review(7, 4::smallint, 's', $1, true, 'race-holder', 'k@example.com', '{}', '{}', '{}', 'raced-key')", [LONG_BODY]);
      const b = request(app).post('/reviews').set('Idempotency-Key', 'raced-key').send(validReview({ product_id: 8, name: 'race-other' })).then((r) => r);
      await new Promise((r) => setTimeout(r, 300));
      await a.query('COMMIT');
      const res = await b;
      expect(res.status).toBe(422);
      expect(res.body.error).toContain('"raced-key"');
      expect(await count('race-other')).toBe(0);
      expect((await request(app).get('/reviews/meta?product_id=8')).body).toEqual(before);
    } finally {
      await a.query('ROLLBACK').catch(() => undefined);
      a.release();
    }
  });

  test('a malformed key is a 400 naming the header', async () => {
    for (const key of ['has space', 'x'.repeat(201), 'é']) {
      const res = await request(app).post('/reviews').set('Idempotency-Key', key).send(validReview());
      expect(res.status).toBe(400);
      expect(res.body.error).toContain('Idempotency-Key');
    }
  });
});

describe('PUT /reviews/:id/helpful and /report', () => {
  test('helpful adds one and answers 204 with no body', async () => {
    const before = (await t.db.query('SELECT helpfulness FROM atelier.reviews WHERE id = 3')).rows[0].helpfulness;
    const res = await request(app).put('/reviews/3/helpful');
    expect(res.status).toBe(204);
    expect(res.text).toBe('');
    expect((await t.db.query('SELECT helpfulness FROM atelier.reviews WHERE id = 3')).rows[0].helpfulness).toBe(before + 1);
  });

  test.each(['helpful', 'report'])('%s on an unknown id is 404, on a malformed id 400', async (action) => {
    for (const id of ['987654', '2147483648', '-4']) {
      const res = await request(app).put(`/reviews/${id}/${action}`);
      expect(res.status).toBe(404);
      expect(res.body.error).toContain(id);
    }
    for (const id of ['abc', '1.5', '1e3']) {
      const res = await request(app).put(`/reviews/${id}/${action}`);
      expect(res.status).toBe(400);
      expect(res.body.error).toContain('review_id');
    }
  });

  // PUT /reviews/<digits>/<vote> is served before Express (src/reviews/routes.ts,
  // voteDispatch); other spellings Express routes. Both must answer alike.
  test.each(['helpful', 'report'])('%s answers alike served before Express and by Express', async (action) => {
    const pick = (res: request.Response) => ({
      status: res.status, body: res.text.replace(/"request_id":"[^"]*"/, '"request_id":"…"'), nosniff: res.headers['x-content-type-options'], requestId: typeof res.headers['x-request-id'],
      cookie: (res.headers['set-cookie'] as unknown as string[] | undefined)?.[0]?.replace(/=[^;]*/, '=…'),
    });
    const helpfulness = async () => (await t.db.query('SELECT helpfulness FROM atelier.reviews WHERE id = 5')).rows[0].helpfulness;
    const before = await helpfulness();
    for (const [fast, slow] of [['/reviews/5', '/Reviews/5'], ['/reviews/987654', '/reviews/987654']]) {
      const a = await request(app).put(`${fast}/${action}`);
      const b = await request(app).put(`${slow}/${action}${fast === slow ? '/' : ''}`);
      expect(pick(a)).toEqual(pick(b));
    }
    if (action === 'helpful') expect(await helpfulness()).toBe(before + 2);
  });

  test('when a review is reported twice, then it disappears and meta counts it out once', async () => {
    const before = (await request(app).get('/reviews/meta?product_id=2')).body;
    expect((await request(app).put('/reviews/100/report')).status).toBe(204);
    expect((await request(app).put('/reviews/100/report')).status).toBe(204);
    const after = (await request(app).get('/reviews/meta?product_id=2')).body;
    expect(after.ratings['5']).toBe(String(Number(before.ratings['5']) - 1));
    // (35 - 5) / 10
    expect(after.characteristics.Quality.value).toBe('3.0000000000000000');
    expect(ids(await request(app).get('/reviews?product_id=2&count=50'))).not.toContain(100);
  });
});

describe('errors and operations', () => {
  test('unknown routes are JSON 404s', async () => {
    const res = await request(app).get('/nope');
    expect(res.status).toBe(404);
    expect(res.body).toEqual({ error: 'No route for GET /nope.', request_id: res.headers['x-request-id'] });
  });

  test('healthz and readyz answer, with hardened headers', async () => {
    const h = await request(app).get('/healthz');
    expect(h.status).toBe(200);
    expect(h.headers['x-powered-by']).toBeUndefined();
    expect(h.headers['x-content-type-options']).toBe('nosniff');
    expect((await request(app).get('/readyz')).body).toEqual({ status: 'ready' });
  });

  test('the aggregates equal a recomputation from the raw rows after all of the above', async () => {
    const stored = await t.db.query('SELECT product_id, r1, r2, r3, r4, r5, recommended, not_recommended FROM atelier.product_ratings WHERE r1 + r2 + r3 + r4 + r5 > 0 ORDER BY product_id');
    const truth = await t.db.query(`${productTotalsSql('atelier')} ORDER BY product_id`);
    expect(stored.rows).toEqual(truth.rows);
  });
});

test('every response above matches the OpenAPI document', () => {
  expect(app.checked()).toBeGreaterThan(0);
  expect(app.violations).toEqual([]);
});

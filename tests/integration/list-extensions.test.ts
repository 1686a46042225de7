// Extensions of GET /reviews that leave the contract untouched: ?rating=… (only reviews
// with those star ratings, any sort) and X-Total-Count (visible reviews on all pages, from
// the rating counts the service keeps: no extra scan).
import request from 'supertest';
import { createApp } from '../../src/app';
import { contractChecked } from '../helpers/contract-check';
import { finishArrange, insertReviews, validReview } from '../helpers/fixtures';
import { createTestDatabase, type TestDatabase } from '../helpers/test-db';

let t: TestDatabase;
let app: ReturnType<typeof contractChecked>;
// Product 1: ratings 5,5,4,3,1 visible and a reported 5.
const RATINGS = [5, 5, 4, 3, 1, 5];

beforeAll(async () => {
  t = await createTestDatabase();
  // Every response is also checked against the OpenAPI document (src/openapi.ts).
  app = contractChecked(createApp(t.db, { log: () => undefined }));
  await insertReviews(t.db, RATINGS.map((rating, i) => ({
    id: i + 1, product_id: 1, rating, date: `2021-0${i + 1}-01T00:00:00.000Z`, helpfulness: i, reported: i === 5,
  })));
  await finishArrange(t.db);
});

afterAll(async () => {
  await t.drop();
});

const ratingsOf = (res: request.Response) => res.body.results.map((r: { rating: number }) => r.rating);

test('X-Total-Count is the number of visible reviews on all pages, whatever the page size', async () => {
  for (const q of ['', '&count=2', '&count=2&page=3', '&page=99']) {
    const res = await request(app).get(`/reviews?product_id=1${q}`);
    expect(res.headers['x-total-count']).toBe('5');
  }
  expect((await request(app).get('/reviews?product_id=999')).headers['x-total-count']).toBe('0');
});

test.each(['newest', 'helpful', 'relevant'])('?rating=… lists only those stars (sort=%s) and counts them', async (sort) => {
  const five = await request(app).get(`/reviews?product_id=1&sort=${sort}&rating=5`);
  expect(ratingsOf(five)).toEqual([5, 5]);
  expect(five.headers['x-total-count']).toBe('2');
  const some = await request(app).get(`/reviews?product_id=1&sort=${sort}&rating=1,4&count=1`);
  expect(ratingsOf(some)).toHaveLength(1);
  expect([1, 4]).toContain(ratingsOf(some)[0]);
  expect(some.headers['x-total-count']).toBe('2');
  const all = await request(app).get(`/reviews?product_id=1&sort=${sort}`);
  const filteredAll = await request(app).get(`/reviews?product_id=1&sort=${sort}&rating=5,4,3,2,1`);
  expect(filteredAll.text).toBe(all.text);
});

test('without the parameter the body is exactly the contract (no new field); bad values are a 400 naming rating', async () => {
  const res = await request(app).get('/reviews?product_id=1');
  expect(Object.keys(res.body)).toEqual(['product', 'page', 'count', 'results']);
  for (const bad of ['6', '0', '4,', 'five', '4;5', '']) {
    const r = await request(app).get(`/reviews?product_id=1&rating=${bad}`);
    expect(r.status).toBe(400);
    expect(r.body.details.map((d: { field: string }) => d.field)).toEqual(['rating']);
  }
  expect((await request(app).get('/reviews?product_id=1&rating=4&rating=5')).body.error).toMatch(/rating/);
});

test("a write that changes X-Total-Count but not the page changes the ETag: revalidation never keeps an old count", async () => {
  const url = '/reviews?product_id=3&page=99';
  const before = await request(app).get(url);
  expect(before.headers['x-total-count']).toBe('0');
  const posted = await request(app).post('/reviews').send(validReview({ product_id: 3 }));
  expect(posted.status).toBe(201);
  const after = await request(app).get(url).set('If-None-Match', before.headers.etag);
  expect(after.text).toBe(before.text);
  expect(after.status).toBe(200);
  expect(after.headers['x-total-count']).toBe('1');
  expect(after.headers.etag).not.toBe(before.headers.etag);
  // And the new validator revalidates as before.
  expect((await request(app).get(url).set('If-None-Match', after.headers.etag)).status).toBe(304);
});

test('every response above matches the OpenAPI document', () => {
  expect(app.checked()).toBeGreaterThan(0);
  expect(app.violations).toEqual([]);
});

// The list's read model (db/migrations/0004): each review's card is the same bytes
// whichever writer made it (the import in Node, POST or an operator's UPDATE through the
// trigger), the list built from cards is what the contract says, and the audit finds and
// repairs a card that does not match its row.
import fc from 'fast-check';
import request from 'supertest';
import { createApp } from '../src/app';
import { reviewCard } from '../src/etl/rows';
import { auditAggregates, repairAggregates } from '../src/reviews/aggregates';
import { finishArrange, insertReviews, LONG_BODY, validReview } from './helpers/fixtures';
import { createTestDatabase, type TestDatabase } from './helpers/test-db';

let t: TestDatabase;

beforeAll(async () => {
  t = await createTestDatabase();
  await insertReviews(t.db, [{ id: 1, product_id: 1, rating: 4, date: '2021-01-01T10:20:30.123Z', summary: 'tab\there', response: 'a "reply"' }]);
  await finishArrange(t.db);
});

afterAll(async () => {
  await t.drop();
});

// Text PostgreSQL can store: any Unicode but U+0000 (lone surrogates cannot arrive as UTF-8).
const storable = fc.string({ unit: 'binary', maxLength: 60 }).map((s) => s.replace(/\u0000/g, '').replace(/[\ud800-\udfff]/g, '?'));

test("the import's card (rendered in Node) is byte for byte public.review_card() of the same row", async () => {
  await fc.assert(fc.asyncProperty(
    fc.record({
      id: fc.integer({ min: 1, max: 2147483647 }),
      rating: fc.integer({ min: 1, max: 5 }),
      summary: storable,
      recommend: fc.boolean(),
      response: fc.option(storable, { nil: null }),
      body: storable,
      ms: fc.integer({ min: 0, max: Date.UTC(2100, 0, 1) }),
      name: storable,
    }),
    async (r) => {
      const date = new Date(r.ms).toISOString();
      const { rows } = await t.db.query<{ card: string }>(
        'SELECT public.review_card($1, $2::smallint, $3, $4, $5, $6, $7::timestamptz, $8) AS card',
        [r.id, r.rating, r.summary, r.recommend, r.response, r.body, date, r.name]);
      const mine = reviewCard(r.id, r.rating, r.summary, r.recommend, r.response, r.body, date, r.name);
      expect(mine).toBe(rows[0].card);
      // …and it is the start of a JSON object a client parses back to the row's values.
      expect(JSON.parse(`${mine}0,"photos":[]}`)).toEqual({
        review_id: r.id, rating: r.rating, summary: r.summary, recommend: r.recommend, response: r.response,
        body: r.body, date, reviewer_name: r.name, helpfulness: 0, photos: [],
      });
    }), { numRuns: 300 });
});

test('POST, helpful and an operator editing a review keep its card exact; the list shows the live values', async () => {
  const app = createApp(t.db, { log: () => undefined });
  const posted = await request(app).post('/reviews').send(validReview({ product_id: 2, summary: 'back\\slash "q"', photos: ['https://img.example/1.jpg'] }));
  expect(posted.status).toBe(201);
  const id = posted.body.review_id as number;
  expect((await request(app).put(`/reviews/${id}/helpful`)).status).toBe(204);
  await t.db.query("UPDATE atelier.reviews SET body = $1 WHERE id = $2", [`${LONG_BODY} (edited)`, id]);
  const list = await request(app).get('/reviews?product_id=2');
  expect(list.body.results).toEqual([expect.objectContaining({
    review_id: id, summary: 'back\\slash "q"', body: `${LONG_BODY} (edited)`, helpfulness: 1,
    photos: [{ id: expect.any(Number), url: 'https://img.example/1.jpg' }],
  })]);
  expect((await auditAggregates(t.db)).drifted).toEqual([]);
});

test('the audit finds a card that differs from its row, and repair renders it again', async () => {
  await t.db.query(`UPDATE atelier.reviews SET card = replace(card, 'tab', 'TAB') WHERE id = 1`);
  const audit = await auditAggregates(t.db);
  expect(audit.drifted).toEqual([1]);
  expect(audit.examples.join('\n')).toMatch(/review 1: its card/);
  await repairAggregates(t.db, audit.drifted);
  expect((await auditAggregates(t.db)).drifted).toEqual([]);
  const list = await request(createApp(t.db, { log: () => undefined })).get('/reviews?product_id=1');
  expect(list.body.results[0].summary).toBe('tab\there');
});

// HTTP routes of the reviews domain: parse and validate, call the repository, answer.
// Registered on the app directly (no sub-router) and with the JSON body parser only on
// the route that takes a body: on this box each skipped layer is measurable throughput.
import express, { type Express, type Response } from 'express';
import { HttpError } from '../errors';
import type { ReviewRepository } from './repository';
import { listQuery, newReview, parseIdempotencyKey, parseOr400, parseReviewId, productIdQuery } from './schemas';

export const BODY_LIMIT = '64kb';

/** Sends JSON text that PostgreSQL already rendered, without a parse/stringify round trip. */
function sendJsonText(res: Response, status: number, body: string): void {
  res.writeHead(status, { 'Content-Type': 'application/json; charset=utf-8', 'Content-Length': Buffer.byteLength(body) });
  res.end(body);
}

export function registerReviewRoutes(app: Express, repo: ReviewRepository): void {
  app.get('/reviews', async (req, res) => {
    const q = parseOr400(listQuery, req.query, 'query parameters');
    const offset = (q.page - 1) * q.count;
    // No product has 2^31 reviews: a page that far out is empty without asking the database.
    const results = offset > 2147483647 ? '[]' : await repo.list(q.product_id, q.sort, q.count, offset);
    sendJsonText(res, 200, `{"product":"${q.product_id}","page":${q.page - 1},"count":${q.count},"results":${results}}`);
  });

  app.get('/reviews/meta', async (req, res) => {
    const q = parseOr400(productIdQuery, req.query, 'query parameters');
    sendJsonText(res, 200, await repo.meta(q.product_id));
  });

  // Only JSON bodies are parsed; other types leave req.body undefined and get a 415 here.
  app.post('/reviews', express.json({ limit: BODY_LIMIT, strict: false }), async (req, res) => {
    if (!req.is('application/json')) {
      throw new HttpError(415, 'Request body must be JSON (Content-Type: application/json).');
    }
    const review = parseOr400(newReview, req.body, 'review');
    const key = parseIdempotencyKey(req.get('Idempotency-Key'));
    const { id, created } = await repo.create(review, key);
    // A replay answers exactly as the first attempt did, marked so clients can tell.
    if (!created) res.setHeader('Idempotent-Replayed', 'true');
    res.status(201).json({ review_id: id });
  });

  const notFound = (id: string) => new HttpError(404, `No review with id ${id}.`);

  app.put('/reviews/:review_id/helpful', async (req, res) => {
    const id = parseReviewId(req.params.review_id);
    if (id === null || !(await repo.markHelpful(id))) throw notFound(req.params.review_id);
    res.status(204).end();
  });

  app.put('/reviews/:review_id/report', async (req, res) => {
    const id = parseReviewId(req.params.review_id);
    if (id === null || !(await repo.report(id))) throw notFound(req.params.review_id);
    res.status(204).end();
  });
}

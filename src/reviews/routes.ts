// HTTP routes of the reviews domain: parse and validate, call the repository, answer.
import { Router, type Response } from 'express';
import { HttpError } from '../errors';
import type { ReviewRepository } from './repository';
import { listQuery, newReview, parseOr400, parseReviewId, productIdQuery } from './schemas';

/** Sends JSON text that PostgreSQL already rendered, without a parse/stringify round trip. */
function sendJsonText(res: Response, status: number, body: string): void {
  res.status(status).type('application/json; charset=utf-8').send(body);
}

export function reviewsRouter(repo: ReviewRepository): Router {
  const router = Router();

  router.get('/', async (req, res) => {
    const q = parseOr400(listQuery, req.query, 'query parameters');
    const offset = (q.page - 1) * q.count;
    // No product has 2^31 reviews: a page that far out is empty without asking the database.
    const results = offset > 2147483647 ? '[]' : await repo.list(q.product_id, q.sort, q.count, offset);
    sendJsonText(res, 200, `{"product":"${q.product_id}","page":${q.page - 1},"count":${q.count},"results":${results}}`);
  });

  router.get('/meta', async (req, res) => {
    const q = parseOr400(productIdQuery, req.query, 'query parameters');
    sendJsonText(res, 200, await repo.meta(q.product_id));
  });

  router.post('/', async (req, res) => {
    if (!req.is('application/json')) {
      throw new HttpError(415, 'Request body must be JSON (Content-Type: application/json).');
    }
    const review = parseOr400(newReview, req.body, 'review');
    const id = await repo.create(review);
    res.status(201).json({ review_id: id });
  });

  const notFound = (id: string) => new HttpError(404, `No review with id ${id}.`);

  router.put('/:review_id/helpful', async (req, res) => {
    const id = parseReviewId(req.params.review_id);
    if (id === null || !(await repo.markHelpful(id))) throw notFound(req.params.review_id);
    res.status(204).end();
  });

  router.put('/:review_id/report', async (req, res) => {
    const id = parseReviewId(req.params.review_id);
    if (id === null || !(await repo.report(id))) throw notFound(req.params.review_id);
    res.status(204).end();
  });

  return router;
}

// HTTP routes of the reviews domain: parse and validate, call the repository, answer.
// The common spellings are served before Express (Express's router, body parser and
// response helpers cost more per request than the handlers' own work): the two reads by
// the read path (./read-path.ts), the votes and plain-JSON POSTs by voteDispatch and
// postDispatch below. The Express routes take every other spelling and answer the same way.
// Registered on the app directly (no sub-router), with the JSON body parser only on the
// route that takes a body: on this box each skipped layer is measurable throughput.
import type { IncomingMessage, ServerResponse } from 'node:http';
import express, { type Express } from 'express';
import { HttpError, type FieldProblem } from '../lib/http-error';
import type { Handler, ReadPath } from './read-path';
import type { ReviewRepository } from './repository';
import { invalid, newReview, parseIdempotencyKey, parseOr400, parseReviewId, type NewReview } from './schemas';

export const BODY_LIMIT = '64kb';
const BODY_LIMIT_BYTES = 64 * 1024;

// The request id the HTTP edge assigned (a response header), for the database's view.
const requestIdOf = (res: ServerResponse): string => String(res.getHeader('X-Request-Id') ?? '');

type Vote = 'helpful' | 'report';

/**
 * The body of POST /reviews, or a 400 naming every offending field, whichever stage finds it:
 * the schema, the Idempotency-Key header, and (the database's part) characteristics of
 * another product. A body the schema refuses is also checked against the product's
 * characteristics when its product_id and characteristic ids are well-formed (one indexed
 * read, at most 50 ids), so a client fixing the named fields does not meet a new 400.
 */
async function parseNewReview(repo: ReviewRepository, body: unknown, keyHeader: string | undefined): Promise<{ review: NewReview; key?: string }> {
  const problems: FieldProblem[] = [];
  /** One stage's parse; its field problems are kept for the one 400 and it gives undefined. */
  const stage = <T>(parse: () => T): T | undefined => {
    try {
      return parse();
    } catch (err) {
      if (!(err instanceof HttpError) || !err.details) throw err;
      problems.push(...err.details);
      return undefined;
    }
  };
  const review = stage(() => parseOr400(newReview, body, 'review'));
  const key = stage(() => parseIdempotencyKey(keyHeader));
  if (!problems.length) return { review: review!, key };
  const raw = (body ?? {}) as { product_id?: unknown; characteristics?: unknown };
  const product = Number(raw.product_id);
  const chars = raw.characteristics;
  const ids = chars && typeof chars === 'object' && !Array.isArray(chars) ? Object.keys(chars) : [];
  const named = new Set(problems.map((p) => p.field));
  if (Number.isInteger(product) && product >= 1 && !named.has('product_id') && ids.length && ids.length <= 50 && ids.every((k) => /^[1-9]\d{0,9}$/.test(k) && !named.has(`characteristics.${k}`))) {
    for (const id of await repo.foreignCharacteristics(product, ids.map(Number))) {
      problems.push({ field: `characteristics.${id}`, message: `characteristic ${id} does not belong to product ${product}` });
    }
  }
  throw invalid('review', problems);
}

/**
 * The writes themselves, once for both ways in (the Express routes and the dispatch before
 * Express): from the parsed body or the path's id to the answer, on the bare Node response.
 */
function reviewWrites(repo: ReviewRepository, reads: ReadPath) {
  return {
    async create(body: unknown, keyHeader: string | undefined, req: IncomingMessage, res: ServerResponse): Promise<void> {
      const { review, key } = await parseNewReview(repo, body, keyHeader);
      const { id, created } = await repo.create(review, key, requestIdOf(res));
      reads.noteWrite(req, res, review.product_id);
      // A replay answers exactly as the first attempt did, marked so clients can tell.
      if (!created) res.setHeader('Idempotent-Replayed', 'true');
      const text = JSON.stringify({ review_id: id });
      res.writeHead(201, { 'Content-Type': 'application/json; charset=utf-8', 'Content-Length': Buffer.byteLength(text) });
      res.end(text);
    },
    async vote(kind: Vote, rawId: string, req: IncomingMessage, res: ServerResponse): Promise<void> {
      const id = parseReviewId(rawId);
      const product = id === null ? undefined : await (kind === 'helpful' ? repo.markHelpful(id, requestIdOf(res)) : repo.report(id, requestIdOf(res)));
      if (product === undefined) throw new HttpError(404, `No review with id ${rawId}.`);
      reads.noteWrite(req, res, product);
      res.statusCode = 204;
      res.end();
    },
  };
}

export function registerReviewRoutes(app: Express, repo: ReviewRepository, reads: ReadPath): void {
  const writes = reviewWrites(repo, reads);
  app.get('/reviews', reads.list);
  app.get('/reviews/meta', reads.meta);

  // Only JSON bodies are parsed; other types leave req.body undefined and get a 415 here.
  app.post('/reviews', express.json({ limit: BODY_LIMIT, strict: false }), async (req, res) => {
    if (!req.is('application/json')) {
      throw new HttpError(415, 'Request body must be JSON (Content-Type: application/json).');
    }
    await writes.create(req.body, req.get('Idempotency-Key'), req, res);
  });
  for (const kind of ['helpful', 'report'] as const) {
    app.put(`/reviews/:review_id/${kind}`, (req, res) => writes.vote(kind, req.params.review_id as string, req, res));
  }
}

/**
 * The votes, PUT /reviews/<id>/helpful and /report spelled exactly (digits, no query
 * string), served before Express as the reads are: Express's router and response helpers
 * cost more than the handler's own work. Every other spelling goes on to the Express routes
 * above, which answer the same way.
 */
export function voteDispatch(repo: ReviewRepository, reads: ReadPath, respondError: (err: unknown, res: ServerResponse) => void): (req: IncomingMessage, res: ServerResponse) => boolean {
  const writes = reviewWrites(repo, reads);
  const VOTE = /^\/reviews\/(\d{1,10})\/(helpful|report)$/;
  const handler = (kind: Vote): Handler => (req, res) => writes.vote(kind, VOTE.exec(req.url!)![1], req, res).catch((err) => respondError(err, res));
  const handlers = { helpful: handler('helpful'), report: handler('report') };
  return (req, res) => {
    if (req.method !== 'PUT') return false;
    const m = VOTE.exec(req.url ?? '');
    if (!m) return false;
    const kind = m[2] as Vote;
    reads.serve(handlers[kind], req, res, `/reviews/:review_id/${kind}`);
    return true;
  };
}

/** The request body as UTF-8 text (a leading byte-order mark dropped, as body-parser does). */
function readText(req: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const text = Buffer.concat(chunks).toString('utf8');
      resolve(text.charCodeAt(0) === 0xfeff ? text.slice(1) : text);
    });
    req.on('aborted', () => reject(new HttpError(400, 'Request body was aborted by the client.')));
    req.on('error', reject);
  });
}

/**
 * POST /reviews served before Express when its headers leave nothing to negotiate: exactly
 * that path, `Content-Type: application/json` (or with `; charset=utf-8`), a Content-Length
 * within the body limit, no Content-Encoding or Transfer-Encoding. Anything else (a larger,
 * compressed, chunked or differently typed body, another spelling) goes on to the Express
 * route with its body parser, which answers the same way for the same request (a test
 * compares both).
 */
export function postDispatch(repo: ReviewRepository, reads: ReadPath, respondError: (err: unknown, res: ServerResponse) => void): (req: IncomingMessage, res: ServerResponse) => boolean {
  const writes = reviewWrites(repo, reads);
  const post: Handler = async (req, res) => {
    try {
      const text = await readText(req);
      let body: unknown = {};
      if (text.length) {
        try {
          body = JSON.parse(text);
        } catch {
          throw new HttpError(400, 'Request body is not valid JSON.');
        }
      }
      // Node joins a repeated header of this kind with ", ", as Express's req.get() sees it.
      await writes.create(body, req.headers['idempotency-key'] as string | undefined, req, res);
    } catch (err) {
      respondError(err, res);
    }
  };
  return (req, res) => {
    if (req.method !== 'POST' || req.url !== '/reviews') return false;
    const h = req.headers;
    const type = h['content-type']?.toLowerCase();
    const length = Number(h['content-length']);
    if ((type !== 'application/json' && type !== 'application/json; charset=utf-8') || h['content-encoding'] !== undefined ||
        h['transfer-encoding'] !== undefined || !Number.isInteger(length) || length > BODY_LIMIT_BYTES) return false;
    reads.serve(post, req, res, '/reviews');
    return true;
  };
}

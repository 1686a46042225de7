// The two hot reads, GET /reviews and GET /reviews/meta, answered on the bare Node
// request (before Express, which costs more per request than a cache hit does): the same
// zod schemas validate the query, the response cache answers or single-flights the
// render, and conditional requests get a 304. Express routes call the same handlers for
// spellings the fast dispatch leaves to it (`/Reviews`, a trailing slash).
// Writes report here too (noteWrite): they drop the product's entries before answering
// and give the writer a cookie with which nginx lets its next reads bypass its cache.
import type { IncomingMessage, ServerResponse } from 'node:http';
import querystring from 'node:querystring';
import { HttpError } from '../lib/http-error';
import type { CacheAnswer, Rendered, ResponseCache } from '../response-cache/response-cache';
import type { ReviewRepository } from './repository';
import type { ReadBudget } from './read-budget';
import type { MetaMemory } from './meta-memory';
import type { ReviewMemory } from './review-memory';
import { ratingMask } from './repository';
import { listQuery, parseOr400, productIdQuery } from './schemas';

/** Cookie naming the products a client wrote recently (nginx's cache key config reads it). */
export const WROTE_COOKIE = 'atelier_wrote';
const MAX_WROTE = 8;

export type Handler = (req: IncomingMessage, res: ServerResponse) => Promise<void>;

export interface ReadPath {
  list: Handler;
  meta: Handler;
  /** Serves the request if it is exactly GET/HEAD /reviews or /reviews/meta; false otherwise. */
  dispatch(req: IncomingMessage, res: ServerResponse): boolean;
  /** Runs a handler served before Express with the metrics and the request log (the votes use it too). */
  serve(handler: Handler, req: IncomingMessage, res: ServerResponse, route: string): void;
  /** A write changed `product`: drop its cached reads, and mark the writer for read-your-writes. */
  noteWrite(req: IncomingMessage, res: ServerResponse, product: number): void;
}

export interface ReadPathOptions {
  cache: ResponseCache;
  /** Answers an error as the contract's JSON (the HTTP edge's responder). */
  respondError: (err: unknown, res: ServerResponse) => void;
  /** Lifetime of the writer's cookie: at least nginx's cache TTL. */
  readYourWritesSeconds: number;
  /** Metrics, observed here without a listener per request. */
  metrics?: { begin(): number; end(started: number, route: string, method: string, status: number | string): void };
  /** Hot standbys for reads: a write raises their fence (src/db/replicas.ts). */
  replicas?: { raiseFence(): void };
  /** The per-client budget of bytes rendered on misses (none: unlimited). */
  budget?: ReadBudget;
  /** Every product's meta in memory, exact by the change feed (./meta-memory.ts); none: meta from the cache and the database. */
  metaMemory?: Pick<MetaMemory, 'answer' | 'readBack'>;
  /** Every visible review in memory, exact by the change feed (./review-memory.ts); none: lists from the cache and the database. */
  reviewMemory?: Pick<ReviewMemory, 'answer' | 'readBack'>;
  /** Request logger to run on requests served here; one with `record` is called after the answer, without a listener. */
  logger?: ((req: IncomingMessage, res: ServerResponse, next: () => void) => void) & {
    record?: (req: IncomingMessage, res: ServerResponse, route: string, startedAt: number) => void;
  };
}

function queryOf(req: IncomingMessage): querystring.ParsedUrlQuery {
  const url = req.url ?? '';
  const i = url.indexOf('?');
  // Express's 'simple' query parser is node:querystring too: the same parse, the same rules.
  return i < 0 ? {} : querystring.parse(url.slice(i + 1));
}

/** Whether If-None-Match names this entity tag (or '*'). */
function notModified(req: IncomingMessage, etag: string): boolean {
  const inm = req.headers['if-none-match'];
  if (!inm) return false;
  return inm.split(',').some((t) => {
    const tag = t.trim();
    return tag === '*' || tag === etag || tag === `W/${etag}`;
  });
}

/** The product ids in the writer's cookie (at most MAX_WROTE; one linear scan of the header). */
function wroteProducts(req: IncomingMessage): string[] {
  const cookie = req.headers.cookie;
  if (!cookie) return [];
  const ids = /(?:^|;\s*)atelier_wrote=([0-9.]*)/.exec(cookie)?.[1];
  return ids ? ids.split('.').filter((s) => /^[1-9]\d{0,9}$/.test(s)).slice(-MAX_WROTE) : [];
}

/**
 * The cache lookup for a read: a reader whose cookie names the product wrote it moments ago
 * (possibly through the other host), so its read is rendered fresh from the primary (a
 * standby may not have it yet) and refreshes the cache. Anyone can send the cookie: such a
 * read is a database render, charged to the client's budget like a miss.
 */
function lookup(cache: ResponseCache, product: number, key: string, writer: boolean, render: (fresh: boolean) => Promise<Rendered>) {
  return writer ? cache.refresh(product, key, () => render(true)) : cache.get(product, key, () => render(false));
}

/**
 * For a read a memory table could not answer (asked without counting a dirty read): has its
 * product read back if `readBack` starts one, then asks again (`answer`, which counts the
 * dirty read if it still cannot be answered: once a read).
 */
async function afterReadBack(readBack: () => Promise<void> | undefined, answer: () => CacheAnswer | undefined): Promise<CacheAnswer | undefined> {
  const pending = readBack();
  if (pending) await pending;
  return answer();
}

/** nginx's own header (it never passes it on): 0 = do not cache this answer. */
const NOT_PROVEN = { 'X-Accel-Expires': '0' };

function send(req: IncomingMessage, res: ServerResponse, { entry, outcome, proven }: CacheAnswer): void {
  // A 304 would renew what nginx holds for another TTL (it ignores X-Accel-Expires on a
  // revalidation): an answer not proven fresh is always sent whole, and kept by nobody.
  if (proven && notModified(req, entry.etag)) {
    res.writeHead(304, { ETag: entry.etag, 'X-Response-Cache': outcome });
    res.end();
    return;
  }
  res.writeHead(200, {
    ...entry.headers,
    'Content-Type': 'application/json; charset=utf-8',
    'Content-Length': entry.body.length,
    ETag: entry.etag,
    'X-Response-Cache': outcome,
    // A read not proven fresh (src/db/read-stamp.ts) is served once: nginx must not keep it either.
    ...(proven ? undefined : NOT_PROVEN),
  });
  res.end(req.method === 'HEAD' ? undefined : entry.body);
}

export function createReadPath(repo: ReviewRepository, o: ReadPathOptions): ReadPath {
  const { cache, respondError, budget } = o;

  /**
   * The cache lookup, within the client's budget: a read that will render (a miss, or a
   * writer's read) is refused while the client is over, and charged; a cache hit is
   * neither (a forged writer's cookie bought renders past the budget: issue 28).
   */
  const budgeted = async (req: IncomingMessage, product: number, key: string, render: (fresh: boolean) => Promise<Rendered>,
    writer = wroteProducts(req).includes(String(product))) => {
    if (!budget) return lookup(cache, product, key, writer, render);
    // The client is looked up only when it matters (a cache hit, the common case, costs no
    // header parsing here), and before the wait.
    const client = writer || !cache.holds(key) ? admit(req) : undefined;
    const answer = await lookup(cache, product, key, writer, render);
    if (answer.outcome !== 'HIT') budget.charge(client ?? budget.clientOf(req), answer.entry.body.length);
    return answer;
  };

  /**
   * A read that will cost a render (or a read-back): a 429 while its client is over budget;
   * else the client to charge (undefined without a budget). Taken before any wait: a client
   * whose connection closes meanwhile can no longer be named from it (Node asks the socket
   * for its peer on first use), and would be charged to nobody.
   */
  const admit = (req: IncomingMessage): string | undefined => {
    if (!budget) return undefined;
    const client = budget.clientOf(req);
    const wait = budget.anyOver() ? budget.retryAfter(client) : 0;
    if (wait > 0) {
      throw new HttpError(429, 'Too many expensive reads from this client (large pages that are not cached); retry shortly.', undefined,
        { 'Retry-After': String(Math.ceil(wait)) });
    }
    return client;
  };

  const list: Handler = async (req, res) => {
    try {
      const q = parseOr400(listQuery, queryOf(req), 'query parameters');
      const offset = (q.page - 1) * q.count;
      const key = `l:${q.product_id}:${q.sort}:${q.page}:${q.count}:${q.rating?.join('') ?? ''}`;
      // No product has 2^31 reviews: a page that far out is empty (LIMIT 0), the count still holds.
      const beyond = offset > 2147483647;
      const writer = wroteProducts(req).includes(String(q.product_id));
      // From memory unless the response cache holds the page (a hit costs less than assembling
      // it) or the reader wrote this product moments ago (rendered fresh, as below). A page
      // assembled there is a render all the same: it counts against the client's budget as a
      // miss does (a count=1000 page costs its bytes wherever it is assembled).
      if (o.reviewMemory && !writer && !cache.holds(key)) {
        const client = admit(req);
        const asked = { product: q.product_id, sort: q.sort, page: q.page, count: q.count, offset, ratings: ratingMask(q.rating) };
        const memory = o.reviewMemory;
        // A product changed since it was read into memory: read it back now (one statement for
        // its whole list, shared with the readers of this moment).
        const held = memory.answer(asked, false) ?? await afterReadBack(() => memory.readBack(q.product_id), () => memory.answer(asked));
        if (held) {
          if (client !== undefined) budget?.charge(client, held.entry.body.length);
          return send(req, res, held);
        }
      }
      const answer = await budgeted(req, q.product_id, key, async (fresh) => {
        const { value: { results, total }, stamp } = await repo.list(q.product_id, q.sort, beyond ? 0 : q.count, beyond ? 0 : offset, q.rating, fresh);
        return { text: `{"product":"${q.product_id}","page":${q.page - 1},"count":${q.count},"results":${results}}`, headers: { 'X-Total-Count': String(total) }, stamp };
      }, writer);
      send(req, res, answer);
    } catch (err) {
      respondError(err, res);
    }
  };

  const meta: Handler = async (req, res) => {
    try {
      const q = parseOr400(productIdQuery, queryOf(req), 'query parameters');
      const writer = wroteProducts(req).includes(String(q.product_id));
      const key = `m:${q.product_id}`;
      // From memory unless the reader wrote this product moments ago (rendered fresh, as below).
      const memory = writer ? undefined : o.metaMemory;
      // A product changed since it was read into memory, and not in the response cache: read
      // it back now (one statement with the other products of this moment). The read-back is
      // a statement, budgeted as the render it replaces: refused while the client is over,
      // and its answer charged.
      let charged: string | undefined;
      const held = memory && (memory.answer(q.product_id, false) ?? await afterReadBack(() => {
        if (cache.holds(key)) return undefined;
        const client = admit(req);
        const pending = memory.readBack(q.product_id);
        if (pending) charged = client;
        return pending;
      }, () => memory.answer(q.product_id)));
      if (held) {
        if (charged !== undefined) budget?.charge(charged, held.entry.body.length);
        return send(req, res, held);
      }
      const answer = await budgeted(req, q.product_id, key, async (fresh) => {
        const { value, stamp } = await repo.meta(q.product_id, fresh);
        return { text: value, stamp };
      }, writer);
      send(req, res, answer);
    } catch (err) {
      respondError(err, res);
    }
  };

  const run = (handler: Handler, req: IncomingMessage, res: ServerResponse, route: string) => {
    res.setHeader('X-Content-Type-Options', 'nosniff');
    const m = o.metrics;
    const record = o.logger?.record;
    // Metrics and the JSON log share one continuation: the answer has been written when the
    // handler resolves (a 'finish' listener per request cost ~15 % of a cache hit).
    const go = m || record ? () => {
      const started = m ? m.begin() : performance.now();
      void handler(req, res).then(() => {
        m?.end(started, route, req.method!, res.statusCode);
        record?.(req, res, route, started);
      });
    } : () => void handler(req, res);
    // A logger without `record` (morgan) wraps the request itself.
    if (o.logger && !record) o.logger(req, res, go);
    else go();
  };

  return {
    list,
    meta,
    serve: run,
    dispatch(req, res) {
      if (req.method !== 'GET' && req.method !== 'HEAD') return false;
      const url = req.url ?? '';
      const end = url.indexOf('?');
      const path = end < 0 ? url : url.slice(0, end);
      if (path === '/reviews') run(list, req, res, '/reviews');
      else if (path === '/reviews/meta') run(meta, req, res, '/reviews/meta');
      else return false;
      return true;
    },
    noteWrite(req, res, product) {
      cache.invalidate(product);
      // Standbys serve reads again only once they have replayed this write.
      o.replicas?.raiseFence();
      const ids = [...new Set([...wroteProducts(req), String(product)].reverse())].reverse().slice(-MAX_WROTE);
      res.setHeader('Set-Cookie', `${WROTE_COOKIE}=${ids.join('.')}; Max-Age=${o.readYourWritesSeconds}; Path=/reviews; HttpOnly; SameSite=Lax`);
    },
  };
}

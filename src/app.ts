// Builds the request handler (no listening here: src/server.ts does that, tests use
// supertest). The hot reads go to the read path first; everything else is Express.
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import compression from 'compression';
import express from 'express';
import { applyCors, type CorsPolicy } from './http/cors';
import type { Metrics } from './http/metrics';
import { openApiDocument } from './http/openapi';
import type { Db } from './db';
import type { ReadBudget } from './reviews/read-budget';
import type { ReplicaSet } from './db/replicas';
import { assignRequestId, requestLog } from './http/request-log';
import { answerClientErrors, errorHandler, errorResponder, notFound } from './http/errors';
import { HttpError, UnavailableError } from './lib/http-error';
import type { ProxyTrust } from './lib/client-address';
import { ResponseCache } from './response-cache/response-cache';
import { createReadPath } from './reviews/read-path';
import type { MetaMemory } from './reviews/meta-memory';
import type { ReviewMemory } from './reviews/review-memory';
import { ReviewRepository } from './reviews/repository';
import { postDispatch, registerReviewRoutes, voteDispatch } from './reviews/routes';

export interface AppOptions {
  /** LOG_FORMAT: json, text (or another morgan format), or off. */
  logFormat?: string;
  /** Proxies whose X-Forwarded-For names the client, for the log line (TRUSTED_PROXIES). */
  trustedProxies?: ProxyTrust;
  compression?: boolean;
  /** Error log sink (tests silence it). */
  log?: (line: string) => void;
  /** The host's response cache; none (every read from the database) when absent. */
  cache?: ResponseCache;
  /** Lifetime of the read-your-writes cookie given to writers (default 10 s). */
  readYourWritesSeconds?: number;
  /** Cross-origin access (CORS_ORIGINS); none when absent. */
  cors?: CorsPolicy;
  /** Prometheus metrics (GET /metrics); none when absent. */
  metrics?: Metrics;
  /** Hot standbys for reads (DATABASE_REPLICA_URLS); reads on `db` only when absent. */
  replicas?: ReplicaSet;
  /** The write lane (PG_WRITE_POOL_SIZE): POST, helpful and report run here; on `db` when absent. */
  writeDb?: Db;
  /** Per-client budget of bytes rendered on read misses (READ_BUDGET_KB_S); none when absent. */
  readBudget?: ReadBudget;
  /** Every product's meta in memory (META_MEMORY_MB), following `cache`'s change feed; none when absent. */
  metaMemory?: MetaMemory;
  /** Every visible review in memory (REVIEW_MEMORY_MB), following `cache`'s change feed; none when absent. */
  reviewMemory?: ReviewMemory;
}

/** A request listener; `listen` starts an http.Server with it, as Express's app.listen does. */
export type App = ((req: IncomingMessage, res: ServerResponse) => void) & { listen: http.Server['listen'] };

const DOCS_PAGE = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Atelier Ratings &amp; Reviews API</title>
<link rel="stylesheet" href="/docs/assets/swagger-ui.css"></head>
<body><div id="docs"></div><script src="/docs/assets/swagger-ui-bundle.js"></script>
<script>window.ui = SwaggerUIBundle({ url: '/openapi.json', dom_id: '#docs', docExpansion: 'list', tryItOutEnabled: false });</script>
</body></html>`;

export function createApp(db: Db, opts: AppOptions = {}): App {
  const app = express();
  app.disable('x-powered-by');
  // Conditional requests are answered by the read path, from its cached entity tags.
  app.set('etag', false);
  // Repeated parameters arrive as arrays and are rejected by the schemas.
  app.set('query parser', 'simple');
  const respondError = errorResponder(opts.log);
  const metrics = opts.metrics;
  const logger = requestLog(opts.logFormat, opts.trustedProxies ?? new Set());
  const repo = new ReviewRepository(db, opts.writeDb ?? db, opts.replicas);
  const reads = createReadPath(repo, {
    cache: opts.cache ?? new ResponseCache({ maxBytes: 0, ttlMs: 0 }),
    respondError,
    readYourWritesSeconds: opts.readYourWritesSeconds ?? 10,
    logger,
    metrics: opts.metrics,
    budget: opts.readBudget,
    replicas: opts.replicas,
    metaMemory: opts.metaMemory,
    reviewMemory: opts.reviewMemory,
  });

  app.use((_req, res, next) => {
    res.setHeader('X-Content-Type-Options', 'nosniff');
    next();
  });
  if (logger) app.use(logger);
  if (opts.compression) app.use(compression());

  app.get('/healthz', (_req, res) => {
    res.json({ status: 'ok' });
  });
  // Ready when the primary answers; with standbys, also while only they do (read-only:
  // reads are served, writes get a 503), so a balancer keeps sending the reads.
  app.get('/readyz', async (_req, res) => {
    try {
      await db.ping();
    } catch (err) {
      if (!(err instanceof UnavailableError) || !opts.replicas?.readable) throw err;
      res.json({ status: 'ready', writes: 'unavailable' });
      return;
    }
    res.json({ status: 'ready' });
  });

  registerReviewRoutes(app, repo, reads);

  // The API's description, and a page that renders it (Swagger UI, served from its npm
  // package: no CDN, the docs work offline).
  const openApiText = JSON.stringify(openApiDocument);
  app.get('/openapi.json', (_req, res) => {
    res.type('application/json').send(openApiText);
  });
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  app.use('/docs/assets', express.static((require('swagger-ui-dist') as { getAbsoluteFSPath(): string }).getAbsoluteFSPath(), { index: false, maxAge: '1h' }));
  app.get('/docs', (_req, res) => {
    res.type('html').send(DOCS_PAGE);
  });
  if (metrics) {
    app.get('/metrics', async (_req, res) => {
      res.setHeader('Content-Type', metrics.registry.contentType);
      res.end(await metrics.registry.metrics());
    });
  }

  app.use(notFound);
  app.use(errorHandler(respondError));
  const votes = voteDispatch(repo, reads, respondError);
  const posts = postDispatch(repo, reads, respondError);
  // CORS first (a preflight is answered there); with compression on, everything goes
  // through Express (and its compression middleware).
  const cors = opts.cors;
  const handler = (req: IncomingMessage, res: ServerResponse) => {
    assignRequestId(req, res);
    // HTTP/1.1 requires Host (RFC 9112 §3.2); answered here, as JSON, rather than by Node.
    if (req.headers.host === undefined && req.httpVersion === '1.1') return respondError(new HttpError(400, 'Bad request: the Host header is required.'), res);
    if (cors && applyCors(cors, req, res)) return metrics?.track(req, res);
    // The read path (and the writes served before Express) observe their own requests; everything else is tracked here.
    if (!opts.compression && (reads.dispatch(req, res) || votes(req, res) || posts(req, res))) return;
    metrics?.track(req, res);
    app(req, res);
  };
  const listen = (...args: unknown[]) => createHttpServer(handler).listen(...(args as []));
  return Object.assign(handler, { listen: listen as http.Server['listen'] });
}

/**
 * An http.Server for the app (or a listener around it): requests Node's parser refuses, and
 * a request without Host (Node's own answer is an empty 400), are answered as JSON too.
 */
export function createHttpServer(listener: (req: IncomingMessage, res: ServerResponse) => void): http.Server {
  const server = http.createServer({ requireHostHeader: false }, listener);
  answerClientErrors(server);
  return server;
}

// Builds the Express app (no listening here: src/server.ts does that, tests use supertest).
import compression from 'compression';
import express from 'express';
import morgan from 'morgan';
import type { Db } from './db';
import { errorHandler, notFound } from './errors';
import { ReviewRepository } from './reviews/repository';
import { registerReviewRoutes } from './reviews/routes';

export interface AppOptions {
  /** morgan format, or 'off'. */
  logFormat?: string;
  compression?: boolean;
  /** Error log sink (tests silence it). */
  log?: (line: string) => void;
}

export function createApp(db: Db, opts: AppOptions = {}): express.Express {
  const app = express();
  app.disable('x-powered-by');
  // Responses are rendered per request from live data; caching is nginx's job.
  app.set('etag', false);
  // Repeated parameters arrive as arrays and are rejected by the schemas.
  app.set('query parser', 'simple');

  app.use((_req, res, next) => {
    res.setHeader('X-Content-Type-Options', 'nosniff');
    next();
  });
  if (opts.logFormat && opts.logFormat !== 'off') app.use(morgan(opts.logFormat));
  if (opts.compression) app.use(compression());

  app.get('/healthz', (_req, res) => {
    res.json({ status: 'ok' });
  });
  app.get('/readyz', async (_req, res) => {
    await db.ping();
    res.json({ status: 'ready' });
  });

  registerReviewRoutes(app, new ReviewRepository(db));

  app.use(notFound);
  app.use(errorHandler(opts.log));
  return app;
}


// Request ids and the hosts' request log.
//
// Every request carries an id: a well-formed incoming X-Request-Id (nginx's, 8 to 64 of
// A-Z a-z 0-9 . _ -) or one made here. It is returned in X-Request-Id, put in every JSON
// error body (`request_id`) and in the log line.
//
// LOG_FORMAT=json writes one JSON object per request (time, request id, method, route
// template, status, duration, response-cache outcome, bytes, client address — the last
// X-Forwarded-For entry when the peer is a trusted proxy); lines are buffered and written
// every 20 ms in one call, so logging costs one write for many lines and never waits for
// stdout (a line lost at a crash is at most 20 ms old). text (morgan's
// `dev`) and morgan's other formats stay available; off writes nothing.
import { randomUUID } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import morgan from 'morgan';
import { clientAddress, type ProxyTrust } from '../lib/client-address';

const WELL_FORMED = /^[A-Za-z0-9._-]{8,64}$/;

/** The request's id (taken from a well-formed X-Request-Id, or made), set on the response. */
export function assignRequestId(req: IncomingMessage, res: ServerResponse): string {
  const given = req.headers['x-request-id'];
  const id = typeof given === 'string' && WELL_FORMED.test(given) ? given : randomUUID();
  res.setHeader('X-Request-Id', id);
  return id;
}

/** The id assigned to this response (for error bodies). */
export const requestIdOf = (res: ServerResponse): string | undefined => res.getHeader('X-Request-Id') as string | undefined;

export type RequestLogger = ((req: IncomingMessage, res: ServerResponse, next: () => void) => void) & {
  /** Logs a request already answered (the read path calls it itself, with no listener). */
  record?: (req: IncomingMessage, res: ServerResponse, route: string, startedAt: number) => void;
};

/** One JSON line per request, buffered per tick. */
export function jsonRequestLog(o: { trustedProxies: ProxyTrust; write?: (chunk: string) => void }): RequestLogger {
  const write = o.write ?? ((chunk: string) => void process.stdout.write(chunk));
  let buffer = '';
  const flush = () => {
    const lines = buffer;
    if (!lines) return;
    buffer = '';
    write(lines);
  };
  // The last lines of a stopping host (stdout writes to pipes and files are synchronous here).
  process.once('exit', flush);
  let lastMs = 0;
  let lastTime = '';
  const record = (req: IncomingMessage, res: ServerResponse, route: string, startedAt: number) => {
    const now = Date.now();
    if (now !== lastMs) {
      lastMs = now;
      lastTime = new Date(now).toISOString();
    }
    const cache = res.getHeader('X-Response-Cache');
    // Built by hand: every field but the client address is of a closed alphabet (the id is
    // checked, the method a token, the route a template); the address is JSON-escaped.
    const line = `{"time":"${lastTime}","request_id":"${res.getHeader('X-Request-Id') ?? ''}","method":"${req.method}","route":"${route}",` +
      `"status":${res.statusCode},"duration_ms":${Math.round((performance.now() - startedAt) * 1000) / 1000},` +
      `"cache":${cache === undefined ? 'null' : `"${cache}"`},"bytes":${Number(res.getHeader('Content-Length') ?? 0)},"client":${JSON.stringify(clientAddress(req, o.trustedProxies))}}\n`;
    // Written every 20 ms (or at 64 KiB): one write call for many lines.
    if (buffer === '') setTimeout(flush, 20).unref();
    buffer += line;
    if (buffer.length > 65_536) flush();
  };
  const logger: RequestLogger = (req, res, next) => {
    const started = performance.now();
    res.once('finish', () => {
      const route = (req as IncomingMessage & { route?: { path?: string } }).route?.path ?? 'unmatched';
      record(req, res, route, started);
    });
    next();
  };
  logger.record = record;
  return logger;
}

/** The logger for LOG_FORMAT, or none for off. */
export function requestLog(format: string | undefined, trustedProxies: ProxyTrust): RequestLogger | undefined {
  if (!format || format === 'off') return undefined;
  if (format === 'json') return jsonRequestLog({ trustedProxies });
  return morgan(format === 'text' ? 'dev' : format) as unknown as RequestLogger;
}

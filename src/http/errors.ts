// The one place that turns any error into the contract's JSON shape without leaking
// stacks, SQL or database messages: the Express error middleware, the responder the read
// path uses, and the answers to requests Node's parser refuses.
import type { ServerResponse } from 'node:http';
import type { ErrorRequestHandler, RequestHandler } from 'express';
import { HttpError, UnavailableError } from '../lib/http-error';
import { requestIdOf } from './request-log';

export const notFound: RequestHandler = (req, _res, next) => {
  next(new HttpError(404, `No route for ${req.method} ${req.path}.`));
};

/** body-parser errors carry a `type`; map the ones a client can cause to their 4xx. */
function fromBodyParser(err: { type?: string; status?: number; limit?: number }): HttpError | undefined {
  switch (err.type) {
    case 'entity.too.large':
      return new HttpError(413, `Request body is larger than the ${err.limit} byte limit.`);
    case 'entity.parse.failed':
      return new HttpError(400, 'Request body is not valid JSON.');
    case 'encoding.unsupported':
    case 'charset.unsupported':
      return new HttpError(415, 'Request body must be UTF-8 JSON.');
    case 'request.aborted':
      return new HttpError(400, 'Request body was aborted by the client.');
    default:
      if (typeof err.status === 'number' && err.status >= 400 && err.status < 500) {
        return new HttpError(err.status, 'The request could not be read.');
      }
      return undefined;
  }
}

/**
 * Logs at most one line per `everyMs` for a repeating condition, with how many were folded:
 * an outage or overload answers thousands of 503s a second, and one log line each would
 * cost more than the answers (and flood the logs).
 */
function throttled(log: (line: string) => void, everyMs = 5000): (line: string) => void {
  let last = -Infinity;
  let folded = 0;
  return (line) => {
    const now = performance.now();
    if (now - last < everyMs) {
      folded++;
      return;
    }
    log(folded > 0 ? `${line} (and ${folded} more like it since the last report)` : line);
    last = now;
    folded = 0;
  };
}

/** Answers any error as the contract's JSON on a plain response (Express or not). */
export type ErrorResponder = (err: unknown, res: ServerResponse) => void;

export function errorResponder(log: (line: string) => void = (l) => console.error(l)): ErrorResponder {
  const logUnavailable = throttled(log);
  return (err, res) => {
    const known = err instanceof HttpError ? err : fromBodyParser((err ?? {}) as { type?: string });
    if (!known) {
      log(`unexpected error: ${err instanceof Error ? err.stack : String(err)}`);
    } else if (known instanceof UnavailableError) {
      logUnavailable(`503: ${known.message} ${known.cause instanceof Error ? `(${known.cause.message})` : ''}`.trim());
    }
    const e = known ?? new HttpError(500, 'Internal server error.');
    if (res.headersSent) {
      res.destroy();
      return;
    }
    const requestId = requestIdOf(res);
    const body = JSON.stringify({ error: e.message, ...(e.details ? { details: e.details } : {}), ...(requestId ? { request_id: requestId } : {}) });
    res.writeHead(e.status, { ...e.headers, 'Content-Type': 'application/json; charset=utf-8', 'Content-Length': Buffer.byteLength(body) });
    res.end(body);
  };
}

export function errorHandler(respond: ErrorResponder): ErrorRequestHandler {
  return (err, _req, res, _next) => respond(err, res);
}

/**
 * Requests Node's HTTP parser refuses before any handler runs (an unknown method like BREW,
 * a malformed request line or header, headers over the limit, a client too slow) are
 * answered in the same JSON shape, instead of Node's empty 400.
 */
export function answerClientErrors(server: import('node:http').Server): void {
  server.on('clientError', (err: NodeJS.ErrnoException, socket: import('node:stream').Duplex) => {
    if (err.code === 'ECONNRESET' || !socket.writable) {
      socket.destroy();
      return;
    }
    const [status, reason, message] = err.code === 'HPE_HEADER_OVERFLOW'
      ? [431, 'Request Header Fields Too Large', 'Request headers are too large.']
      : err.code === 'ERR_HTTP_REQUEST_TIMEOUT'
        ? [408, 'Request Timeout', 'The request was not received in time.']
        : err.code === 'HPE_INVALID_METHOD'
          ? [400, 'Bad Request', 'Unknown HTTP method; use GET, HEAD, POST, PUT or OPTIONS.']
          : [400, 'Bad Request', 'Bad request: the request line or a header is malformed.'];
    const body = JSON.stringify({ error: message });
    socket.end(`HTTP/1.1 ${status} ${reason}\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`);
  });
}

// Cross-origin access for the browser storefront: an allow-list of origins (CORS_ORIGINS),
// preflights answered for the API's methods and the headers the storefront sends, and
// Vary: Origin wherever the answer depends on it. Runs first on every request, before the
// read path and Express, so both answer with the same headers.
import type { IncomingMessage, ServerResponse } from 'node:http';

export const CORS_METHODS = ['GET', 'HEAD', 'POST', 'PUT'];
/** Request headers a page may send (besides the CORS-safelisted ones). */
export const CORS_REQUEST_HEADERS = ['content-type', 'idempotency-key', 'if-none-match'];
/** Response headers a page may read (besides the CORS-safelisted ones). */
export const CORS_EXPOSED_HEADERS = ['ETag', 'Retry-After', 'Idempotent-Replayed', 'X-Total-Count'];
/** How long a browser may reuse a preflight answer (seconds); Chromium caps it at 7200. */
export const CORS_MAX_AGE = 7200;

export interface CorsPolicy {
  /** Origins allowed to read and write, exactly as browsers send them (scheme://host[:port]). */
  origins: Set<string>;
  /** `*` in the list: any origin may read (GET/HEAD), without credentials; never write. */
  anyOriginReads: boolean;
}

/** Parses CORS_ORIGINS ("" = no cross-origin access); throws on an entry that is not an origin. */
export function parseCorsOrigins(value: string | undefined): CorsPolicy {
  const origins = new Set<string>();
  let anyOriginReads = false;
  for (const raw of (value ?? '').split(',').map((s) => s.trim()).filter(Boolean)) {
    if (raw === '*') {
      anyOriginReads = true;
      continue;
    }
    let u: URL;
    try {
      u = new URL(raw);
    } catch {
      throw new Error(`"${raw}" is not an origin like https://shop.example.com`);
    }
    if ((u.protocol !== 'http:' && u.protocol !== 'https:') || u.origin !== raw.replace(/\/$/, '')) {
      throw new Error(`"${raw}" is not an origin like https://shop.example.com (scheme, host and port only)`);
    }
    origins.add(u.origin);
  }
  return { origins, anyOriginReads };
}

const isRead = (method: string | undefined) => method === 'GET' || method === 'HEAD';

function appendVary(res: ServerResponse, value: string): void {
  const current = res.getHeader('Vary');
  res.setHeader('Vary', current ? `${current}, ${value}` : value);
}

/**
 * Applies the policy to a request. Answers a preflight itself (204 for an allowed origin,
 * method and headers; a JSON 403 otherwise) and returns true; otherwise sets the response's
 * CORS headers and returns false.
 */
export function applyCors(policy: CorsPolicy, req: IncomingMessage, res: ServerResponse): boolean {
  const enabled = policy.origins.size > 0 || policy.anyOriginReads;
  if (!enabled) return false;
  const origin = req.headers.origin;
  const listed = origin !== undefined && policy.origins.has(origin);
  const preflight = req.method === 'OPTIONS' && origin !== undefined && req.headers['access-control-request-method'] !== undefined;
  if (preflight) {
    const method = String(req.headers['access-control-request-method']).toUpperCase();
    const badHeader = String(req.headers['access-control-request-headers'] ?? '').split(',').map((h) => h.trim().toLowerCase())
      .find((h) => h !== '' && !CORS_REQUEST_HEADERS.includes(h));
    const problem = !listed && !(policy.anyOriginReads && isRead(method))
      ? `Origin ${origin} is not allowed to ${isRead(method) ? 'call' : 'write to'} this API.`
      : !CORS_METHODS.includes(method)
        ? `Method ${method} is not allowed; use ${CORS_METHODS.join(', ')}.`
        : badHeader
          ? `Request header ${badHeader} is not allowed; allowed: ${CORS_REQUEST_HEADERS.join(', ')}.`
          : undefined;
    const vary = 'Origin, Access-Control-Request-Method, Access-Control-Request-Headers';
    if (problem) {
      const body = JSON.stringify({ error: problem });
      res.writeHead(403, { 'Content-Type': 'application/json; charset=utf-8', 'Content-Length': Buffer.byteLength(body), Vary: vary });
      res.end(body);
      return true;
    }
    res.writeHead(204, {
      'Access-Control-Allow-Origin': listed ? origin! : '*',
      ...(listed ? { 'Access-Control-Allow-Credentials': 'true' } : {}),
      'Access-Control-Allow-Methods': CORS_METHODS.join(', '),
      'Access-Control-Allow-Headers': CORS_REQUEST_HEADERS.join(', '),
      'Access-Control-Max-Age': String(CORS_MAX_AGE),
      Vary: vary,
    });
    res.end();
    return true;
  }
  if (listed) {
    res.setHeader('Access-Control-Allow-Origin', origin!);
    res.setHeader('Access-Control-Allow-Credentials', 'true');
    res.setHeader('Access-Control-Expose-Headers', CORS_EXPOSED_HEADERS.join(', '));
  } else if (policy.anyOriginReads && isRead(req.method)) {
    res.setHeader('Access-Control-Allow-Origin', '*');
    res.setHeader('Access-Control-Expose-Headers', CORS_EXPOSED_HEADERS.join(', '));
  }
  // The answer's CORS headers depend on Origin whenever a list is configured.
  if (policy.origins.size > 0) appendVary(res, 'Origin');
  return false;
}

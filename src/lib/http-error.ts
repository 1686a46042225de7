// The error types every layer throws (the reviews domain, the database gateway, the HTTP
// edge): a status, a message for the client, optional field problems and headers. The
// HTTP edge (src/http/errors.ts) turns them into the contract's JSON.

export interface FieldProblem {
  field: string;
  message: string;
}

export class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly details?: FieldProblem[],
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
  }
}

/** The database is down, too slow or saturated: the client should retry shortly. */
export class UnavailableError extends HttpError {
  constructor(message = 'The review database is unavailable; retry shortly.', readonly cause?: unknown, retryAfterSeconds = 1) {
    super(503, message, undefined, { 'Retry-After': String(retryAfterSeconds) });
  }
}

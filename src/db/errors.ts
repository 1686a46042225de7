// Which database errors mean "no database right now" (a JSON 503 for the client) rather than
// "this request is wrong", and which leave a connection that must not go back to the pool.
import { UnavailableError } from '../lib/http-error';

// Errors that mean "no database right now" rather than "this request is wrong".
// 25006: a write on a read-only server (a primary demoted to a standby, before the hosts follow the new one).
const UNAVAILABLE_CODES = new Set(['25006', '57P01', '57P02', '57P03', '53300', '53400', '08000', '08001', '08003', '08004', '08006', '08P01']);
const NETWORK_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EPIPE', 'ENOTFOUND', 'EAI_AGAIN', 'EHOSTUNREACH']);

export function toUnavailable(err: unknown): UnavailableError | undefined {
  if (err instanceof UnavailableError) return err;
  const e = err as { code?: string; message?: string };
  if (e?.code === '57014') return new UnavailableError('The review database took too long to answer; retry shortly.', err);
  // A hot standby cancelling a read on a recovery conflict (it must replay a lock or a
  // cleanup the read stands in the way of), or a serialization failure: the read may be
  // retried, here on another server (found by npm run chaos: it was a 500).
  if (e?.code === '40001') return new UnavailableError('The review database cancelled the read; retry shortly.', err);
  // The write fence (db/migrations/0005): an import is replacing the data set.
  if (e?.code === 'AT503') return new UnavailableError(e.message, err, 30);
  // node-postgres's client-side query_timeout: the server stopped answering on this
  // connection (a partition, a failover that drops packets). Its query is still active on
  // the client, so the client is broken too (isBroken) and must not go back to the pool.
  if (e?.message === 'Query read timeout') return new UnavailableError('The review database did not answer in time; retry shortly.', err);
  if ((e?.code && (UNAVAILABLE_CODES.has(e.code) || NETWORK_CODES.has(e.code))) ||
      /timeout exceeded when trying to connect|Connection terminated|Client has encountered a connection error|Client was closed|Cannot use a pool after calling end/i.test(e?.message ?? '')) {
    return new UnavailableError(undefined, err);
  }
  return undefined;
}

/**
 * Whether an error means the server itself is gone: a connection refused, reset, timed out
 * or silent, a server shutting down or read-only. Not this host's own admission refusing
 * (overload: no database error behind it), a statement over its timeout, a read cancelled
 * by a standby's recovery conflict, or the import's write fence. A client whose connection failed so must be destroyed, not returned to the
 * pool; a primary that failed so is believed down, and reads go to the standbys.
 */
export function serverGone(err: unknown): boolean {
  const u = toUnavailable(err);
  if (u?.cause === undefined) return false;
  const code = (u.cause as { code?: string }).code;
  return code !== '57014' && code !== 'AT503' && code !== '40001';
}

/** A client whose connection failed must be destroyed, not returned to the pool. */
export const isBroken = serverGone;

// Makes a pool's statements of one name slower, to see how a caller paces them: the pool's
// query wrapped (the real statement still runs), each such statement then held `extraMs`
// longer, and what they took added up.
import type { Db } from '../../src/db';

export interface SlowStatements {
  /** Statements of that name since the last reset, their time in all (ms), and when the first of them began (performance.now()). */
  count: number;
  took: number;
  first: number;
  reset(): void;
}

export function slowStatements(db: Db, name: string, extraMs = 40): SlowStatements {
  const query = db.query.bind(db);
  const seen: SlowStatements = { count: 0, took: 0, first: 0, reset: () => Object.assign(seen, { count: 0, took: 0, first: 0 }) };
  db.query = (async (...args: Parameters<typeof query>) => {
    const began = performance.now();
    if (args[2] === name && !seen.first) seen.first = began;
    const result = await query(...args);
    if (args[2] === name) {
      await new Promise((r) => setTimeout(r, extraMs));
      seen.count++;
      seen.took += performance.now() - began;
    }
    return result;
  }) as typeof db.query;
  return seen;
}

/**
 * Holds `connections` of a pool's connections (each waiting on an advisory lock that `gate`,
 * another pool on the same database, holds), with `waiting` more requests in its admission
 * queue behind them, until the returned release() (which resolves once all have ended).
 */
export async function holdPool(db: Db, gate: Db, connections: number, waiting: number): Promise<() => Promise<void>> {
  const locker = await gate.pool.connect();
  await locker.query('SELECT pg_advisory_lock(7401)');
  const held = [
    ...Array.from({ length: connections }, () => db.query('SELECT pg_advisory_xact_lock_shared(7401)')),
    ...Array.from({ length: waiting }, () => db.query('SELECT 1')),
  ].map((q) => q.then(() => undefined, (err: Error) => err));
  return async () => {
    await locker.query('SELECT pg_advisory_unlock(7401)').finally(() => locker.release());
    const failed = (await Promise.all(held)).find(Boolean);
    if (failed) throw new Error(`a statement holding the pool failed (a statement timeout?): ${failed.message}`);
  };
}

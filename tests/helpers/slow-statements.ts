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
 * Keeps a pool of `connections` busy for `ms` (each in pg_sleep), with one more request
 * waiting in its admission queue behind them; resolves when all have ended.
 */
export async function busyPool(db: Db, connections: number, ms: number): Promise<void> {
  const held = Array.from({ length: connections }, () => db.query('SELECT pg_sleep($1)', [ms / 1000]));
  await Promise.all([...held, db.query('SELECT 1')]);
}

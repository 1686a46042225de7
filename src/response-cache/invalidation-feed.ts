// Keeps a host's response cache exact across hosts: every committed change to a product
// arrives as a PostgreSQL notification (the triggers of db/migrations/0003) and drops that
// product's entries here. While the listening connection is down the cache is untrusted
// (nothing stored, every read goes to the database), and it starts empty again once
// LISTEN is back, because notifications sent in between are lost.
import type { ChannelListener, Db } from '../db';
import type { ResponseCache } from './response-cache';

/** The channel the triggers notify; payload: a product id, or '*' for everything. */
export const CHANGES_CHANNEL = 'atelier_review_changes';

export function followChanges(db: Db, cache: ResponseCache, log: (line: string) => void = () => undefined, opts: { heartbeatMs?: number; onChange?: () => void } = {}): ChannelListener {
  let everListened = false;
  return db.listen(CHANGES_CHANNEL, {
    message(payload) {
      // Standbys: a change heard raises the fence they must replay past (src/db/replicas.ts).
      opts.onChange?.();
      if (payload === '*') return cache.invalidateAll();
      const product = Number(payload);
      if (Number.isInteger(product)) cache.invalidate(product);
    },
    state(listening) {
      cache.setTrusted(listening);
      opts.onChange?.();
      if (listening && everListened) log('response cache: change feed back; cache emptied and trusted again');
      if (!listening) log('response cache: change feed lost; serving from the database until it is back');
      everListened ||= listening;
    },
  }, opts);
}

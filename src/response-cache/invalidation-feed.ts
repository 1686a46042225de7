// Keeps a host's response cache exact across hosts: every committed change to a product
// arrives as a PostgreSQL notification (the triggers of db/migrations/0003) and drops that
// product's entries here. While the listening connection is down the cache is untrusted
// (nothing stored, every read goes to the database), and it starts empty again once
// LISTEN is back, because notifications sent in between are lost.
import type { ChannelListener, Db } from '../db';
import type { ResponseCache } from './response-cache';

/** The channel the triggers notify; payload: a product id, or '*' for everything. */
export const CHANGES_CHANNEL = 'atelier_review_changes';

/** What the standbys' fence needs to hear (src/db/replicas.ts: ReplicaSet). */
export interface ChangeFence {
  raiseFence(): void;
  feedListening(listening: boolean): void;
}

export function followChanges(db: Db, cache: ResponseCache, log: (line: string) => void = () => undefined, opts: { heartbeatMs?: number; fence?: ChangeFence } = {}): ChannelListener {
  let everListened = false;
  // Not listening yet: changes may go unheard, so nothing read on a standby is proven.
  opts.fence?.feedListening(false);
  return db.listen(CHANGES_CHANNEL, {
    message(payload) {
      // Standbys: a change heard raises the fence they must replay past (src/db/replicas.ts).
      opts.fence?.raiseFence();
      if (payload === '*') return cache.invalidateAll();
      const product = Number(payload);
      if (Number.isInteger(product)) cache.invalidate(product);
    },
    state(listening) {
      cache.setTrusted(listening);
      opts.fence?.feedListening(listening);
      if (listening && everListened) log('response cache: change feed back; cache emptied and trusted again');
      if (!listening) log('response cache: change feed lost; serving from the database until it is back');
      everListened ||= listening;
    },
  }, opts);
}

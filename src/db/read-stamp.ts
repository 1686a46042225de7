// The freshness rule's read side. Every read the hosts answer carries a stamp saying
// whether it is *proven* to reflect every change this host has heard
// (notifications, its own writes, a change-feed restart, a promotion). Only a proven read
// may be kept (the host cache stores it, nginx may cache it); anything else is served once
// and forgotten. The stamp is made in one place, ReplicaSet.stamp (src/db/replicas.ts):
// without standbys every read is on the primary and proven.
//
// The other half of the rule lives in the cache (src/response-cache/response-cache.ts): a
// proven read is still not stored when a change to its product was heard while it was in
// flight, or the change feed was not listening.

export interface ReadStamp {
  /** Proven to reflect every change this host had heard when the read was sent. */
  readonly exact: boolean;
}

/** A read on the primary: a notification (or a write's answer) comes after its commit, so a later snapshot holds it. */
export const PRIMARY_READ: ReadStamp = Object.freeze({ exact: true });

/** A value and the stamp of the read that produced it. */
export interface Stamped<T> {
  value: T;
  stamp: ReadStamp;
}

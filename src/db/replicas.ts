// Reads on hot standbys (DATABASE_REPLICA_URLS), exact under replication lag.
//
// A standby is usable while it answers, is in recovery, and lags the primary by at most
// REPLICA_MAX_LAG (bytes of WAL and seconds, both; probed every `probeMs`). On top of that,
// a read may go to a standby only when the standby has replayed past the **fence**: the
// primary's WAL flush position read *after* this host heard a change (a NOTIFY) or made a
// write itself (a committed write is flushed: synchronous_commit is on). Not the insert
// position: after a record that ends on a page boundary it points past the next page's
// header, which no standby ever reports as replayed (found by the replica test). Until that read returns, reads go to the primary. So a read from a standby
// — and the host-cache entry it fills — reflects every change this host has heard of, as a
// read from the primary would; changes not heard of yet will invalidate it when they are
// (as without standbys). With no standby usable, or the primary down and no fence pending,
// reads go where they can. One fence for all products (simple and exact; a fence per
// product would send fewer reads to the primary under constant writes: not built).
import type { Db } from './pool';

export interface ReplicaOptions {
  maxLagBytes: number;
  maxLagSeconds: number;
  probeMs?: number;
  log?: (line: string) => void;
}

export interface ReplicaState {
  name: string;
  up: boolean;
  usable: boolean;
  replayLsn: bigint;
  lagBytes: number;
  lagSeconds: number;
  /** When the probes first found it behind (ms, performance.now()); 0 while caught up. */
  behindSince: number;
}

const lsn = (text: string | null | undefined): bigint => {
  if (!text) return 0n;
  const [hi, lo] = text.split('/');
  return (BigInt(`0x${hi}`) << 32n) + BigInt(`0x${lo}`);
};

export class ReplicaSet {
  readonly states: ReplicaState[];
  private fence = 0n;
  private pending = 0;
  private primaryLsn = 0n;
  private primaryUp = true;
  private next = 0;
  private timer?: NodeJS.Timeout;
  /** Reads sent to each target (metrics). */
  readonly reads = { primary: 0, replica: 0, fallback: 0 };

  constructor(private readonly primary: Db, readonly replicas: { name: string; db: Db }[], private readonly o: ReplicaOptions) {
    this.states = replicas.map((r) => ({ name: r.name, up: false, usable: false, replayLsn: 0n, lagBytes: Infinity, lagSeconds: Infinity, behindSince: 0 }));
  }

  /** Starts probing; resolves after the first probe. */
  async start(): Promise<void> {
    await this.probe();
    const loop = () => {
      this.timer = setTimeout(() => void this.probe().finally(loop), this.o.probeMs ?? 250);
      this.timer.unref();
    };
    loop();
  }

  stop(): void {
    clearTimeout(this.timer);
  }

  async probe(): Promise<void> {
    try {
      this.primaryLsn = lsn((await this.primary.query<{ l: string }>('SELECT pg_current_wal_flush_lsn()::text AS l')).rows[0].l);
      this.primaryUp = true;
    } catch {
      this.primaryUp = false;
    }
    await Promise.all(this.replicas.map(async (r, i) => {
      const s = this.states[i];
      try {
        const { rows } = await r.db.query<{ recovery: boolean; replay: string | null; age: number | null }>(
          'SELECT pg_is_in_recovery() AS recovery, pg_last_wal_replay_lsn()::text AS replay, extract(epoch FROM now() - pg_last_xact_replay_timestamp())::float8 AS age');
        const row = rows[0];
        s.up = true;
        s.replayLsn = lsn(row.replay);
        const behind = this.primaryUp ? this.primaryLsn - s.replayLsn : 0n;
        s.lagBytes = behind > 0n ? Number(behind) : 0;
        // The replay timestamp ages on an idle primary: a standby that has replayed
        // everything is not behind, however old the last transaction is. One that has
        // replayed no transaction yet has no timestamp: then how long the probes have seen
        // it behind.
        const now = performance.now();
        if (s.lagBytes === 0) s.behindSince = 0;
        else if (!s.behindSince) s.behindSince = now;
        s.lagSeconds = s.lagBytes === 0 ? 0 : (row.age ?? (now - s.behindSince) / 1000);
        const usable = row.recovery && s.lagBytes <= this.o.maxLagBytes && s.lagSeconds <= this.o.maxLagSeconds;
        if (usable !== s.usable) this.o.log?.(`replica ${r.name}: ${usable ? 'usable' : `skipped (lag ${s.lagBytes} bytes, ${s.lagSeconds.toFixed(1)} s${row.recovery ? '' : ', not in recovery'})`}`);
        s.usable = usable;
      } catch {
        if (s.up) this.o.log?.(`replica ${r.name}: down`);
        s.up = false;
        s.usable = false;
      }
    }));
  }

  /**
   * This host heard a change, or made a write: reads go to the primary until the fence is
   * raised to the primary's WAL flush position as of now.
   */
  raiseFence(): void {
    this.pending++;
    this.primary.query<{ l: string }>('SELECT pg_current_wal_flush_lsn()::text AS l')
      .then(({ rows }) => {
        const at = lsn(rows[0].l);
        if (at > this.fence) this.fence = at;
      })
      .catch(() => undefined)
      .finally(() => this.pending--);
  }

  /**
   * Where a read goes now: a standby that is usable and past the fence, else the primary.
   * With the primary down, the standby that has replayed furthest, whatever the fence: an
   * answer as of its replay position (at most its lag old) rather than none. The host caches
   * store nothing meanwhile (their change feed, on the primary, is down).
   */
  choose(): { db: Db; replica?: number } {
    if (!this.primaryUp) {
      let best = -1;
      this.states.forEach((s, i) => {
        if (s.up && (best < 0 || s.replayLsn > this.states[best].replayLsn)) best = i;
      });
      if (best >= 0) {
        this.reads.replica++;
        return { db: this.replicas[best].db, replica: best };
      }
    }
    if (this.pending === 0) {
      for (let k = 0; k < this.replicas.length; k++) {
        const i = (this.next + k) % this.replicas.length;
        const s = this.states[i];
        if (s.usable && s.replayLsn >= this.fence) {
          this.next = i + 1;
          this.reads.replica++;
          return { db: this.replicas[i].db, replica: i };
        }
      }
    }
    this.reads.primary++;
    return { db: this.primary };
  }

  /** The primary failed a read: until a probe finds it again, reads go to the standbys. */
  primaryFailed(): void {
    this.primaryUp = false;
    this.reads.fallback++;
  }

  /** A standby failed a read: skip it until a probe finds it well again. */
  failed(replica: number): void {
    this.states[replica].usable = false;
    this.reads.fallback++;
  }
}

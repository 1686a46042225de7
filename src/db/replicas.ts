// Reads on hot standbys (DATABASE_REPLICA_URLS), exact under replication lag.
//
// A standby is usable while it answers, is in recovery, and lags the primary by at most
// REPLICA_MAX_LAG (bytes of WAL and seconds, both; probed every `probeMs`). On top of that,
// a read may go to a standby only when the standby has replayed past the **fence**: the
// primary's WAL flush position read *after* this host heard a change (a NOTIFY) or made a
// write itself (a committed write is flushed: synchronous_commit is on). Not the insert
// position: after a record that ends on a page boundary it points past the next page's
// header, which no standby ever reports as replayed (found by the replica test).
//
// The freshness rule (src/db/read-stamp.ts), its read side, is `stamp()` here. Every change
// heard gets a number (`heard`); the fence is *known* when a read of the primary's flush
// position that began after the latest change heard has returned (`covered === heard`).
// A read is proven exact on the primary, or on a standby when the fence is known, the
// standby streams the primary's timeline and has replayed past the fence, and the change
// feed is listening. Everything else fails
// closed: a fence read that was refused or failed (the next successful one, or the next
// probe of the primary, proves it again), a primary believed down, a change feed that is
// not listening, a promotion. Such reads are still served (from the primary while it
// answers, else the standby that has replayed furthest) but their stamp says not proven,
// and nothing stores them. One fence for all products (simple and exact; a fence per
// product would send fewer reads to the primary under constant writes: not built).
//
// Failover. The probes ask every configured node whether it is in recovery. When a node
// that is not (a promoted standby) is on a newer timeline than the primary last seen, the
// primary's pool moves to it (Db.retarget): writes resume there, the change feed's LISTEN
// moves with it, which empties the host caches (an asynchronous standby may lack commits
// the caches had seen), and the fence starts again on the new timeline. A node on an older
// timeline that still accepts writes (an old primary back without being demoted) is never
// chosen: promotion always starts a new timeline, so the newest one is the primary.
// Finding the primary is the HA manager's decision (Patroni, docs/cluster.md); the hosts
// only follow it.
import { withClient } from './connection';
import type { Db } from './pool';
import { PRIMARY_READ, type ReadStamp } from './read-stamp';

export interface ReplicaOptions {
  maxLagBytes: number;
  maxLagSeconds: number;
  probeMs?: number;
  /**
   * Longest wait for one node's probe answer (default 1000 ms): a node that stops answering
   * (a partition) counts as down then, and does not hold the probes of the others (nor the
   * following of a promotion) for its pool's read timeout.
   */
  probeTimeoutMs?: number;
  log?: (line: string) => void;
  /**
   * The node DATABASE_URL names, probed beside the standbys: after a failover it may come
   * back as a standby of the new primary, and then it serves reads like the others.
   */
  primaryNode?: { name: string; db: Db };
  /** The primary moved to another node (after the pool was retargeted). */
  onPrimaryChange?: (node: string) => void;
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
  /** Up and not in recovery: a primary (the current one, a promoted standby, or a stale old one). */
  leader: boolean;
  /** A leader's timeline, or the timeline a standby streams (0 when unknown). */
  timeline: number;
}

/**
 * One query per node: its role, its WAL position (replayed, or flushed on a primary) and its
 * timeline: a primary's own, a standby's WAL receiver's (the timeline it streams; NULL when
 * it streams nothing, or when the role may not see it: pg_read_all_stats, deploy/roles.sql).
 */
const NODE_SQL = `SELECT pg_is_in_recovery() AS recovery,
  (CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn() ELSE pg_current_wal_flush_lsn() END)::text AS lsn,
  CASE WHEN NOT pg_is_in_recovery() THEN ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int
       ELSE (SELECT received_tli FROM pg_stat_wal_receiver) END AS timeline,
  extract(epoch FROM now() - pg_last_xact_replay_timestamp())::float8 AS age`;
interface NodeRow { recovery: boolean; lsn: string | null; timeline: number | null; age: number | null }

/**
 * At start-up, before migrations: the configured node that is a primary on the newest
 * timeline, or undefined when none answers as one (then DATABASE_URL is used as it is).
 * A node that does not connect, or logs in and does not answer, within the connect
 * timeout counts as none (found by a test: it held the start-up forever).
 */
export async function findPrimary(urls: string[], connectTimeoutMs = 2000): Promise<string | undefined> {
  const found = await Promise.all(urls.map((url) => withClient({ connectionString: url, connectionTimeoutMillis: connectTimeoutMs, query_timeout: connectTimeoutMs }, async (c) => (await c.query<NodeRow>(NODE_SQL)).rows[0])
    .then((row) => (row.recovery ? undefined : { url, timeline: row.timeline ?? 0 }), () => undefined)));
  const leaders = found.filter((f): f is { url: string; timeline: number } => f !== undefined);
  leaders.sort((a, b) => b.timeline - a.timeline);
  return leaders[0]?.url;
}

const lsn = (text: string | null | undefined): bigint => {
  if (!text) return 0n;
  const [hi, lo] = text.split('/');
  return (BigInt(`0x${hi}`) << 32n) + BigInt(`0x${lo}`);
};

export class ReplicaSet {
  /** The standbys, then the DATABASE_URL node when given (primaryNode). */
  readonly states: ReplicaState[];
  readonly nodes: { name: string; db: Db }[];
  private fence = 0n;
  /** Changes heard (notifications, own writes, feed restarts, promotions), numbered. */
  private heard = 0;
  /** The changes whose fence is in `fence`: all of them when equal to `heard`. */
  private covered = 0;
  /** Whether the change feed is listening (changes may go unheard while it is not). */
  private feedUp = true;
  private primaryLsn = 0n;
  private primaryUp = true;
  /** The timeline of the primary the pool talks to, as last probed (0: not known yet). */
  private primaryTimeline = 0;
  private next = 0;
  private timer?: NodeJS.Timeout;
  /** Reads sent to each target (metrics). */
  readonly reads = { primary: 0, replica: 0, fallback: 0 };
  /** Times the primary moved to another node. */
  failovers = 0;
  /** Standbys whose streamed timeline could not be read (said once each). */
  private readonly unseenTimeline = new Set<string>();

  constructor(private readonly primary: Db, readonly replicas: { name: string; db: Db }[], private readonly o: ReplicaOptions) {
    this.nodes = o.primaryNode ? [...replicas, o.primaryNode] : [...replicas];
    this.states = this.nodes.map((r) => ({ name: r.name, up: false, usable: false, replayLsn: 0n, lagBytes: Infinity, lagSeconds: Infinity, behindSince: 0, leader: false, timeline: 0 }));
  }

  /** Whether the primary answered the last probe (writes can be served). */
  get writable(): boolean {
    return this.primaryUp;
  }

  /** Whether node i is the one the primary's pool talks to. */
  isPrimary(i: number): boolean {
    return this.nodes[i].db.connectionString === this.primary.connectionString;
  }

  /** Whether some standby answers (reads can be served with the primary down). */
  get readable(): boolean {
    return this.states.some((s) => s.up && !s.leader);
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

  /** One node's answer to NODE_SQL, or a rejection after probeTimeoutMs. */
  private ask(db: Db): Promise<NodeRow> {
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error('probe timed out')), this.o.probeTimeoutMs ?? 1000);
    });
    const answer = db.query<NodeRow>(NODE_SQL).then((r) => r.rows[0]);
    answer.catch(() => undefined);
    return Promise.race([answer, late]).finally(() => clearTimeout(timer));
  }

  async probe(): Promise<void> {
    // A primary's flush position read after change number h covers every change up to h.
    const h = this.heard;
    const answers = await Promise.all(this.nodes.map((n) => this.ask(n.db).catch(() => undefined)));
    // The primary's server is one of the nodes (DATABASE_URL's, or the promoted one) when
    // primaryNode is given: its node's answer serves, asked on the node's own pool, so a
    // busy primary pool (this host's overload) does not look like a primary gone.
    const at = this.nodes.findIndex((n) => n.db.connectionString === this.primary.connectionString);
    const primary = at >= 0 ? answers[at] : await this.ask(this.primary).catch(() => undefined);
    // A primary demoted to a standby (or a DATABASE_URL that names one) takes no writes.
    this.primaryUp = primary !== undefined && !primary.recovery;
    if (primary && !primary.recovery) {
      this.primaryLsn = lsn(primary.lsn);
      this.primaryTimeline = primary.timeline ?? this.primaryTimeline;
      // A fence whose own read was refused or failed is proven here (only then: a probe's
      // position is newer than needed and would keep standbys out longer).
      if (this.covered < h) this.cover(this.primaryLsn, h);
    }
    this.nodes.forEach((r, i) => {
      const s = this.states[i];
      const row = answers[i];
      if (row) {
        s.up = true;
        s.leader = !row.recovery;
        s.timeline = row.timeline ?? 0;
        if (row.recovery && row.timeline === null && this.primaryUp && !this.unseenTimeline.has(r.name)) {
          this.unseenTimeline.add(r.name);
          this.o.log?.(`replica ${r.name}: its WAL receiver's timeline is not visible (not streaming, or the role lacks pg_read_all_stats: deploy/roles.sql); its reads are not proven fresh and stay on the primary until it is`);
        }
        s.replayLsn = row.recovery ? lsn(row.lsn) : 0n;
        const behind = this.primaryUp && row.recovery ? this.primaryLsn - s.replayLsn : 0n;
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
        if (usable !== s.usable && (row.recovery || s.usable)) this.o.log?.(`replica ${r.name}: ${usable ? 'usable' : `skipped (lag ${s.lagBytes} bytes, ${s.lagSeconds.toFixed(1)} s${row.recovery ? '' : ', not in recovery'})`}`);
        s.usable = usable;
      } else {
        if (s.up) this.o.log?.(`replica ${r.name}: down`);
        s.up = false;
        s.usable = false;
        s.leader = false;
      }
    });
    this.follow();
  }

  /** Moves the primary's pool to a node promoted since (a leader on a newer timeline). */
  private follow(): void {
    let best = -1;
    this.states.forEach((s, i) => {
      if (s.leader && s.timeline > this.primaryTimeline && (best < 0 || s.timeline > this.states[best].timeline)) best = i;
    });
    // Timeline unknown (the primary never answered as one): any leader, when the pool's server takes no writes.
    if (best < 0 && this.primaryTimeline === 0 && !this.primaryUp) best = this.states.findIndex((s) => s.leader);
    if (best < 0) return;
    const node = this.nodes[best];
    if (node.db.connectionString === this.primary.connectionString) return;
    this.o.log?.(`primary: ${node.name} was promoted (timeline ${this.states[best].timeline}, was ${this.primaryTimeline || 'unknown'}); writes and the change feed move there`);
    this.primary.retarget(node.db.connectionString);
    this.primaryTimeline = this.states[best].timeline;
    this.primaryUp = true;
    this.primaryLsn = 0n;
    // LSNs of the old timeline say nothing on the new one: start the fence again (the
    // caches empty as the feed reconnects, and every change heard raises it). Until the
    // new primary's position is read, nothing read on a standby is proven.
    this.fence = 0n;
    this.failovers++;
    this.raiseFence();
    this.o.onPrimaryChange?.(node.name);
  }

  /**
   * This host heard a change, or made a write: until the primary's WAL flush position as
   * of now is read, the fence is not known and reads go to the primary. When that read is
   * refused (this host's admission queue) or fails, the fence stays unknown until a later
   * one returns (the next change's, or the next probe's).
   */
  raiseFence(): void {
    const h = ++this.heard;
    this.primary.query<{ l: string }>('SELECT pg_current_wal_flush_lsn()::text AS l')
      .then(({ rows }) => this.cover(lsn(rows[0].l), h), () => undefined);
  }

  /** The change feed stopped or started listening: either way changes may have gone unheard. */
  feedListening(listening: boolean): void {
    this.feedUp = listening;
    this.raiseFence();
  }

  /** The primary's flush position `at`, read after change number h was heard. */
  private cover(at: bigint, h: number): void {
    if (at > this.fence) this.fence = at;
    if (h > this.covered) this.covered = h;
  }

  /** Whether the fence is proven: every change heard has its position in it, and the feed listens. */
  get fenceKnown(): boolean {
    return this.feedUp && this.covered === this.heard;
  }

  /**
   * The freshness rule's read side (src/db/read-stamp.ts): a read on the primary's pool is
   * proven; one on standby i only when the fence is known, the standby streams the
   * primary's timeline, and it has replayed past the fence (its replay position from the
   * last probe, which only grows, is a lower bound of what its snapshot holds). LSNs compare
   * only on one timeline: after a promotion a standby that was ahead on the old one has a
   * higher LSN and lacks the new primary's commits (found by review).
   */
  private stamp(i?: number): ReadStamp {
    if (i === undefined) return PRIMARY_READ;
    const s = this.states[i];
    const sameTimeline = this.primaryTimeline > 0 && s.timeline === this.primaryTimeline;
    return { exact: this.fenceKnown && !s.leader && sameTimeline && s.replayLsn >= this.fence };
  }

  /**
   * Where a read goes now: a usable standby whose read is proven (past a known fence),
   * else the primary. With the primary believed down, a proven standby if any, else the
   * standby that has replayed furthest: an answer as of its replay position (at most its
   * lag old) rather than none, stamped not proven, so nothing keeps it.
   */
  choose(): { db: Db; replica?: number; stamp: ReadStamp } {
    for (let k = 0; k < this.nodes.length; k++) {
      const i = (this.next + k) % this.nodes.length;
      if (!this.states[i].usable) continue;
      const stamp = this.stamp(i);
      if (stamp.exact) {
        this.next = i + 1;
        this.reads.replica++;
        return { db: this.nodes[i].db, replica: i, stamp };
      }
    }
    if (!this.primaryUp) {
      const best = this.furthest();
      if (best >= 0) {
        this.reads.replica++;
        return { db: this.nodes[best].db, replica: best, stamp: this.stamp(best) };
      }
    }
    this.reads.primary++;
    return { db: this.primary, stamp: PRIMARY_READ };
  }

  /**
   * Where a read that failed on the servers in `tried` (connection strings) goes next: the
   * primary while it is believed up, else the standby that is up and has replayed furthest,
   * else the primary anyway; undefined when each was tried.
   */
  fallback(tried: Set<string>): { db: Db; replica?: number; stamp: ReadStamp } | undefined {
    const primaryTried = tried.has(this.primary.connectionString);
    let next: { db: Db; replica?: number; stamp: ReadStamp } | undefined;
    if (this.primaryUp && !primaryTried) next = { db: this.primary, stamp: PRIMARY_READ };
    else {
      const best = this.furthest(tried);
      if (best >= 0) next = { db: this.nodes[best].db, replica: best, stamp: this.stamp(best) };
      else if (!primaryTried) next = { db: this.primary, stamp: PRIMARY_READ };
    }
    if (next) this.reads.fallback++;
    return next;
  }

  /** The standby that answers and has replayed furthest, leaving out the servers in `skip`; -1 when none. */
  private furthest(skip?: Set<string>): number {
    let best = -1;
    this.states.forEach((s, i) => {
      if (s.up && !s.leader && !skip?.has(this.nodes[i].db.connectionString) && (best < 0 || s.replayLsn > this.states[best].replayLsn)) best = i;
    });
    return best;
  }

  /**
   * The primary failed a read or a write with its server gone: until a probe finds it
   * again, reads go to the standbys (stamped not proven unless past a known fence: one
   * killed connection is no proof that a standby has every change).
   */
  primaryFailed(): void {
    this.primaryUp = false;
  }

  /** A standby failed a read: skip it until a probe finds it well again. */
  failed(replica: number): void {
    this.states[replica].usable = false;
  }
}

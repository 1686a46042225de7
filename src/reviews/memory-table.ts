// The life of a table of every product held in a host's memory (meta-memory.ts, the meta
// aggregates; review-memory.ts, every visible review): when it loads, what makes a product
// dirty, when the table is dropped, retried, aged out or loaded again. What a table holds
// and how it is read is the caller's (`read`); this module only says whether a product may
// be answered from it.
//
// Exact by the response cache's rule (src/response-cache/response-cache.ts): a load begins
// only while the change feed listens, and every change heard from the moment it begins
// marks its product dirty; each of the load's statements starts after that moment, so it
// holds every change heard before (and each product is read by one statement), and a dirty
// product is read as before (response cache, then PostgreSQL) until the next load, or until
// a reader has it read back into the table (readBack, with a refresher: the same rule, one
// statement begun after the change was heard, and no change heard while it ran). Read-backs
// follow reads, not writes: a product written and not read costs nothing then. But a product
// no change has touched for sweepAfterMs is read back in the background too (the sweep, by
// the same readBack, so by the same rule), a few at a time: otherwise products written once
// and seldom read stay dirty, their number grows with every write until it reaches the reload
// threshold, and a reload re-reads every product (the fourteenth session measured one every
// ~12 min at 3,000 req/s of the mix, with the review table dropped for its 4-5 min). A flush,
// a change of trust or a promotion drops the whole table and abandons a load under way (the
// next begins once it has stopped); a table is answered from for at most `maxAgeMs` (a
// backstop, as the response cache's TTL is). So an answer from a table is one the primary
// gave after every change this host has heard to that product.
import type { Db } from '../db';
import type { ResponseCache } from '../response-cache/response-cache';

export interface MemoryTableOptions {
  /**
   * Whose change feed and trust this table follows: a cache built untrusted, trusted only
   * while its feed listens (src/response-cache/invalidation-feed.ts).
   */
  cache: ResponseCache;
  /**
   * The most memory the tables held at once may take. A table larger than this is not loaded
   * (its reads go as before); a load begins with the table held kept
   * serving only while both fit (a new table taken to be as large as the one held); otherwise
   * that table is dropped first, and its products are read as before until the load ends.
   */
  maxBytes: number;
  /** Longest a table is answered from (the backstop behind the exact invalidation); reloaded at 60-80 % of it, at random. */
  maxAgeMs: number;
  log?: (line: string) => void;
  /** Load again once this share of the products (and at least reloadDirtyMin) is dirty (default 0.05, 1,000). */
  reloadDirtyShare?: number;
  reloadDirtyMin?: number;
  /** After a failed load, try again after this long (default 30 s). */
  retryMs?: number;
  /**
   * Loads begin at most this often (default 60 s). A load costs the host and the primary
   * seconds of CPU; a change feed that drops and returns again and again under overload
   * must not turn each return into one more load.
   */
  minLoadIntervalMs?: number;
  /** A load after a flush waits a random delay up to this (default 5 s), so hosts do not all load at once. */
  jitterMs?: number;
  /**
   * A reload the dirty bound asks for waits a random delay up to this (default 60 s), drawn
   * once, after the spacing of loads (minLoadIntervalMs): every host (every worker) hears the
   * same changes and reaches the bound at about the same moment. It staggers the reloads'
   * starts; two may still overlap, each at reloadDuty. The table held keeps serving
   * meanwhile, its dirty products read back into it as before.
   */
  reloadJitterMs?: number;
  /**
   * The share of the time a load keeps its statements running (loadPause): `loadDuty` while
   * no table is served from (the first load, a table dropped for the load or aged out;
   * default 0.5), `reloadDuty` while the table held keeps serving (default 0.1: a reload under
   * load then adds a tenth of a connection, not half of one, to what the primary is already
   * doing, and takes five times as long; the old table keeps answering meanwhile, and its
   * dirty products are still read back into it, but every change heard during the load is
   * dirty in the next table from its start). Read again after each statement: a table aged
   * out meanwhile makes the rest of the load go at `loadDuty`. The review table's reloads
   * keep `loadDuty` (review-memory.ts).
   */
  loadDuty?: number;
  reloadDuty?: number;
  /**
   * A reader's read-back (readBack, with a refresher) waits this long for other readers',
   * which share its statement (default 0: those of the same turn of the event loop).
   */
  refreshDelayMs?: number;
  /**
   * A read-back statement that has run this long lets the readers queued behind it go to the
   * database, and takes no new ones (default 50 ms: a lock or an overloaded primary must not
   * hold them for its statement and then their own).
   */
  refreshWaitBehindMs?: number;
  /**
   * A dirty product that no change has touched for this long is read back in the background
   * (with a refresher; default 0: only when read), oldest first, at most sweepBatch products
   * every sweepIntervalMs, and only while no reader's read-back is queued or under way.
   */
  sweepAfterMs?: number;
  /** Products a sweep takes at once (one statement; default 64), and how often it runs (default 250 ms). */
  sweepBatch?: number;
  sweepIntervalMs?: number;
  /** The primary: what `busy` reads by default (its pool's pressure); without it, never busy. */
  db?: Db;
  /**
   * How busy the database is now (default: `db`'s pool, Db.pressure): 'queued'
   * while requests wait for a connection, 'taken' while every connection is taken and none
   * waits, false otherwise. A turn of the sweep with products due is skipped while 'queued'
   * (its statement would wait behind them, one waiting past refreshWaitBehindMs sends readers
   * of dirty products to the database meanwhile, and one refused there pauses every
   * read-back) until three quarters of the dirty products that reload the table are reached,
   * and while 'taken' until half of them (it would go ahead of the readers that come next):
   * the whole table's load those products bring costs far more.
   */
  busy?: () => 'queued' | 'taken' | false;
}

/**
 * Reads `products` of table `t` afresh, in one statement begun now, and returns for each
 * product read a function that puts its new state into `t` (called only if the product may
 * be answered from it: nothing changed it while the statement ran, and `t` is still held),
 * false when it would not (past the table's bound: the product then stays dirty).
 */
export type Refresher<T> = (t: T, products: number[]) => Promise<Map<number, () => Install>>;

/**
 * What an install did: put the product in (true); refused for now (false: past the table's
 * bound, which a later read-back may find room under); or refused until the next table
 * ('until-load': a layout only a load sets, such as a product's characteristics), so it is
 * not read back again meanwhile.
 */
export type Install = boolean | 'until-load';

/** What every table has, whatever else it holds. */
export interface HeldTable {
  /** The highest product id held. */
  maxProduct: number;
  /** Products changed since this load began. */
  dirty: Set<number>;
  bytes: number;
  /** When its load began (performance.now()). */
  loadedAt: number;
  /** What the load line says it holds (e.g. "product ids up to 1,000,011"). */
  describe(): string;
}

/** A load under way: the changes it must not miss are gathered from its start. */
export interface Loading {
  dirty: Set<number>;
  /** Set by a flush, a change of trust or close(): its pages stop, its table is not kept. */
  abandoned: boolean;
  /** The share of the time its statements may run now (loadDuty, or reloadDuty while a table held serves): for loadPause after each. */
  duty(): number;
}

export interface MemoryTableStats {
  /** Answers given from memory. */
  served: number;
  /** Reads of a dirty product (answered as before). */
  dirtyReads: number;
  /** Of those, reads of a product the table does not read back (too large to be worth it: the review table's refreshMaxReviews). */
  dirtyReadsTooLarge: number;
  /**
   * Readers of a dirty product sent on (to the cache or the database) because a read-back
   * statement under way had run longer than refreshWaitBehindMs: refused a wait, or let go
   * from one.
   */
  dirtyReadsBehindSlow: number;
  loads: number;
  failedLoads: number;
  /** Loads abandoned for a flush, a change of trust or a close. */
  abandonedLoads: number;
  /** Dirty products read again and made clean (with a refresher), and statements of that which failed. */
  refreshed: number;
  failedRefreshes: number;
  /** Of the products read back, those the sweep asked for (no reader had). */
  swept: number;
  /** Turns of the sweep, with products due, skipped because the database was busy (`busy`). */
  sweepsSkippedBusy: number;
  /** The highest product id held (0 while nothing is loaded), dirty products among them, and bytes held. */
  maxProduct: number;
  dirty: number;
  bytes: number;
}

interface Deferred {
  promise: Promise<void>;
  resolve(): void;
  /** Readers given this promise (counted as dirty reads behind a slow read-back if let go for that). */
  readers: number;
}
function deferred(): Deferred {
  let resolve!: () => void;
  const promise = new Promise<void>((r) => (resolve = r));
  return { promise, resolve, readers: 0 };
}

/** Thrown inside a load that was abandoned (not a failure). */
export class Abandoned extends Error {}
/** A table this host will not hold (too big, too many names): not retried until the next flush. */
export class WillNotHold extends Error {}

export class MemoryTable<T extends HeldTable> {
  private table?: T;
  private loading?: Loading;
  private timer?: NodeJS.Timeout;
  private started = false;
  private closed = false;
  /** When the last load began (the next waits minLoadIntervalMs after it). */
  private lastLoadAt = -Infinity;
  /** A flush asked for a load while one was being abandoned: begin it once that one stops. */
  private reloadAfterAbandon = false;
  /** The dirty bound has asked for a reload (its random delay drawn) that has not begun yet. */
  private boundAsked = false;
  /** When the load timer set fires (performance.now()): a later load asked for does not put it off. */
  private timerAt = Infinity;
  private readonly counters = { served: 0, dirtyReads: 0, dirtyReadsTooLarge: 0, dirtyReadsBehindSlow: 0, loads: 0, failedLoads: 0, abandonedLoads: 0, refreshed: 0, failedRefreshes: 0, swept: 0, sweepsSkippedBusy: 0 };
  /**
   * Dirty products a reader asked to have read back, waiting for the next statement (with a
   * refresher), each with what its readers wait for: resolved once the statement that read it
   * has ended, or when there will be none (a drop, a failure).
   */
  private readonly pending = new Map<number, Deferred>();
  /**
   * Products in the statement under way: what their readers wait for, and whether a change to
   * one was heard meanwhile (it then stays dirty).
   */
  private readonly inFlight = new Map<number, { waiting: Deferred; changed: boolean }>();
  /** When the statement under way began (performance.now()), and the table it reads for. */
  private inFlightSince = 0;
  private inFlightTable?: T;
  private refreshTimer?: NodeJS.Timeout;
  /**
   * Products whose read-back cannot install into the table held until the next one
   * ('until-load': a layout only a load sets): not read back again meanwhile, so their readers
   * do not each wait for a futile statement. Emptied when the table is dropped (installs
   * happen only into the table held, so every mark is one of its products').
   */
  private readonly unrefreshable = new Set<number>();
  /** After failed read-backs, the pause before the next (doubling to 30 s; 0 after a success), and its end. */
  private refreshBackoffMs = 0;
  private refreshPausedUntil = 0;
  /**
   * The held table's dirty products by when a change last touched them (performance.now()),
   * least recently first (a change moves its product to the end): what the sweep reads back.
   * Products the sweep will not take (refused, too large to be worth it) leave it; a change
   * puts them back.
   */
  private readonly quietSince = new Map<number, number>();
  /** Products the sweep asked to have read back, until their statement ends. */
  private readonly sweeping = new Set<number>();
  private sweepTimer?: NodeJS.Timeout;
  /** Whether this table sweeps at all (a refresher, and sweepAfterMs above 0): quietSince is kept only then. */
  private readonly sweeps: boolean;
  private readonly log: (line: string) => void;

  /**
   * `label` starts its log lines ("meta memory"); `read` reads a whole table, checking
   * `loading.abandoned` between its statements (and throwing Abandoned when it is set);
   * `refresh`, when given, reads changed products again so they need not wait for the next
   * load (the same rule as a load's: its statement begins after the change was heard);
   * `worthReadingBack` says which dirty products a read-back may take (default: all).
   */
  constructor(private readonly o: MemoryTableOptions, private readonly label: string,
    private readonly read: (loading: Loading, began: number) => Promise<T>, private readonly refresh?: Refresher<T>,
    private readonly worthReadingBack: (t: T, product: number) => boolean = () => true) {
    this.log = o.log ?? (() => undefined);
    this.sweeps = refresh !== undefined && (o.sweepAfterMs ?? 0) > 0;
    o.cache.onChange((product) => this.changed(product));
  }

  /** Loads from now on (the first once the change feed listens). */
  start(): void {
    this.started = true;
    this.schedule(0);
    if (this.sweeps) {
      this.sweepTimer = setInterval(() => this.sweep(), this.o.sweepIntervalMs ?? 250);
      this.sweepTimer.unref();
    }
  }

  close(): void {
    this.closed = true;
    clearTimeout(this.timer);
    this.timer = undefined;
    this.timerAt = Infinity;
    clearTimeout(this.refreshTimer);
    clearInterval(this.sweepTimer);
    this.drop();
    if (this.loading) this.loading.abandoned = true;
  }

  /**
   * The table, if `product` may be answered from it now: loaded, not too old, trusted,
   * held, and not dirty. Undefined otherwise (a dirty read is counted, unless `countDirty`
   * is false: a reader about to have it read back asks again after). A caller that answers
   * from it calls served().
   */
  clean(product: number, countDirty = true): T | undefined {
    const t = this.current();
    if (!t || !this.o.cache.isTrusted || product > t.maxProduct) return undefined;
    if (t.dirty.has(product)) {
      if (countDirty) {
        this.counters.dirtyReads++;
        if (!this.worthReadingBack(t, product)) this.counters.dirtyReadsTooLarge++;
      }
      return undefined;
    }
    return t;
  }

  served(): void {
    this.counters.served++;
  }

  stats(): MemoryTableStats {
    const t = this.current();
    return { ...this.counters, maxProduct: t ? t.maxProduct : 0, dirty: t?.dirty.size ?? 0, bytes: t?.bytes ?? 0 };
  }

  /** The table, unless it has aged out (then it is dropped: its metrics say 0, and a load is due). */
  private current(): T | undefined {
    const t = this.table;
    if (t && performance.now() - t.loadedAt > this.o.maxAgeMs) {
      this.drop();
      this.schedule(0);
      return undefined;
    }
    return t;
  }

  private changed(product: number | undefined): void {
    if (product === undefined) {
      // A flush (an import's swap), a change of trust, a promotion: nothing held is proven now.
      this.drop();
      if (this.loading) {
        this.loading.abandoned = true;
        this.reloadAfterAbandon = true;
      } else {
        this.schedule(Math.random() * (this.o.jitterMs ?? 5000));
      }
      return;
    }
    this.loading?.dirty.add(product);
    const t = this.table;
    if (!t) return;
    t.dirty.add(product);
    if (this.sweeps && product <= t.maxProduct) {
      this.quietSince.delete(product);
      this.quietSince.set(product, performance.now());
    }
    // A read-back under way may have read it before this change: it must not make it clean.
    const underWay = this.inFlight.get(product);
    if (underWay) underWay.changed = true;
    if (!this.boundAsked && !this.loading && t.dirty.size > this.dirtyBound(t)) {
      this.boundAsked = true;
      // After the spacing of loads, not within it: hosts that loaded together (after the
      // same flush) would otherwise reload together at its end.
      this.schedule(this.waitFor(0) + Math.random() * (this.o.reloadJitterMs ?? 60_000));
    }
  }

  /** Forgets the table held; readers waiting for a read-back into it go on without it at once. */
  private drop(): void {
    this.table = undefined;
    // Its marks go with it.
    this.unrefreshable.clear();
    this.quietSince.clear();
    this.releasePending();
    // The statement under way reads for a table no longer held: its readers need not wait.
    for (const { waiting } of this.inFlight.values()) waiting.resolve();
  }

  /** Lets every reader waiting for a statement not begun yet go on (to the database); `behindSlow`: for a statement ahead that ran long. */
  private releasePending(behindSlow = false): void {
    for (const waiting of this.pending.values()) {
      if (behindSlow) this.counters.dirtyReadsBehindSlow += waiting.readers;
      waiting.resolve();
    }
    this.pending.clear();
  }

  /**
   * Reads dirty `product` back into the table held, now (with the reads of other products
   * asked for meanwhile, one statement, at most 256 products a statement), for a reader that
   * found it dirty: the promise resolves once that statement has ended, whatever became of
   * it, or once none will (a drop, a failure, a statement ahead that ran long), and the reader
   * then asks clean() again. Undefined, at once, when no read-back will be tried: no
   * refresher, no table, untrusted, the product not dirty or not one `worthReadingBack` says is worth
   * it, read-backs failing (until their pause is over), or a statement under way that has run
   * longer than refreshWaitBehindMs. Besides readers, only the sweep calls it, for products
   * quiet for sweepAfterMs: a product written again and again but not read costs no statement
   * (`reader` false: the sweep's calls are not readers, and are not counted as dirty reads).
   */
  readBack(product: number, reader = true): Promise<void> | undefined {
    const t = this.table;
    if (!this.refresh || !t || this.closed || !this.o.cache.isTrusted || !t.dirty.has(product) || product > t.maxProduct) return undefined;
    if (performance.now() < this.refreshPausedUntil || !this.worthReadingBack(t, product)) return undefined;
    if (this.unrefreshable.has(product)) return undefined;
    // Behind a statement that has run long (a lock, an overloaded primary), a reader does not
    // queue: it goes to the database now rather than wait for that one and then its own.
    if (this.longRunning()) {
      if (reader) this.counters.dirtyReadsBehindSlow++;
      return undefined;
    }
    const underWay = this.inFlight.get(product);
    if (underWay && !underWay.changed && this.inFlightTable === t) return this.given(underWay.waiting, reader);
    let waiting = this.pending.get(product);
    if (!waiting) this.pending.set(product, (waiting = deferred()));
    this.armRefresh();
    return this.given(waiting, reader);
  }

  private given(waiting: Deferred, reader: boolean): Promise<void> {
    if (reader) waiting.readers++;
    return waiting.promise;
  }

  /** How long readers wait behind a read-back statement under way (refreshWaitBehindMs). */
  private get waitBehindMs(): number {
    return this.o.refreshWaitBehindMs ?? 50;
  }

  /** A read-back statement under way has run longer than refreshWaitBehindMs. */
  private longRunning(): boolean {
    return this.inFlight.size > 0 && performance.now() - this.inFlightSince > this.waitBehindMs;
  }

  /** Reads the pending products back after refreshDelayMs, unless a read-back is under way (the next follows it). */
  private armRefresh(): void {
    if (this.refreshTimer || this.inFlight.size || !this.pending.size) return;
    this.refreshTimer = setTimeout(() => {
      this.refreshTimer = undefined;
      void this.refreshPending();
    }, this.o.refreshDelayMs ?? 0);
  }

  /**
   * Reads the pending products back (one statement at a time, at most 256 products a
   * statement). A product is made clean only if no change to it was heard from the moment
   * its statement began (as a load's products are) and the table is the one read for;
   * otherwise it stays dirty. A failed statement leaves its products dirty, as they were,
   * and read-backs pause (1 s, doubling while they keep failing, up to 30 s): their readers
   * go to the database meanwhile, which an overloaded database must not see doubled.
   */
  private async refreshPending(): Promise<void> {
    const t = this.table;
    if (!t || !this.refresh || this.closed || !this.o.cache.isTrusted) {
      this.releasePending();
      return;
    }
    const batch = [...this.pending.keys()].slice(0, 256);
    for (const product of batch) {
      this.inFlight.set(product, { waiting: this.pending.get(product)!, changed: false });
      this.pending.delete(product);
    }
    this.inFlightSince = performance.now();
    this.inFlightTable = t;
    // Readers queued behind it meanwhile are let go once it has run long.
    const waitBehind = setTimeout(() => this.releasePending(true), this.waitBehindMs);
    try {
      const fresh = await this.refresh(t, batch);
      this.refreshBackoffMs = 0;
      if (this.table === t && this.o.cache.isTrusted) {
        for (const [product, install] of fresh) {
          if (this.inFlight.get(product)?.changed !== false) continue;
          const done = install();
          if (done === 'until-load') this.unrefreshable.add(product);
          // Clean, or refused: either way the sweep does not take it again until a change.
          this.quietSince.delete(product);
          if (done !== true) continue;
          t.dirty.delete(product);
          this.counters.refreshed++;
          if (this.sweeping.has(product)) this.counters.swept++;
        }
      }
    } catch (err) {
      this.counters.failedRefreshes++;
      this.refreshBackoffMs = Math.min(30_000, Math.max(1000, this.refreshBackoffMs * 2));
      this.refreshPausedUntil = performance.now() + this.refreshBackoffMs;
      // The readers queued meanwhile go to the database too: no statement during the pause.
      this.releasePending();
      if (this.counters.failedRefreshes === 1 || this.counters.failedRefreshes % 1000 === 0) {
        this.log(`${this.label}: reading changed products back failed (${(err as Error).message}; ${this.counters.failedRefreshes} so far); they stay dirty, read from the database, and read-backs pause ${(this.refreshBackoffMs / 1000).toFixed(0)} s`);
      }
    } finally {
      clearTimeout(waitBehind);
      this.inFlightTable = undefined;
      for (const product of batch) {
        this.inFlight.get(product)?.waiting.resolve();
        this.inFlight.delete(product);
        this.sweeping.delete(product);
      }
    }
    this.armRefresh();
  }

  /** Whether the sweep would read `product` back (the rest of readBack's conditions are the moment's, not the product's). */
  private sweepable(t: T, product: number): boolean {
    return t.dirty.has(product) && product <= t.maxProduct && !this.unrefreshable.has(product) && this.worthReadingBack(t, product);
  }

  /** Dirty products past which the table is loaded again (reloadDirtyShare of the products, at least reloadDirtyMin). */
  private dirtyBound(t: T): number {
    return Math.max(this.o.reloadDirtyMin ?? 1000, t.maxProduct * (this.o.reloadDirtyShare ?? 0.05));
  }

  /**
   * The sweep: the dirty products quiet for sweepAfterMs, least recently changed first, at
   * most sweepBatch of them, read back as a reader's would be (readBack: the same statement
   * and rule, so the same guards: a table held and trusted, read-backs not paused after
   * failures). Only when no reader's read-back is queued or under way: readers first.
   */
  private sweep(): void {
    // current(): a table past its age is dropped here too, not swept into.
    const t = this.current();
    const after = this.o.sweepAfterMs ?? 0;
    if (!t || this.closed || !this.o.cache.isTrusted || this.pending.size || this.inFlight.size) return;
    // Nothing queued or under way: any mark left is of a statement that never ran (a drop).
    this.sweeping.clear();
    const now = performance.now();
    // What the sweep would not take leaves (not dirty, too large, refused until the next
    // load); then, nothing quiet long enough: no turn to take, or to skip.
    let head = this.quietSince.entries().next();
    while (!head.done && !this.sweepable(t, head.value[0])) {
      this.quietSince.delete(head.value[0]);
      head = this.quietSince.entries().next();
    }
    if (head.done || now - head.value[1] < after) return;
    // Behind readers waiting for the database, until three quarters of the products that
    // reload the whole table are dirty; not ahead of the next ones while every connection is
    // taken, until half of them are.
    const busy = this.o.busy ? this.o.busy() : this.o.db?.pressure;
    const near = t.dirty.size / this.dirtyBound(t);
    if ((busy === 'queued' && near < 0.75) || (busy === 'taken' && near < 0.5)) {
      this.counters.sweepsSkippedBusy++;
      return;
    }
    const most = this.o.sweepBatch ?? 64;
    for (const [product, since] of this.quietSince) {
      if (this.sweeping.size >= most || now - since < after) break;
      if (this.readBack(product, false)) {
        this.sweeping.add(product);
        continue;
      }
      // Paused after failures: try again once the pause is over.
      if (now < this.refreshPausedUntil) break;
      // Not dirty, too large to be worth it, or refused until the next load: not the sweep's.
      this.quietSince.delete(product);
    }
  }

  /**
   * A load after `delayMs`, and no sooner than minLoadIntervalMs after the last one began; a
   * load already set to begin sooner is kept (each asks for a load no later than its time:
   * the dirty bound's delay must not put off a reload due for the table's age).
   */
  private schedule(delayMs: number): void {
    if (!this.started || this.closed || this.loading) return;
    const wait = this.waitFor(delayMs);
    const at = performance.now() + wait;
    if (this.timer && this.timerAt <= at) return;
    clearTimeout(this.timer);
    this.timerAt = at;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.timerAt = Infinity;
      void this.load();
    }, wait);
    this.timer.unref();
  }

  /** How long a load asked for in `delayMs` waits, loads being spaced. */
  private waitFor(delayMs: number): number {
    return Math.max(delayMs, this.lastLoadAt + (this.o.minLoadIntervalMs ?? 60_000) - performance.now());
  }

  private async load(): Promise<void> {
    // Untrusted: the feed may miss changes. The load waits for the flush that trust brings.
    this.boundAsked = false;
    if (this.closed || this.loading || !this.o.cache.isTrusted) return;
    const serving = () => this.table !== undefined && performance.now() - this.table.loadedAt <= this.o.maxAgeMs;
    const loading: Loading = { dirty: new Set(), abandoned: false, duty: () => (serving() ? this.o.reloadDuty ?? 0.1 : this.o.loadDuty ?? 0.5) };
    this.loading = loading;
    if (this.table && this.table.bytes * 2 > this.o.maxBytes) {
      this.log(`${this.label}: the table held is dropped while the next loads (two would not fit the memory allowed)`);
      this.drop();
    }
    this.reloadAfterAbandon = false;
    const began = (this.lastLoadAt = performance.now());
    let next: number | undefined;
    try {
      const table = await this.read(loading, began);
      if (loading.abandoned) throw new Abandoned();
      this.drop();
      this.table = table;
      const now = performance.now();
      if (this.sweeps) for (const product of table.dirty) if (product <= table.maxProduct) this.quietSince.set(product, now);
      this.counters.loads++;
      this.log(`${this.label}: ${table.describe()}, ${(table.bytes / 2 ** 20).toFixed(0)} MiB, loaded in ${((performance.now() - began) / 1000).toFixed(1)} s`);
      if (performance.now() - began > this.o.maxAgeMs * 0.25) this.log(`${this.label}: the load took more than a quarter of its age limit; raise the age limit`);
      // Reloaded before it is too old to answer from, at 60-80 % of its age (hosts started
      // together do not reload together).
      next = this.o.maxAgeMs * (0.6 + 0.2 * Math.random());
    } catch (err) {
      if (err instanceof Abandoned || loading.abandoned) {
        this.counters.abandonedLoads++;
      } else if (err instanceof WillNotHold) {
        this.log(`${this.label}: ${err.message}; it is read from the database${this.table ? ' once the table held now ages out' : ''} (no load is tried again before a flush)`);
      } else {
        this.counters.failedLoads++;
        next = this.o.retryMs ?? 30_000;
        this.log(`${this.label}: load failed (${(err as Error).message}); it is read from the database${this.table ? ' for products changed since the last load' : ''}, next try in ${(this.waitFor(next) / 1000).toFixed(0)} s`);
      }
    } finally {
      this.loading = undefined;
    }
    if (this.reloadAfterAbandon) this.schedule(Math.random() * (this.o.jitterMs ?? 5000));
    else if (next !== undefined) this.schedule(next);
  }
}

/**
 * Product ids are dense (the export's run 1..N); a POST may name any id up to 2^31 - 1. A
 * table covers ids up to max(2^20, twice the products with ratings); products above that are
 * read as before, so one stray id cannot size (or switch off) a table.
 */
const DENSE_FLOOR = 2 ** 20;

/**
 * The pause after a load's statement that took `tookMs` (as long as it took, times
 * (1 - duty) / duty), so that a load keeps at most about `duty` of a connection, and of a
 * PostgreSQL core, busy whatever else is going on: a load under load (a reload at the dirty
 * bound, a load after a flush) must not add a burst to it. None at a duty of 1; a duty
 * below 0.01 is taken as 0.01. `tookMs` is the statement's whole wait (a pool's queue under
 * overload included), so an overloaded primary spaces a load further.
 */
export function loadPause(tookMs: number, duty: number): Promise<void> | undefined {
  if (duty >= 1) return undefined;
  const share = duty > 0.01 ? duty : 0.01;
  return new Promise((resolve) => setTimeout(resolve, (tookMs * (1 - share)) / share));
}

/**
 * A table's extent, from the planner's estimates and index ends (no scan): the highest
 * product id it holds (of product_ratings and `table` where `visible`) and the planner's row
 * estimate of `table`.
 */
export async function tableExtent(db: Db, table: 'characteristics' | 'reviews', visible = 'true'): Promise<{ maxProduct: number; rows: number }> {
  const { rows: [size] } = await db.query<{ rated: number; rows: number }>(
    `SELECT greatest((SELECT reltuples FROM pg_class WHERE oid = 'atelier.product_ratings'::regclass), 0)::bigint AS rated,
            greatest((SELECT reltuples FROM pg_class WHERE oid = 'atelier.${table}'::regclass), 0)::bigint AS rows`);
  const cap = Math.max(DENSE_FLOOR, 2 * Number(size.rated));
  const { rows: [top] } = await db.query<{ max: number }>(
    `SELECT greatest((SELECT max(product_id) FROM atelier.product_ratings WHERE product_id <= $1), (SELECT max(product_id) FROM atelier.${table} WHERE product_id <= $1 AND ${visible}), 0) AS max`, [cap]);
  return { maxProduct: top.max, rows: Number(size.rows) };
}

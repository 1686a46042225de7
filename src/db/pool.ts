// The only module that imports `pg`: it owns the pool, runs queries, runs transactions
// on one client, and turns "the database is down/slow/saturated" into a 503.
import pg from 'pg';
import { UnavailableError } from './errors';

// int8 (counts, sums) as JS numbers: every bigint this service reads fits in 2^53.
pg.types.setTypeParser(pg.types.builtins.INT8, (v) => Number(v));

export interface DbOptions {
  connectionString: string;
  poolSize?: number;
  /** Requests allowed to wait for a pooled connection before new ones get a fast 503. */
  maxQueue?: number;
  /**
   * Longest wait for a pooled connection before a 503 (default 250 ms). Under overload the
   * queue holds each request at most this long: well under a client's patience, and long
   * enough that a closed-loop client does not return at once to be refused again.
   */
  queueTimeoutMs?: number;
  connectTimeoutMs?: number;
  /** 0 disables; bulk jobs whose statements legitimately run for many minutes use 0. */
  statementTimeoutMs?: number;
  /** Client-side read timeout (a server that stops answering); default statement timeout + 2 s, 0 disables. */
  queryTimeoutMs?: number;
  application?: string;
  /**
   * Run named statements with their generic plan (plan_cache_mode=force_generic_plan), for
   * the API's short statements by key. Without it PostgreSQL re-plans the list statement
   * on every execution: the planner prices its generic plan (unknown LIMIT/OFFSET) above the
   * custom ones, and planning it (inlining review_relevance, reading statistics) cost more
   * than running it (measured: 311–395 vs 158–175 µs of PostgreSQL CPU per cold list).
   * Bulk jobs leave it off: their parameterised scans want plans for the values given.
   */
  genericPlans?: boolean;
  /** Called after each query with its text, duration and row count (never its parameters: they hold emails). */
  onQuery?: (text: string, ms: number, rows: number | null) => void;
}

export type Client = pg.PoolClient;
export type QueryResult<R extends pg.QueryResultRow = pg.QueryResultRow> = pg.QueryResult<R>;

// Errors that mean "no database right now" rather than "this request is wrong".
const UNAVAILABLE_CODES = new Set(['57P01', '57P02', '57P03', '53300', '53400', '08000', '08001', '08003', '08004', '08006', '08P01']);
const NETWORK_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EPIPE', 'ENOTFOUND', 'EAI_AGAIN', 'EHOSTUNREACH']);

export function toUnavailable(err: unknown): UnavailableError | undefined {
  if (err instanceof UnavailableError) return err;
  const e = err as { code?: string; message?: string };
  if (e?.code === '57014') return new UnavailableError('The review database took too long to answer; retry shortly.', err);
  // The write fence (db/migrations/0006): an import is replacing the data set.
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

const guarded = new WeakSet<pg.PoolClient>();

/** A LISTEN connection kept by Db.listen(). */
export interface ChannelListener {
  /** The server process of the listening connection (tests terminate it). */
  readonly backendPid: number | undefined;
  close(): Promise<void>;
}

interface Waiter {
  grant(): void;
  /** Granted, or given up after queueTimeoutMs. */
  done: boolean;
  timer?: NodeJS.Timeout;
  /** Requests riding on this wait (members of a batch): they count in the queue too. */
  riders: number;
}

/**
 * Given to a caller whose statement waits in the admission queue: one more request rides
 * on that wait (a batch member). Throws the 503 when the queue is full; a no-op once the
 * wait is over (the rider shares the granted connection, or the refusal).
 */
export type Ride = () => void;

/** The admission queue's refusal: full, or the wait ran out. */
const overloaded = () => new UnavailableError('The service is overloaded; retry shortly.');

export class Db {
  readonly pool: pg.Pool;
  private readonly maxQueue: number;
  private readonly queueTimeoutMs: number;
  private readonly onQuery?: DbOptions['onQuery'];
  /** Admission: one slot per pooled connection, and a bounded FIFO of requests waiting for one. */
  private free: number;
  private readonly waiting: Waiter[] = [];
  private waitingHead = 0;
  /** Requests waiting for a connection slot now. */
  private live = 0;
  /** Refusals so far (the metrics report them). */
  readonly admission = { refusedQueueFull: 0, refusedTimeout: 0 };
  /** Batched statements run (queryWhenGranted with `requests`) and the requests they answered. */
  readonly batched = { statements: 0, requests: 0 };

  constructor(opts: DbOptions) {
    this.maxQueue = opts.maxQueue ?? 1000;
    this.queueTimeoutMs = opts.queueTimeoutMs ?? 250;
    this.free = opts.poolSize ?? 10;
    this.onQuery = opts.onQuery;
    this.pool = new pg.Pool({
      connectionString: opts.connectionString,
      max: opts.poolSize ?? 10,
      connectionTimeoutMillis: opts.connectTimeoutMs ?? 2000,
      statement_timeout: opts.statementTimeoutMs ?? 5000,
      // A socket that stops answering (host gone, not refused) must not hang a request.
      query_timeout: opts.queryTimeoutMs ?? (opts.statementTimeoutMs === 0 ? 0 : (opts.statementTimeoutMs ?? 5000) + 2000),
      application_name: opts.application ?? 'atelier-reviews',
      ...(opts.genericPlans ? { options: '-c plan_cache_mode=force_generic_plan' } : {}),
      idleTimeoutMillis: 30000,
      // TCP keep-alive: a peer that vanished without a FIN or RST (a partition, a failed-over
      // address) is found by the kernel on idle connections too (off by default in pg).
      keepAlive: true,
      keepAliveInitialDelayMillis: 10_000,
      // Keep the pool's connections open while idle: opening one (TCP + SCRAM) under load
      // can take longer than the connect timeout, and then no request ever gets through.
      min: opts.poolSize ?? 10,
    });
    // An idle client losing its server (restart) must not crash the process.
    this.pool.on('error', () => undefined);
  }

  get queueLength(): number {
    return this.live;
  }

  /**
   * Takes a connection slot: at once when one is free, else after waiting in the FIFO at
   * most queueTimeoutMs; refuses with a 503 when the FIFO is full or the wait runs out.
   * The slots equal the pool size, so the pool itself never queues.
   */
  private takeSlot(onQueued?: (ride: Ride) => void): Promise<void> | void {
    if (this.free > 0 && this.live === 0) {
      this.free--;
      return;
    }
    if (this.live >= this.maxQueue) throw this.refuseQueueFull();
    return new Promise<void>((resolve, reject) => {
      const w: Waiter = { grant: resolve, done: false, riders: 0 };
      this.live++;
      w.timer = setTimeout(() => {
        w.done = true;
        this.live -= 1 + w.riders;
        this.admission.refusedTimeout += 1 + w.riders;
        reject(overloaded());
      }, this.queueTimeoutMs);
      this.waiting.push(w);
      onQueued?.(() => {
        if (w.done) return;
        if (this.live >= this.maxQueue) throw this.refuseQueueFull();
        w.riders++;
        this.live++;
      });
    });
  }

  private refuseQueueFull(): UnavailableError {
    this.admission.refusedQueueFull++;
    return overloaded();
  }

  /**
   * A slot came back: the oldest waiter still waiting takes it, or it is free. FIFO, not
   * LIFO: measured at 1000 connections against one host, FIFO kept 92 % of the host's
   * capacity as 2xx (p99 290 ms) and adaptive LIFO 80 % (p99 664 ms): a request refused
   * comes straight back, so serving in order with a timeout throttles clients best.
   */
  private giveSlot(): void {
    while (this.waitingHead < this.waiting.length) {
      const w = this.waiting[this.waitingHead++];
      if (this.waitingHead > 1024 && this.waitingHead * 2 > this.waiting.length) {
        this.waiting.splice(0, this.waitingHead);
        this.waitingHead = 0;
      }
      if (w.done) continue;
      this.grantTo(w);
      return;
    }
    this.free++;
  }

  private grantTo(w: Waiter): void {
    w.done = true;
    this.live -= 1 + w.riders;
    clearTimeout(w.timer);
    w.grant();
  }

  private async acquire(onQueued?: (ride: Ride) => void): Promise<pg.PoolClient> {
    await this.takeSlot(onQueued);
    try {
      const client = await this.pool.connect();
      const release = client.release;
      // pg-pool gives each checkout its own release(); the slot comes back with it.
      client.release = ((err?: Error | boolean) => {
        client.release = release;
        release.call(client, err);
        this.giveSlot();
      }) as typeof client.release;
      // A checked-out client whose server goes away emits 'error'; the query in flight
      // rejects with it anyway, so the event itself must not crash the process.
      if (!guarded.has(client)) {
        guarded.add(client);
        client.on('error', () => undefined);
      }
      return client;
    } catch (err) {
      this.giveSlot();
      throw toUnavailable(err) ?? err;
    }
  }

  private async run<R extends pg.QueryResultRow>(client: pg.PoolClient, text: string, params?: unknown[], name?: string): Promise<pg.QueryResult<R>> {
    const started = this.onQuery ? performance.now() : 0;
    try {
      const result = await client.query<R>({ text, values: params, name });
      this.onQuery?.(text, performance.now() - started, result.rowCount);
      return result;
    } catch (err) {
      throw toUnavailable(err) ?? err;
    }
  }

  /** One statement on a pooled connection; `name` makes it a prepared statement, planned once per connection. */
  query<R extends pg.QueryResultRow = pg.QueryResultRow>(text: string, params?: unknown[], name?: string): Promise<pg.QueryResult<R>> {
    return this.queryWhenGranted<R>(() => ({ text, params, name }));
  }

  /**
   * Like query(), but the statement is built only once a connection is granted: callers
   * batching requests (src/batched-query.ts) keep adding to it while it waits for one, and
   * when it has to wait, `onQueued` gets the Ride that counts each one added in the queue.
   */
  async queryWhenGranted<R extends pg.QueryResultRow = pg.QueryResultRow>(
    build: () => { text: string; params?: unknown[]; name?: string; requests?: number }, onQueued?: (ride: Ride) => void): Promise<pg.QueryResult<R>> {
    const client = await this.acquire(onQueued);
    let broken: unknown;
    try {
      const { text, params, name, requests } = build();
      if (requests !== undefined) {
        this.batched.statements++;
        this.batched.requests += requests;
      }
      return await this.run<R>(client, text, params, name);
    } catch (err) {
      broken = isBroken(err) ? err : undefined;
      throw err;
    } finally {
      client.release(broken as Error | undefined);
    }
  }

  /** BEGIN … COMMIT on one client; ROLLBACK when `fn` throws. */
  async withTransaction<T>(fn: (q: <R extends pg.QueryResultRow = pg.QueryResultRow>(text: string, params?: unknown[]) => Promise<pg.QueryResult<R>>) => Promise<T>): Promise<T> {
    const client = await this.acquire();
    let broken: unknown;
    try {
      await this.run(client, 'BEGIN');
      const result = await fn((text, params) => this.run(client, text, params));
      await this.run(client, 'COMMIT');
      return result;
    } catch (err) {
      try {
        await client.query('ROLLBACK');
      } catch (rollbackErr) {
        broken = rollbackErr;
      }
      if (isBroken(err)) broken = err;
      throw err;
    } finally {
      client.release(broken as Error | undefined);
    }
  }

  /** A pooled client for work spanning several statements; the caller must release it. */
  connect(): Promise<pg.PoolClient> {
    return this.acquire();
  }

  /**
   * A connection of its own, outside the pool and without the pool's read timeout, for
   * long streaming work: node-postgres arms its query_timeout for a cursor's whole life
   * and never disarms it, which would fail a long audit and hold the process open.
   */
  async withDedicatedClient<T>(fn: (client: pg.Client) => Promise<T>): Promise<T> {
    const { connectionString, application_name, statement_timeout } = this.pool.options as pg.PoolConfig;
    try {
      return await withClient({ connectionString, application_name, statement_timeout }, fn);
    } catch (err) {
      throw toUnavailable(err) ?? err;
    }
  }

  /**
   * Opens every pooled connection now (before traffic), so the first burst of requests does
   * not pay for connection set-up. Failures are ignored: the database may come up later.
   */
  async warm(): Promise<number> {
    const clients = await Promise.allSettled(Array.from({ length: this.pool.options.max }, () => this.pool.connect()));
    let opened = 0;
    for (const c of clients) {
      if (c.status === 'fulfilled') {
        opened++;
        c.value.release();
      }
    }
    return opened;
  }

  /**
   * LISTEN on `channel` over a connection of its own, kept open: it reconnects after any
   * loss, and a heartbeat query every `heartbeatMs` (answered within that time) detects a
   * connection that died silently. `state(false)` is called whenever notifications may
   * have been missed (lost, or not yet listening); `state(true)` once LISTEN is in place.
   */
  listen(channel: string, handlers: { message(payload: string): void; state(listening: boolean): void }, opts: { heartbeatMs?: number; retryMs?: number } = {}): ChannelListener {
    const { connectionString, application_name } = this.pool.options as pg.PoolConfig;
    const heartbeatMs = opts.heartbeatMs ?? 1000;
    const retryMs = opts.retryMs ?? 250;
    let closed = false;
    let listening = false;
    let client: pg.Client | undefined;
    let heartbeat: NodeJS.Timeout | undefined;
    let retry: NodeJS.Timeout | undefined;
    const setListening = (v: boolean) => {
      if (listening === v) return;
      listening = v;
      handlers.state(v);
    };
    const lost = (c: pg.Client) => {
      if (c !== client) return;
      client = undefined;
      clearInterval(heartbeat);
      setListening(false);
      c.end().catch(() => undefined);
      if (!closed) {
        retry = setTimeout(connect, retryMs);
        retry.unref();
      }
    };
    const connect = async () => {
      if (closed) return;
      const c = new pg.Client({
        connectionString, application_name: `${application_name ?? 'atelier-reviews'}-listener`,
        query_timeout: heartbeatMs, connectionTimeoutMillis: Math.max(heartbeatMs, 2000),
      });
      client = c;
      c.on('error', () => lost(c));
      c.on('end', () => lost(c));
      c.on('notification', (n) => {
        if (n.channel === channel) handlers.message(n.payload ?? '');
      });
      try {
        await c.connect();
        await c.query(`LISTEN ${ident(channel)}`);
        if (client !== c) return;
        heartbeat = setInterval(() => void c.query('SELECT 1').catch(() => lost(c)), heartbeatMs);
        heartbeat.unref();
        setListening(true);
      } catch {
        lost(c);
      }
    };
    void connect();
    return {
      get backendPid() {
        return (client as unknown as { processID?: number } | undefined)?.processID;
      },
      async close() {
        closed = true;
        clearTimeout(retry);
        clearInterval(heartbeat);
        const c = client;
        client = undefined;
        listening = false;
        await c?.end().catch(() => undefined);
      },
    };
  }

  async ping(): Promise<void> {
    await this.query('SELECT 1');
  }

  async close(): Promise<void> {
    await this.pool.end();
  }
}

/** A client whose connection failed must be destroyed, not returned to the pool. */
function isBroken(err: unknown): boolean {
  const u = toUnavailable(err);
  const code = (u?.cause as { code?: string } | undefined)?.code;
  return u !== undefined && code !== '57014' && code !== 'AT503';
}

/** Quotes an identifier that came from code (a database name), never from a request. */
export function ident(name: string): string {
  return '"' + name.replace(/"/g, '""') + '"';
}

/** Runs `fn` with a single, unpooled connection (admin work: create database, migrations). */
export async function withClient<T>(config: string | pg.ClientConfig, fn: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client(typeof config === 'string' ? { connectionString: config } : config);
  client.on('error', () => undefined);
  await client.connect();
  try {
    return await fn(client);
  } finally {
    await client.end().catch(() => undefined);
  }
}

export { pg };

// Db: the pool (behind its admission queue), queries, transactions on one client, warm-up,
// and the LISTEN connection; "the database is down/slow/saturated" becomes a 503.
import pg from 'pg';
import { Admission, type Ride } from './admission';
import { withClient } from './connection';
import { isBroken, toUnavailable } from './errors';
import { listenChannel, type ChannelHandlers, type ChannelListener } from './listen';

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

export class Db {
  private current: pg.Pool;
  private readonly onQuery?: DbOptions['onQuery'];
  /** One slot per pooled connection, and a bounded FIFO of requests waiting for one (src/db/admission.ts). */
  readonly admission: Admission;
  /** Batched statements run (queryWhenGranted with `requests`) and the requests they answered. */
  readonly batched = { statements: 0, requests: 0 };
  /** LISTEN connections to move when the pool moves to another server (retarget). */
  private readonly listeners = new Set<ChannelListener>();

  constructor(private readonly opts: DbOptions) {
    this.admission = new Admission(opts.poolSize ?? 10, opts.maxQueue ?? 1000, opts.queueTimeoutMs ?? 250);
    this.onQuery = opts.onQuery;
    this.current = this.createPool(opts.connectionString);
  }

  private createPool(connectionString: string): pg.Pool {
    const opts = this.opts;
    const pool = new pg.Pool({
      connectionString,
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
    pool.on('error', () => undefined);
    // Nor one losing it between its login and its checkout: pg-pool hands a new client over
    // with no 'error' listener, and a FATAL in the same packet as the login's end (a
    // backend terminated as it starts) was an unhandled 'error' event (found by the nemesis).
    // Listening from its creation covers every later moment too; the query in flight, if
    // any, rejects with the error anyway.
    pool.on('connect', (client) => client.on('error', () => undefined));
    return pool;
  }

  /** The pg pool (it changes when the Db is retargeted). */
  get pool(): pg.Pool {
    return this.current;
  }

  /** The server this Db talks to now. */
  get connectionString(): string {
    return (this.current.options as pg.PoolConfig).connectionString!;
  }

  /**
   * Moves to another server (a promoted standby, src/db/replicas.ts): new statements and
   * LISTEN connections go there; statements in flight finish on the old pool, which ends
   * once they are released. The admission slots carry over.
   */
  retarget(connectionString: string): void {
    if (connectionString === this.connectionString) return;
    const old = this.current;
    this.current = this.createPool(connectionString);
    old.end().catch(() => undefined);
    for (const l of this.listeners) l.reconnect();
  }

  get queueLength(): number {
    return this.admission.queueLength;
  }

  /** 'queued' while requests wait for a connection, 'taken' while every one is taken and none waits, else false. */
  get pressure(): 'queued' | 'taken' | false {
    return this.admission.queueLength > 0 ? 'queued' : this.admission.freeSlots === 0 ? 'taken' : false;
  }

  private async acquire(onQueued?: (ride: Ride) => void): Promise<pg.PoolClient> {
    await this.admission.take(onQueued);
    try {
      const client = await this.pool.connect();
      const release = client.release;
      // pg-pool gives each checkout its own release(); the slot comes back with it.
      client.release = ((err?: Error | boolean) => {
        client.release = release;
        release.call(client, err);
        this.admission.give();
      }) as typeof client.release;
      return client;
    } catch (err) {
      this.admission.give();
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
   * LISTEN on `channel` over a connection of its own, kept open (src/db/listen.ts).
   */
  listen(channel: string, handlers: ChannelHandlers, opts: { heartbeatMs?: number; retryMs?: number } = {}): ChannelListener {
    const { application_name } = this.pool.options as pg.PoolConfig;
    const listener = listenChannel({ connectionString: () => this.connectionString, application_name }, channel, handlers, opts);
    this.listeners.add(listener);
    const close = listener.close.bind(listener);
    listener.close = async () => {
      this.listeners.delete(listener);
      await close();
    };
    return listener;
  }

  async ping(): Promise<void> {
    await this.query('SELECT 1');
  }

  async close(): Promise<void> {
    await this.current.end();
  }
}

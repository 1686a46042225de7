// Process entry point: configuration, database, listen, and a graceful shutdown
// (stop accepting, drain in-flight requests, close the pool, stop embedded PostgreSQL).
import cluster from 'node:cluster';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import { createApp, createHttpServer } from './app';
import { ConfigError, loadConfig, workerSettings, type Config } from './config';
import { parseCorsOrigins } from './http/cors';
import { createMetrics } from './http/metrics';
import { ReadBudget } from './reviews/read-budget';
import { MetaMemory } from './reviews/meta-memory';
import { ReviewMemory } from './reviews/review-memory';
import { Db } from './db';
import { findPrimary, ReplicaSet } from './db/replicas';
import { followChanges } from './response-cache/invalidation-feed';
import { ResponseCache } from './response-cache/response-cache';
import { prepareDatabase } from './etl/sample';
import { TrustedProxies } from './lib/client-address';

const log = (line: string) => console.log(`[reviews${cluster.isWorker ? ` worker ${cluster.worker!.id}` : ''}] ${line}`);

/** The meta table's settings from the configuration (META_MEMORY_*). */
export function metaMemorySettings(config: Config) {
  return { maxBytes: config.META_MEMORY_MB * 2 ** 20, maxAgeMs: config.META_MEMORY_MAX_AGE_S * 1000, readBack: config.META_MEMORY_READ_BACK, sweepAfterMs: config.META_MEMORY_READ_BACK_AFTER_S * 1000 };
}

/** The review table's settings from the configuration (REVIEW_MEMORY_*). */
export function reviewMemorySettings(config: Config) {
  return { maxBytes: config.REVIEW_MEMORY_MB * 2 ** 20, maxAgeMs: config.REVIEW_MEMORY_MAX_AGE_S * 1000, refreshMaxReviews: config.REVIEW_MEMORY_REFRESH_MAX, sweepAfterMs: config.REVIEW_MEMORY_READ_BACK_AFTER_S * 1000 };
}

export async function main(config: Config): Promise<void> {
  const workers = config.WORKERS === 0 ? os.availableParallelism() : config.WORKERS;
  if (workers > 1 && cluster.isPrimary) return primary(config, workers);
  return serve(config);
}

/**
 * With WORKERS > 1: the primary resolves the database once (starting the embedded one
 * if needed) and forks workers that share the port; it restarts a worker that dies and,
 * on SIGTERM/SIGINT, lets every worker drain before stopping the database.
 */
async function primary(config: Config, workers: number): Promise<void> {
  const database = await prepareDatabase(config, log);
  let closing = false;
  const fork = () => cluster.fork({ DATABASE_URL: database.url, ...workerSettings(config, workers) });
  for (let i = 0; i < workers; i++) fork();
  cluster.on('exit', (worker, code, signal) => {
    if (closing) return;
    log(`worker ${worker.id} exited (code ${code}, signal ${signal}); starting another`);
    fork();
  });
  log(`${workers} workers on port ${config.PORT}`);
  const shutdown = async (signal: NodeJS.Signals) => {
    if (closing) return;
    closing = true;
    log(`${signal}: stopping workers`);
    await Promise.all(Object.values(cluster.workers ?? {}).map((w) => new Promise<void>((resolve) => {
      if (!w || w.isDead()) return resolve();
      w.once('exit', () => resolve());
      w.process.kill('SIGTERM');
    })));
    await database.stop().catch((err) => log(`stopping embedded PostgreSQL failed: ${err}`));
    log('stopped');
    process.exit(0);
  };
  process.on('SIGTERM', () => void shutdown('SIGTERM'));
  process.on('SIGINT', () => void shutdown('SIGINT'));
}

async function serve(config: Config): Promise<void> {
  // With standbys, DATABASE_URL may name a node demoted since (after a failover): migrate
  // and write on the node that is the primary now, when one answers as such.
  const configured = config.DATABASE_URL;
  if (configured && config.DATABASE_REPLICA_URLS.length) {
    const found = await findPrimary([configured, ...config.DATABASE_REPLICA_URLS], config.PG_CONNECT_TIMEOUT_MS);
    if (found && found !== configured) {
      log('DATABASE_URL names a standby now; the primary is another configured node (a failover happened): using it');
      config = { ...config, DATABASE_URL: found };
    }
  }
  const database = await prepareDatabase(config, log);

  const dbOptions = {
    connectionString: database.url,
    maxQueue: config.PG_POOL_QUEUE,
    queueTimeoutMs: config.PG_QUEUE_TIMEOUT_MS,
    connectTimeoutMs: config.PG_CONNECT_TIMEOUT_MS,
    statementTimeoutMs: config.PG_STATEMENT_TIMEOUT_MS,
    genericPlans: true,
  };
  const db = new Db({ ...dbOptions, poolSize: config.PG_POOL_SIZE });
  // Each configured node has a pool for reads while it is a standby (opened on first use);
  // the primary's pool (db) follows a promotion (src/db/replicas.ts).
  const nodeDb = (url: string) => new Db({ ...dbOptions, connectionString: url, poolSize: config.PG_POOL_SIZE });
  let cache: ResponseCache | undefined;
  const replicas = config.DATABASE_REPLICA_URLS.length
    ? new ReplicaSet(db, config.DATABASE_REPLICA_URLS.map((url, i) => ({ name: `replica${i + 1}`, db: nodeDb(url) })), {
      maxLagBytes: config.REPLICA_MAX_LAG_BYTES, maxLagSeconds: config.REPLICA_MAX_LAG_S, log,
      primaryNode: { name: 'database-url', db: nodeDb(configured ?? database.url) },
      onPrimaryChange: () => cache?.invalidateAll(),
    })
    : undefined;
  await replicas?.start();
  // The write lane: its own connections and admission queue.
  const writeDb = config.PG_WRITE_POOL_SIZE > 0 ? new Db({ ...dbOptions, poolSize: config.PG_WRITE_POOL_SIZE, application: 'atelier-reviews-writes' }) : undefined;
  // Untrusted until its change feed listens: until then every read goes to the database.
  cache = new ResponseCache({ maxBytes: config.RESPONSE_CACHE_MB * 2 ** 20, ttlMs: config.RESPONSE_CACHE_TTL_S * 1000, trusted: false });
  const feed = cache.enabled || replicas ? followChanges(db, cache, log, { fence: replicas }) : undefined;
  // Every product's meta in memory: only with a change feed to keep it exact.
  const metaMemory = feed && config.META_MEMORY_MB > 0 ? new MetaMemory({ db, cache, log, ...metaMemorySettings(config) }) : undefined;
  const reviewMemory = feed && config.REVIEW_MEMORY_MB > 0 ? new ReviewMemory({ db, cache, log, ...reviewMemorySettings(config) }) : undefined;
  // One set of trusted proxies for the log line and the budget: it says once when nginx is missing from it.
  const trustedProxies = new TrustedProxies(config.TRUSTED_PROXIES, log);
  const app = createApp(db, { logFormat: config.LOG_FORMAT, trustedProxies, compression: config.COMPRESSION, cache, readYourWritesSeconds: config.READ_YOUR_WRITES_S,
    cors: parseCorsOrigins(config.CORS_ORIGINS),
    writeDb,
    replicas,
    metaMemory,
    reviewMemory,
    metrics: config.METRICS ? createMetrics({ db, cache, replicas, metaMemory, reviewMemory }) : undefined,
    readBudget: config.READ_BUDGET_KB_S > 0
      ? new ReadBudget({ bytesPerSecond: config.READ_BUDGET_KB_S * 1024, burstBytes: config.READ_BUDGET_KB_S * 1024 * 4, trustedProxies })
      : undefined,
  });
  metaMemory?.start();
  reviewMemory?.start();
  const warm = await db.warm();
  await writeDb?.warm();
  if (warm < config.PG_POOL_SIZE) log(`opened ${warm} of ${config.PG_POOL_SIZE} database connections; the rest open on demand`);

  let closing = false;
  const server = createHttpServer((req, res) => {
    if (closing) {
      // While draining, tell keep-alive clients to reconnect (to another host) after this
      // response, and health checks that this host is leaving.
      res.setHeader('Connection', 'close');
      if (req.url === '/readyz') {
        res.writeHead(503, { 'Content-Type': 'application/json; charset=utf-8', 'Retry-After': '1' });
        res.end('{"status":"draining"}');
        return;
      }
    }
    app(req, res);
  });
  // Slightly above typical proxy idle timeouts, so nginx closes first and never reuses a dead socket.
  server.keepAliveTimeout = 65_000;
  server.headersTimeout = 66_000;
  server.requestTimeout = 30_000;

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(config.PORT, config.HOST, resolve);
  });
  const { port } = server.address() as AddressInfo;
  const shown = config.HOST === '0.0.0.0' || config.HOST === '::' ? 'localhost' : config.HOST;
  log(`listening on http://${shown}:${port} (database: ${database.embedded ? 'embedded PostgreSQL' : 'DATABASE_URL'})`);
  log(`try: curl 'http://${shown}:${port}/reviews?product_id=2&sort=newest' and curl 'http://${shown}:${port}/reviews/meta?product_id=2'`);

  const shutdown = async (signal: string) => {
    if (closing) return;
    closing = true;
    // First, keep listening for DRAIN_GRACE_MS while every answer says Connection: close and
    // /readyz says 503: a proxy's connections to this host end one by one after a response
    // (never under a request in flight) and the proxy moves to the other hosts. Then stop
    // accepting: a proxy's new connections are refused, which it retries elsewhere, since
    // nothing was sent.
    if (config.DRAIN_GRACE_MS > 0) {
      log(`${signal}: closing connections after their next response for ${config.DRAIN_GRACE_MS} ms`);
      await new Promise((r) => setTimeout(r, config.DRAIN_GRACE_MS));
    }
    log(`${signal}: draining requests (at most ${config.SHUTDOWN_TIMEOUT_MS} ms)`);
    const forced = setTimeout(() => {
      log(`drain limit (${config.SHUTDOWN_TIMEOUT_MS} ms) reached: closing the connections still open`);
      server.closeAllConnections();
    }, config.SHUTDOWN_TIMEOUT_MS);
    forced.unref();
    // Keep-alive connections go idle as their last response is sent: close them as they do.
    const sweeper = setInterval(() => server.closeIdleConnections(), 50);
    await new Promise<void>((resolve) => {
      server.close(() => resolve());
      server.closeIdleConnections();
    });
    clearInterval(sweeper);
    clearTimeout(forced);
    metaMemory?.close();
    reviewMemory?.close();
    await feed?.close();
    await db.close().catch(() => undefined);
    await writeDb?.close().catch(() => undefined);
    replicas?.stop();
    for (const r of replicas?.nodes ?? []) await r.db.close().catch(() => undefined);
    await database.stop().catch((err) => log(`stopping embedded PostgreSQL failed: ${err}`));
    log('stopped');
    process.exit(0);
  };
  process.on('SIGTERM', () => void shutdown('SIGTERM'));
  // A worker ignores Ctrl-C (the terminal signals the whole group): its primary tells it when.
  process.on('SIGINT', () => void (cluster.isWorker ? undefined : shutdown('SIGINT')));
}

if (require.main === module) {
  let config: Config;
  try {
    config = loadConfig();
  } catch (err) {
    console.error(err instanceof ConfigError ? err.message : err);
    process.exit(1);
  }
  main(config).catch((err) => {
    console.error(`[reviews] failed to start: ${err instanceof Error ? err.message : err}`);
    process.exit(1);
  });
}

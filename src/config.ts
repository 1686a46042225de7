// Reads the service's configuration from the environment (and a local .env) once,
// and refuses to start with one clear line per bad value.
import 'dotenv/config';
import { z } from 'zod';
import { parseCorsOrigins } from './http/cors';
import { DEFAULT_TRUSTED_PROXIES, isAddressOrRange } from './lib/client-address';

const onOff = z
  .enum(['on', 'off', 'true', 'false', '1', '0'])
  .transform((v) => v === 'on' || v === 'true' || v === '1');

const int = (min: number, max: number) =>
  z
    .string()
    .regex(/^\d+$/, 'must be a whole number')
    .transform(Number)
    .pipe(z.number().min(min, `must be at least ${min}`).max(max, `must be at most ${max}`));

const schema = z.object({
  PORT: int(0, 65535).default(3000),
  HOST: z.string().min(1).default('0.0.0.0'),
  DATABASE_URL: z
    .string()
    .regex(/^postgres(ql)?:\/\//, 'must be a postgres:// or postgresql:// URL')
    .optional(),
  // Connections per host. Small on purpose: concurrent cold reads share statements while
  // they wait for one (src/batched-query.ts), so fewer connections mean bigger batches.
  // Measured on 2 cores (cold GET /reviews, wrk -c64): 4 → 9,472 rps, 10 → 5,858.
  PG_POOL_SIZE: int(1, 1000).default(4),
  // Connections of a write lane: POST, helpful and report get a pool and an admission queue
  // of their own, so under overload a write is not shed behind queued cold reads. Off (0)
  // by default: at 1000 req/s of the mix the writes' p99 did not come from the queue (lane
  // off 13.9 / 13.3 ms, on 16.5 / 16.2 ms, alternating runs), and at max rate the lane cost
  // ~6 % (9,226 / 9,638 rps off, 8,859 / 8,802 on). See docs/benchmarks.md.
  PG_WRITE_POOL_SIZE: int(0, 1000).default(0),
  PG_POOL_QUEUE: int(0, 100000).default(1000),
  // Hot standbys for reads (comma-separated URLs; empty = reads on DATABASE_URL only), and
  // how far behind the primary one may be and still serve (docs/cluster.md, "Replicas").
  DATABASE_REPLICA_URLS: z.string().default('').transform((v) => v.split(',').map((s) => s.trim()).filter(Boolean))
    .pipe(z.array(z.string().regex(/^postgres(ql)?:\/\//, 'each must be a postgres:// URL'))),
  REPLICA_MAX_LAG_BYTES: int(0, 2 ** 40).default(16 * 2 ** 20),
  REPLICA_MAX_LAG_S: int(0, 86400).default(10),
  // Longest wait for a database connection before a 503 (see docs/reliability.md).
  PG_QUEUE_TIMEOUT_MS: int(1, 60000).default(250),
  PG_CONNECT_TIMEOUT_MS: int(100, 600000).default(2000),
  PG_STATEMENT_TIMEOUT_MS: int(100, 600000).default(5000),
  EMBEDDED_PG_PORT: int(1024, 65535).default(54329),
  EMBEDDED_PG_DIR: z.string().min(1).default('.data/pg'),
  // json: one JSON line per request with its request id (docs/operations.md); text: morgan's dev.
  LOG_FORMAT: z.enum(['off', 'json', 'text', 'dev', 'combined', 'common', 'short', 'tiny']).default('dev'),
  // Off by default: nginx compresses for clients; the middleware costs ~15 % of a host's
  // throughput even on responses too small to compress (measured with wrk on meta).
  COMPRESSION: onOff.default(false),
  SHUTDOWN_TIMEOUT_MS: int(0, 600000).default(10000),
  // On SIGTERM, serve this long with Connection: close before refusing new connections, so
  // a proxy leaves this host without a request caught on a closing connection (docs/operations.md,
  // "Runbook": rolling restarts). 0 (the default) stops accepting at once.
  DRAIN_GRACE_MS: int(0, 600000).default(0),
  // GET /metrics (Prometheus) and the per-request bookkeeping behind it.
  METRICS: onOff.default(true),
  // Apply pending migrations at start (with DATABASE_URL). Off in production, where the
  // hosts' role may not change the schema and `npm run migrate` runs as the owner first.
  MIGRATE_ON_START: onOff.default(true),
  // Node processes serving one port (node:cluster); "auto" = one per core.
  WORKERS: z
    .string()
    .regex(/^(auto|\d+)$/, 'must be a whole number or "auto"')
    .transform((v) => (v === 'auto' ? 0 : Number(v)))
    .pipe(z.number().max(64, 'must be at most 64'))
    .default(1),
  // The host's response cache (see docs/architecture.md): memory bound in MiB (0 = off),
  // the longest life of an entry behind the exact invalidation, and how long a writer's
  // reads bypass nginx's cache (at least nginx's TTL).
  RESPONSE_CACHE_MB: int(0, 65536).default(64),
  RESPONSE_CACHE_TTL_S: int(1, 86400).default(300),
  // Every product's meta aggregates held in memory (MiB at most; 0 = off): 89 MiB at full
  // scale, loaded in the background and kept exact by the same change feed.
  META_MEMORY_MB: int(0, 65536).default(512),
  // Longest a loaded table is answered from (reloaded at 60-80 % of it, at random): the backstop behind the
  // exact invalidation, as RESPONSE_CACHE_TTL_S is for the cache, but longer because a load
  // costs seconds of CPU (full scale: ~1.7 s a host, ~4.8 s PostgreSQL).
  META_MEMORY_MAX_AGE_S: int(300, 86400).default(3600),
  // A changed product's aggregates are read back into memory by its next meta read (instead
  // of being read from the database until the next load); off: only loads fill the table.
  META_MEMORY_READ_BACK: onOff.default(true),
  // As REVIEW_MEMORY_READ_BACK_AFTER_S, for meta (with META_MEMORY_READ_BACK on): a changed
  // product no change has touched for this many seconds is read back in the background, so
  // the written-once products do not pile up to the 5 % reload, whose load on every host at
  // once failed knee steps (docs/benchmarks.md, seventeenth session). 0 = only when read.
  META_MEMORY_READ_BACK_AFTER_S: int(0, 86400).default(30),
  // Every visible review held in memory for GET /reviews (MiB at most; 0 = off): ~3 GiB at
  // full scale (the reviews' JSON), loaded in the background, kept exact by the same change
  // feed; a table larger than this is not loaded (lists are then read from the database).
  REVIEW_MEMORY_MB: int(0, 1048576).default(4096),
  // As META_MEMORY_MAX_AGE_S, for the reviews, but 6 h: a load at full scale takes the host
  // ~4-5 minutes (paced to half of a connection) and drops the table first when two would not
  // fit, and changed products are read back when read (REVIEW_MEMORY_REFRESH_MAX).
  REVIEW_MEMORY_MAX_AGE_S: int(300, 86400).default(21600),
  // A changed product is read back into memory by its next read (instead of waiting for the
  // next load) when the table holds at most this many of its reviews (0 = never).
  REVIEW_MEMORY_REFRESH_MAX: int(0, 1000000).default(64),
  // The reviews' table: a changed product that no change has touched for this many seconds is
  // read back in the background, read or not (a few a time, readers' read-backs first), so the
  // products written once and seldom read do not pile up to the reload threshold (5 % of the
  // products dirty: a reload re-reads every review, and drops the table first when two would
  // not fit). 0 = only when read.
  REVIEW_MEMORY_READ_BACK_AFTER_S: int(0, 86400).default(30),
  READ_YOUR_WRITES_S: int(1, 3600).default(10),
  // Per client (address) and host: KiB per second of bodies rendered on read misses, the
  // debt allowed before its misses get a 429 being four seconds' worth (0 = no budget).
  // A storefront page renders ~2 KiB; a count=1000 page of a popular product ~290 KiB.
  READ_BUDGET_KB_S: int(0, 1048576).default(2048),
  // Proxies (nginx) whose X-Forwarded-For names the client: comma-separated addresses or
  // CIDR ranges. Behind an nginx on another machine, its address (docs/cluster.md).
  TRUSTED_PROXIES: z.string().default(DEFAULT_TRUSTED_PROXIES)
    .transform((v) => v.split(',').map((s) => s.trim()).filter(Boolean))
    .refine((list) => list.every(isAddressOrRange), { message: 'takes comma-separated IP addresses or CIDR ranges, e.g. 10.0.0.5,10.1.0.0/24' }),
  // Origins whose pages may call the API (comma-separated; "*" lets any page read, never
  // write); empty = no cross-origin access. See docs/cluster.md.
  CORS_ORIGINS: z
    .string()
    .default('')
    .superRefine((v, ctx) => {
      try {
        parseCorsOrigins(v);
      } catch (err) {
        ctx.addIssue({ code: 'custom', message: (err as Error).message });
      }
    }),
  SAMPLE_SCALE: z
    .string()
    .regex(/^\d*\.?\d+$/, 'must be a decimal number')
    .transform(Number)
    .default(0.002),
});

export type Config = z.output<typeof schema>;

export class ConfigError extends Error {}

/** Parses an environment (process.env by default); throws ConfigError naming every bad variable. */
export function loadConfig(env: NodeJS.ProcessEnv = process.env): Config {
  const present = Object.fromEntries(Object.entries(env).filter(([, v]) => v !== undefined && v !== ''));
  const parsed = schema.safeParse(present);
  if (!parsed.success) {
    const lines = parsed.error.issues.map((i) => `  ${i.path.join('.')}: ${i.message} (got ${JSON.stringify(present[String(i.path[0])])})`);
    throw new ConfigError(`Invalid configuration:\n${lines.join('\n')}`);
  }
  return parsed.data;
}

/**
 * What a worker of a host with `workers` processes is told on top of the host's settings:
 * REVIEW_MEMORY_MB bounds the host, so each worker (which holds a table of its own) gets an
 * equal share of it.
 */
export function workerSettings(config: Config, workers: number): Record<string, string> {
  return { WORKERS: '1', REVIEW_MEMORY_MB: String(Math.floor(config.REVIEW_MEMORY_MB / workers)) };
}

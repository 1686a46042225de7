// Renders nginx/nginx.conf.template (+ reviews-read.conf.template) for a set of Node
// hosts, into a prefix folder that also holds nginx's pid, logs, temp files and cache.
import fs from 'node:fs';
import path from 'node:path';
import { fromRoot } from '../lib/paths';

export interface NginxOptions {
  /** Folder for the rendered config, pid file, logs, temp paths and cache. */
  prefix: string;
  /** What nginx listens on, e.g. "127.0.0.1:8080" or "80". */
  listen: string;
  /** The Node hosts, "host:port" each. */
  upstreams: string[];
  /** How long a 200 for a read is served from cache (nginx time, e.g. "5s"). */
  cacheTtl?: string;
  /** Per-client write rate (nginx rate, e.g. "10r/s"); the burst allowed above it: limitBurst. */
  writeRate?: string;
  /** Per-client read rate (nginx rate, e.g. "200r/s"); the burst allowed above it: limitBurst. */
  readRate?: string;
  /** Reads in progress at once per client address (default DEFAULT_READ_CONCURRENCY with the default read rate, else none; 0: none). */
  readConcurrency?: number;
  workerProcesses?: string;
  /** "off" or a file path. */
  accessLog?: string;
  /** The origins the hosts allow (CORS_ORIGINS without "*"): part of the read cache key. */
  corsOrigins?: string[];
  /**
   * HTTPS: certificate and key files (PEM) and what to listen on (e.g. "443" or
   * "127.0.0.1:8443"). The plain HTTP listener then only redirects to HTTPS.
   */
  tls?: { cert: string; key: string; listen: string };
  /** nginx's proxy cache for reads (default on); off makes every read reach a host. */
  readCache?: boolean;
  /** Connections to each host at most, per nginx worker (default 64). */
  hostMaxConns?: number;
  /** Size of the read cache's keys zone (nginx size, e.g. "32m"; 1 MB holds ~8k keys). */
  cacheKeysZone?: string;
  /** Folder of the proxy cache (default PREFIX/cache); a tmpfs folder is much cheaper per miss. */
  cacheDir?: string;
  /** Worker user; when running as root locally the workers must be able to write the prefix. */
  user?: string;
  /** Addresses or CIDR ranges exempt from the per-client limits (a load generator). */
  limitExempt?: string[];
  /** Run in the foreground (managed by a parent process). */
  foreground?: boolean;
}

export const DEFAULT_CACHE_TTL = '5s';
export const DEFAULT_CACHE_KEYS_ZONE = '32m';
export const DEFAULT_WRITE_RATE = '10r/s';
export const DEFAULT_HOST_MAX_CONNS = 64;
/** Generous: a storefront page makes a handful of reads; many shoppers may share one address. */
export const DEFAULT_READ_RATE = '200r/s';
/**
 * Reads in progress at once per client address (issue 28: one client's concurrent large
 * renders took the shoppers' tail). A browser opens at most 6 connections to a host, and a
 * cache hit is in progress for microseconds, so shoppers sharing an address rarely meet it.
 */
export const DEFAULT_READ_CONCURRENCY = 8;

const HOST_PORT = /^[\w.-]+:\d{1,5}$|^\[[0-9a-f:]+\]:\d{1,5}$/i;
const DURATION = /^\d+(ms|s|m)?$/;

/** The TLS part of the server block: modern protocols and ciphers, HTTP/2, HSTS, HTTP → HTTPS. */
function tlsServer(t: { cert: string; key: string; listen: string }): string {
  const port = /(\d+)$/.exec(t.listen)?.[1] ?? '443';
  return [
    `    listen ${t.listen} ssl http2 reuseport backlog=4096;`,
    `    ssl_certificate ${path.resolve(t.cert)};`,
    `    ssl_certificate_key ${path.resolve(t.key)};`,
    '    # Mozilla\'s "intermediate" profile: TLS 1.2 and 1.3, forward-secret AEAD ciphers only.',
    '    ssl_protocols TLSv1.2 TLSv1.3;',
    '    ssl_ciphers ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305;',
    '    ssl_prefer_server_ciphers off;',
    '    ssl_session_cache shared:TLS:10m;',
    '    ssl_session_timeout 1d;',
    '    ssl_session_tickets off;',
    '    # Browsers remember to use HTTPS only (two years).',
    '    add_header Strict-Transport-Security "max-age=63072000" always;',
    '    # Plain HTTP only redirects (the storefront must call over HTTPS: mixed content).',
    '    if ($scheme = http) {',
    `      return 301 https://$host${port === '443' ? '' : `:${port}`}$request_uri;`,
    '    }',
  ].join('\n');
}

const RATE = /^(\d+)r\/([sm])$/;

/**
 * The burst a per-client limit of `rate` allows above it: two seconds of the rate, at least
 * 20 requests (the default 10 writes/s: 20; 200 reads/s: 400; 30r/m: 20). nginx does not
 * advance its clock within one pass of its event loop, so one client's requests handled in
 * the same millisecond each count whole against the burst whatever the rate: a raised rate
 * (one address standing for many clients, a load generator) needs a burst that grows with
 * it, or its requests arriving together after any stall are refused.
 */
export function limitBurst(rate: string): number {
  const m = RATE.exec(rate);
  if (!m) throw new Error(`rate "${rate}" is not like 10r/s`);
  const perSecond = Number(m[1]) / (m[2] === 'm' ? 60 : 1);
  return Math.max(20, Math.ceil(2 * perSecond));
}

export function renderNginx(o: NginxOptions): Record<'nginx.conf' | 'reviews-read.conf', string> {
  if (o.upstreams.length === 0) throw new Error('at least one upstream host is required');
  for (const u of o.upstreams) if (!HOST_PORT.test(u)) throw new Error(`upstream "${u}" is not host:port`);
  const ttl = o.cacheTtl ?? DEFAULT_CACHE_TTL;
  if (!DURATION.test(ttl)) throw new Error(`cache TTL "${ttl}" is not an nginx duration like 5s`);
  const keysZone = o.cacheKeysZone ?? DEFAULT_CACHE_KEYS_ZONE;
  if (!/^\d+[km]$/.test(keysZone)) throw new Error(`cache keys zone "${keysZone}" is not an nginx size like 32m`);
  const rate = o.writeRate ?? DEFAULT_WRITE_RATE;
  if (!RATE.test(rate)) throw new Error(`write rate "${rate}" is not like 10r/s`);
  const readRate = o.readRate ?? DEFAULT_READ_RATE;
  if (!RATE.test(readRate)) throw new Error(`read rate "${readRate}" is not like 200r/s`);
  // A raised read rate means one address stands for many clients (a load generator): no
  // per-client concurrency limit then, unless one is given.
  const readConcurrency = o.readConcurrency ?? (readRate === DEFAULT_READ_RATE ? DEFAULT_READ_CONCURRENCY : 0);
  if (!Number.isInteger(readConcurrency) || readConcurrency < 0) throw new Error(`read concurrency "${readConcurrency}" is not a whole number (0: no limit)`);
  const prefix = path.resolve(o.prefix);
  const maxConns = o.hostMaxConns ?? DEFAULT_HOST_MAX_CONNS;
  if (!Number.isInteger(maxConns) || maxConns < 1) throw new Error(`host max connections "${maxConns}" is not a positive integer`);
  const values: Record<string, string> = {
    PREFIX: prefix,
    CACHE_DIR: path.resolve(o.cacheDir ?? path.join(prefix, 'cache')),
    LISTEN: o.listen,
    UPSTREAM_SERVERS: o.upstreams.map((u) => `    server ${u} max_fails=1 fail_timeout=2s max_conns=${maxConns};`).join('\n'),
    HOST_MAX_CONNS: String(maxConns),
    READ_CACHE: o.readCache === false ? 'off' : 'reviews_cache',
    CORS_ORIGIN_MAP: (o.corsOrigins ?? []).filter((x) => x !== '*').map((x) => {
      if (!/^https?:\/\/[\w.:[\]-]+$/.test(x)) throw new Error(`CORS origin "${x}" is not an origin like https://shop.example.com`);
      // A case-sensitive regex (nginx matches map strings ignoring case).
      return `    "~^${x.replace(/[.[\]\\^$|?*+(){}]/g, (c) => `\\${c}`)}$" "${x}";`;
    }).join('\n'),
    TLS_SERVER: o.tls ? tlsServer(o.tls) : '',
    CACHE_TTL: ttl,
    CACHE_KEYS_ZONE: keysZone,
    WRITE_RATE: rate,
    READ_RATE: readRate,
    READ_BURST: String(limitBurst(readRate)),
    WRITE_BURST: String(limitBurst(rate)),
    READ_CONCURRENCY: readConcurrency ? `limit_conn read_conns ${readConcurrency};` : '# no per-client concurrency limit (read rate raised for a load generator)',
    WORKER_PROCESSES: o.workerProcesses ?? 'auto',
    ACCESS_LOG: !o.accessLog || o.accessLog === 'off' ? 'off' : `${o.accessLog} reviews_json`,
    LIMIT_EXEMPT: (o.limitExempt ?? []).map((a) => {
      if (!/^[0-9a-f.:]+(\/\d{1,3})?$/i.test(a)) throw new Error(`--limit-exempt takes addresses or CIDR ranges (got "${a}")`);
      return `    ${a} 1;`;
    }).join('\n'),
    USER_LINE: o.user ? `user ${o.user};` : '# user: the system default (e.g. www-data)',
    DAEMON_LINE: o.foreground ? 'daemon off;' : '',
  };
  const fill = (template: string) =>
    fs.readFileSync(fromRoot('nginx', template), 'utf8').replace(/\{\{(\w+)\}\}/g, (_, k: string) => {
      if (!(k in values)) throw new Error(`nginx template placeholder {{${k}}} has no value`);
      return values[k];
    });
  return { 'nginx.conf': fill('nginx.conf.template'), 'reviews-read.conf': fill('reviews-read.conf.template') };
}

/** Writes the rendered files and the folders nginx needs; returns the nginx.conf path. */
export function writeNginxConfig(o: NginxOptions): string {
  const prefix = path.resolve(o.prefix);
  for (const dir of ['logs', 'temp', 'cache']) fs.mkdirSync(path.join(prefix, dir), { recursive: true });
  if (o.cacheDir) fs.mkdirSync(o.cacheDir, { recursive: true });
  for (const [name, text] of Object.entries(renderNginx(o))) fs.writeFileSync(path.join(prefix, name), text);
  return path.join(prefix, 'nginx.conf');
}

/** The nginx binary: NGINX_BIN, else PATH; undefined when absent. */
export function findNginx(): string | undefined {
  // NGINX_BIN, else PATH. Not a fixed path: a user hides nginx by taking it off PATH.
  if (process.env.NGINX_BIN) return fs.existsSync(process.env.NGINX_BIN) ? process.env.NGINX_BIN : undefined;
  return (process.env.PATH ?? '').split(':').filter(Boolean).map((d) => path.join(d, 'nginx')).find((c) => fs.existsSync(c));
}

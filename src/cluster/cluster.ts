// A local cluster: two Node hosts on loopback behind nginx, against one PostgreSQL.
// Used by `npm run cluster`, the nginx tests and the benchmark.
import fs from 'node:fs';
import path from 'node:path';
import { DEFAULT_TRUSTED_PROXIES } from '../lib/client-address';
import { fromRoot } from '../lib/paths';
import { EMBEDDED_SOCKET_DIR } from '../db/embedded-postgres';
import { startHost } from './host';
import { createIsolation, type Isolation } from './host-isolation';
import { DEFAULT_READ_RATE } from './nginx-config';
import { startNginx, type NginxHandle } from './nginx-process';
import type { Proc } from './processes';
import { selfSignedCertificate } from './tls';

// The pieces, for callers that start them one by one (tests, benchmarks).
export { startHost, type HostOptions } from './host';
export { startNginx, testNginxConfig, type NginxHandle } from './nginx-process';
export { freePort, type Proc } from './processes';
export { selfSignedCertificate } from './tls';


export interface ClusterOptions {
  databaseUrl: string;
  /** nginx port on 127.0.0.1. */
  port: number;
  /** One loopback port per host (not isolated). */
  hostPorts?: number[];
  /**
   * Each host as its own small machine (src/cluster/host-isolation.ts): `hosts` of them,
   * each capped at `cpu` cores, listening on port 3000 of its own address. The hosts reach
   * the database at `databaseUrl` as seen from their namespaces (see hostDatabaseUrl()).
   */
  isolate?: { hosts: number; cpu: number };
  /** nginx's proxy cache for reads (default on). */
  readCache?: boolean;
  /** Origins the hosts allow (give the hosts CORS_ORIGINS too): nginx keys its cache on them. */
  corsOrigins?: string[];
  /**
   * HTTPS on 127.0.0.1:`port`, with the given certificate and key, or a self-signed one
   * made for the session (openssl) in PREFIX/tls.
   */
  tls?: { port: number; cert?: string; key?: string };
  prefix?: string;
  cacheTtl?: string;
  /** nginx's keys zone for the read cache (default the config's 32m). */
  cacheKeysZone?: string;
  hostEnv?: Record<string, string>;
  /** Each host's standard output (its request log) appended to DIR/host-N.log, N from 1; absent: collected in memory (the last 20 KB). */
  hostLogDir?: string;
  accessLog?: string;
  /** nginx worker processes (default auto: one per core). */
  workerProcesses?: string;
  /** Per-client write rate limit (default the config's 10r/s). */
  writeRate?: string;
  /** Per-client read rate limit (default the config's 200r/s). */
  readRate?: string;
  echo?: boolean;
}

export interface Cluster {
  url: string;
  /** With TLS: the HTTPS URL. */
  httpsUrl?: string;
  hosts: (Proc & { address: string })[];
  nginx: NginxHandle;
  /** The namespaces, links and cgroups of an isolated cluster. */
  isolation?: Isolation;
  /** What it was started with (a rolling restart starts hosts the same way). */
  options: ClusterOptions;
  stop(): Promise<void>;
}

/**
 * The database URL as a host inside a network namespace can use it: a server on this
 * machine's loopback is reached through its Unix socket (the namespace has its own
 * loopback, but shares the file system); any other address is used as it is.
 */
export function hostDatabaseUrl(url: string): string {
  const u = new URL(url);
  if (!['127.0.0.1', 'localhost', '::1', '[::1]'].includes(u.hostname)) return url;
  const port = u.port || '5432';
  const dir = EMBEDDED_SOCKET_DIR;
  if (!fs.existsSync(path.join(dir, `.s.PGSQL.${port}`))) {
    throw new Error(`isolated hosts reach a loopback PostgreSQL through its Unix socket, and ${dir}/.s.PGSQL.${port} does not exist: ` +
      'restart the embedded PostgreSQL (it now listens there), or give a DATABASE_URL the namespaces can reach');
  }
  u.searchParams.set('host', dir);
  return u.toString();
}

/**
 * A loopback cluster host's environment: a drain grace of 3 s (three times nginx's 1 s
 * upstream keepalive_timeout, see rolling-restart.ts) unless the options say otherwise.
 */
export function clusterHostEnv(o: ClusterOptions): Record<string, string> {
  return { DRAIN_GRACE_MS: '3000', ...budgetEnv(o), ...o.hostEnv };
}

/**
 * A raised per-client read limit at nginx means one address stands for many clients (a load
 * generator): the hosts' per-client render budget (READ_BUDGET_KB_S) is lifted with it.
 */
function budgetEnv(o: ClusterOptions): Record<string, string> {
  return o.readRate !== undefined && o.readRate !== DEFAULT_READ_RATE ? { READ_BUDGET_KB_S: '0' } : {};
}


/** The file host i (from 0) of a cluster appends its standard output to (ClusterOptions.hostLogDir), if any. */
export function hostLogFile(o: ClusterOptions, i: number): string | undefined {
  return o.hostLogDir ? path.join(o.hostLogDir, `host-${i + 1}.log`) : undefined;
}

export async function startCluster(o: ClusterOptions): Promise<Cluster> {
  const hosts: (Proc & { address: string })[] = [];
  let isolation: Isolation | undefined;
  if (o.hostLogDir) fs.mkdirSync(o.hostLogDir, { recursive: true });
  const logFile = () => hostLogFile(o, hosts.length);
  try {
    if (o.isolate) {
      const databaseUrl = hostDatabaseUrl(o.databaseUrl);
      isolation = createIsolation(o.isolate.hosts, o.isolate.cpu);
      for (const h of isolation.hosts) {
        const env = clusterHostEnv(o);
        // nginx reaches an isolated host from its link's address in the root namespace, not
        // loopback: trusted as a proxy, so the host takes the client from X-Forwarded-For
        // (its log line, its per-client read budget) instead of charging every client to nginx.
        env.TRUSTED_PROXIES = [env.TRUSTED_PROXIES ?? process.env.TRUSTED_PROXIES ?? DEFAULT_TRUSTED_PROXIES, h.gateway].filter(Boolean).join(',');
        hosts.push(await startHost({ port: 3000, host: h.address, databaseUrl, env, echo: o.echo, wrap: h.wrap, logFile: logFile() }));
      }
    } else {
      for (const port of o.hostPorts ?? [3001, 3002]) hosts.push(await startHost({ port, databaseUrl: o.databaseUrl, env: clusterHostEnv(o), echo: o.echo, logFile: logFile() }));
    }
    const prefix = o.prefix ?? fromRoot('.data', 'cluster');
    const tls = o.tls ? { listen: `127.0.0.1:${o.tls.port}`, ...(o.tls.cert && o.tls.key ? { cert: o.tls.cert, key: o.tls.key } : selfSignedCertificate(path.join(prefix, 'tls'))) } : undefined;
    const nginx = await startNginx({
      prefix,
      tls,
      corsOrigins: o.corsOrigins,
      listen: `127.0.0.1:${o.port}`,
      upstreams: hosts.map((h) => h.address),
      cacheTtl: o.cacheTtl,
      cacheKeysZone: o.cacheKeysZone,
      accessLog: o.accessLog,
      workerProcesses: o.workerProcesses,
      writeRate: o.writeRate,
      readRate: o.readRate,
      readCache: o.readCache,
    }, o.echo);
    return {
      url: nginx.url,
      httpsUrl: nginx.httpsUrl,
      hosts,
      nginx,
      isolation,
      options: o,
      async stop() {
        await nginx.stop();
        await Promise.all(hosts.map((h) => h.stop()));
        isolation?.destroy();
      },
    };
  } catch (err) {
    await Promise.all(hosts.map((h) => h.stop()));
    isolation?.destroy();
    throw err;
  }
}

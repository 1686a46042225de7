// A local cluster: two Node hosts on loopback behind nginx, against one PostgreSQL.
// Used by `npm run cluster`, the nginx tests and the benchmark.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { fromRoot } from '../paths';
import { EMBEDDED_SOCKET_DIR } from '../embedded-postgres';
import { createIsolation, type Isolation } from './host-isolation';
import { DEFAULT_READ_RATE, findNginx, writeNginxConfig, type NginxOptions } from './nginx-config';

export interface Proc {
  process: ChildProcess;
  /** Output so far (for error messages). */
  output(): string;
  /** Graceful stop with `signal`, SIGKILL after `graceMs`. */
  stop(signal?: NodeJS.Signals, graceMs?: number): Promise<void>;
}

function manage(child: ChildProcess, name: string, echo = false): Proc {
  let out = '';
  const collect = (d: Buffer) => {
    out = (out + d.toString()).slice(-20_000);
    if (echo) process.stdout.write(`[${name}] ${d}`);
  };
  child.stdout?.on('data', collect);
  child.stderr?.on('data', collect);
  return {
    process: child,
    output: () => out,
    async stop(signal = 'SIGTERM', graceMs = 10_000) {
      if (child.exitCode !== null || child.signalCode !== null) return;
      const exited = once(child, 'exit');
      child.kill(signal);
      const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
      await exited;
      clearTimeout(timer);
    },
  };
}

/** A free TCP port on loopback. */
export async function freePort(host = '127.0.0.1'): Promise<number> {
  const srv = net.createServer();
  await new Promise<void>((r) => srv.listen(0, host, r));
  const { port } = srv.address() as net.AddressInfo;
  await new Promise((r) => srv.close(r));
  return port;
}

async function waitFor(url: string, proc: Proc, name: string, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (proc.process.exitCode !== null) throw new Error(`${name} exited (code ${proc.process.exitCode}):\n${proc.output()}`);
    try {
      // A redirect counts: with HTTPS on, nginx's plain listener only redirects.
      const res = await fetch(url, { signal: AbortSignal.timeout(1000), redirect: 'manual' });
      if (res.ok || res.status === 301) return;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) throw new Error(`${name} not ready at ${url} after ${timeoutMs} ms:\n${proc.output()}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

export interface HostOptions {
  port: number;
  host?: string;
  databaseUrl: string;
  env?: Record<string, string>;
  echo?: boolean;
  /** Rewrites the command line, e.g. to run it inside a network namespace and cgroup. */
  wrap?: (argv: string[]) => string[];
}

/** Starts one API host (the compiled server) and waits until it is ready. */
export async function startHost(o: HostOptions): Promise<Proc & { address: string }> {
  const host = o.host ?? '127.0.0.1';
  const argv = (o.wrap ?? ((a: string[]) => a))([process.execPath, fromRoot('dist', 'src', 'server.js')]);
  const child = spawn(argv[0], argv.slice(1), {
    env: { ...process.env, LOG_FORMAT: 'off', ...o.env, PORT: String(o.port), HOST: host, DATABASE_URL: o.databaseUrl },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const proc = manage(child, `host ${o.port}`, o.echo);
  await waitFor(`http://${host}:${o.port}/readyz`, proc, `API host on port ${o.port}`);
  return { ...proc, address: `${host}:${o.port}` };
}

export interface NginxHandle extends Proc {
  url: string;
  /** With TLS: the HTTPS URL. */
  httpsUrl?: string;
  configFile: string;
}

/** Checks a rendered config with `nginx -t`; throws with nginx's message. */
export function testNginxConfig(configFile: string, prefix: string): void {
  const nginx = findNginx();
  if (!nginx) throw new Error('nginx not found (install it, or set NGINX_BIN)');
  const r = spawnSync(nginx, ['-t', '-p', prefix, '-c', configFile], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`nginx -t failed:\n${r.stderr}`);
}

/** Renders the config into `prefix` and runs nginx in the foreground as a child process. */
export async function startNginx(o: Omit<NginxOptions, 'foreground' | 'user'>, echo = false): Promise<NginxHandle> {
  const nginx = findNginx();
  if (!nginx) throw new Error('nginx not found (install it, or set NGINX_BIN)');
  // As root, nginx would drop its workers to "nobody", who cannot write our prefix.
  const user = process.getuid?.() === 0 ? 'root' : undefined;
  // The cache on tmpfs when there is one (a miss writes a file; see nginx.conf.template).
  // A cache left by an earlier run would answer from old data (and flatter a benchmark).
  const cacheDir = o.cacheDir ?? localCacheDir(o.prefix);
  fs.rmSync(cacheDir, { recursive: true, force: true });
  const configFile = writeNginxConfig({ ...o, cacheDir, foreground: true, user });
  testNginxConfig(configFile, o.prefix);
  const child = spawn(nginx, ['-p', path.resolve(o.prefix), '-c', configFile], { stdio: ['ignore', 'pipe', 'pipe'] });
  const proc = manage(child, 'nginx', echo);
  const url = urlOf('http', o.listen);
  await waitFor(`${url}/healthz`, proc, 'nginx');
  const httpsUrl = o.tls ? urlOf('https', o.tls.listen) : undefined;
  return {
    ...proc, url, httpsUrl, configFile,
    stop: async (signal = 'SIGQUIT', grace = 5000) => {
      await proc.stop(signal, grace);
      fs.rmSync(cacheDir, { recursive: true, force: true });
    },
  };
}

/** A folder on /dev/shm (tmpfs) named after the prefix, or PREFIX/cache without one. */
function localCacheDir(prefix: string): string {
  const abs = path.resolve(prefix);
  if (!fs.existsSync('/dev/shm')) return path.join(abs, 'cache');
  return path.join('/dev/shm', `atelier-nginx-${Buffer.from(abs).toString('base64url').slice(-40)}`);
}

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
  hostEnv?: Record<string, string>;
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

/** A self-signed certificate for localhost and 127.0.0.1, made with openssl (valid one day). */
export function selfSignedCertificate(dir: string): { cert: string; key: string } {
  fs.mkdirSync(dir, { recursive: true });
  const cert = path.join(dir, 'cert.pem');
  const key = path.join(dir, 'key.pem');
  const r = spawnSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', key, '-out', cert, '-days', '1',
    '-subj', '/CN=localhost', '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1'], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`openssl could not make a certificate (apt-get install openssl): ${r.stderr ?? r.error}`);
  return { cert, key };
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

/** The URL of something listening on `listen` ("port" or "address:port"). */
const urlOf = (scheme: 'http' | 'https', listen: string) => `${scheme}://${listen.includes(':') ? listen : `127.0.0.1:${listen}`}`;

export async function startCluster(o: ClusterOptions): Promise<Cluster> {
  const hosts: (Proc & { address: string })[] = [];
  let isolation: Isolation | undefined;
  try {
    if (o.isolate) {
      const databaseUrl = hostDatabaseUrl(o.databaseUrl);
      isolation = createIsolation(o.isolate.hosts, o.isolate.cpu);
      for (const h of isolation.hosts) {
        hosts.push(await startHost({ port: 3000, host: h.address, databaseUrl, env: { ...budgetEnv(o), ...o.hostEnv }, echo: o.echo, wrap: h.wrap }));
      }
    } else {
      for (const port of o.hostPorts ?? [3001, 3002]) hosts.push(await startHost({ port, databaseUrl: o.databaseUrl, env: clusterHostEnv(o), echo: o.echo }));
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

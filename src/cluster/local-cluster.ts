// `npm run cluster` (scripts/cluster.ts parses its flags): API hosts behind nginx against
// DATABASE_URL or the embedded PostgreSQL (filled with sample data when empty), until Ctrl-C;
// SIGUSR2 rolls the hosts onto a new build.
import { UsageError } from '../lib/cli';
import { isolationSupport } from './host-isolation';
import { rollingRestart } from './rolling-restart';
import type { DatabaseSettings } from '../db/resolve';
import { prepareDatabase } from '../etl/sample';
import { startStandby } from '../db/standby';
import type { EmbeddedPostgres } from '../db/embedded-postgres';
import { startCluster } from './cluster';

export interface LocalClusterArgs {
  port: number; hosts: number; 'host-ports'?: string; isolate: boolean; 'host-cpu': number; 'no-read-cache': boolean;
  tls: boolean; 'https-port': number; 'tls-cert'?: string; 'tls-key'?: string; 'cache-ttl': string; 'access-log': string;
  'write-rate': string; 'read-rate': string; replicas: number;
}

/** The settings it needs (src/config.ts's, from the environment). */
export type LocalClusterSettings = DatabaseSettings & { SAMPLE_SCALE: number; CORS_ORIGINS: string };

export async function runLocalCluster(args: LocalClusterArgs, config: LocalClusterSettings): Promise<void> {
  const n = args.hosts;
  if (!Number.isInteger(n) || n < 1 || n > 64) throw new UsageError('--hosts takes a whole number from 1 to 64');
  const hostPorts = args['host-ports'] ? args['host-ports'].split(',').map(Number) : Array.from({ length: n }, (_, i) => 3001 + i);
  if (hostPorts.some((p) => !Number.isInteger(p) || p < 1 || p > 65535)) throw new UsageError('--host-ports takes ports, e.g. 3001,3002');
  if (args['host-cpu'] <= 0 || args['host-cpu'] > 64) throw new UsageError('--host-cpu takes cores, e.g. 0.25');
  const log = (l: string) => console.log(`[cluster] ${l}`);
  if (args.isolate) {
    const support = isolationSupport();
    if (!support.ok) throw new UsageError(`--isolate cannot run here:\n  - ${support.missing.join('\n  - ')}`);
  }
  if (!Number.isInteger(args.replicas) || args.replicas < 0 || args.replicas > 8) throw new UsageError('--replicas takes a whole number from 0 to 8');
  if (args.replicas && config.DATABASE_URL) throw new UsageError('--replicas starts local standbys of the embedded PostgreSQL; with DATABASE_URL set DATABASE_REPLICA_URLS to your standbys (docs/cluster.md)');
  const database = await prepareDatabase(config, log, { replication: args.replicas > 0 });
  // Hot standbys of the embedded primary, on the ports after its own; the hosts read from them.
  const standbys: EmbeddedPostgres[] = [];
  for (let i = 1; i <= args.replicas; i++) {
    const standby = await startStandby({
      primary: { dir: config.EMBEDDED_PG_DIR, serverUrl: database.embedded!.serverUrl },
      dir: `${config.EMBEDDED_PG_DIR}-standby-${i}`, port: config.EMBEDDED_PG_PORT + i, slot: `cluster_standby_${i}`, ephemeral: true,
    });
    standbys.push(standby);
    log(`standby ${i}: ${standby.url('atelier')}`);
  }
  const cluster = await startCluster({
    databaseUrl: database.url, port: args.port, hostPorts, isolate: args.isolate ? { hosts: n, cpu: args['host-cpu'] } : undefined,
    readCache: !args['no-read-cache'],
    corsOrigins: config.CORS_ORIGINS.split(',').map((x) => x.trim()).filter(Boolean),
    tls: args.tls ? { port: args['https-port'], cert: args['tls-cert'], key: args['tls-key'] } : undefined, cacheTtl: args['cache-ttl'], accessLog: args['access-log'], writeRate: args['write-rate'], readRate: args['read-rate'],
    hostEnv: standbys.length ? { DATABASE_REPLICA_URLS: standbys.map((s) => s.url('atelier')).join(',') } : undefined,
  });
  for (const r of cluster.isolation?.cleaned ?? []) log(`removed a crashed run's leftover: ${r}`);
  log(`hosts: ${cluster.hosts.map((h) => h.address).join(', ')}${args.isolate ? ` (each in its own network namespace, capped at ${args['host-cpu']} cores, cgroup ${cluster.isolation!.cgroupVersion})` : ''}; nginx config: ${cluster.nginx.configFile}`);
  if (cluster.httpsUrl) {
    log(`listening on ${cluster.httpsUrl} (${args['tls-cert'] ? 'certificate ' + args['tls-cert'] : 'a self-signed certificate made for this session'}); ${cluster.url} redirects there`);
    log(`try: curl -ik '${cluster.httpsUrl}/reviews?product_id=2'`);
  } else {
    log(`listening on ${cluster.url}  (try: curl -i '${cluster.url}/reviews?product_id=2')`);
  }
  let stopping = false;
  let rolling = false;
  if (!args.isolate) log(`rolling restart onto a new build: npm run build, then kill -USR2 ${process.pid}`);
  process.on('SIGUSR2', () => {
    if (rolling || stopping) return;
    rolling = true;
    log('SIGUSR2: replacing the hosts one at a time with the build in dist/');
    rollingRestart(cluster, log)
      .then((r) => log(`rolling restart done: ${r.hosts.length} hosts in ${r.seconds.toFixed(1)} s`))
      .catch((err) => log(`rolling restart failed: ${err instanceof Error ? err.message : err}`))
      .finally(() => (rolling = false));
  });
  const stop = async () => {
    if (stopping) return;
    stopping = true;
    log('stopping nginx, hosts and database');
    await cluster.stop();
    for (const s of standbys) await s.stop();
    await database.stop();
    process.exit(0);
  };
  process.on('SIGINT', () => void stop());
  process.on('SIGTERM', () => void stop());
  // A host or nginx that dies on its own is reported, not silently left out.
  for (const p of [cluster.nginx, ...cluster.hosts]) {
    p.process.once('exit', (code, signal) => {
      if (!stopping && !rolling) log(`a child process exited (code ${code}, signal ${signal}):\n${p.output().slice(-2000)}`);
    });
  }
}

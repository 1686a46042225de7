// npm run cluster: API hosts behind nginx, against DATABASE_URL or the embedded PostgreSQL
// (filled with sample data when empty). Ctrl-C stops everything.
//   --hosts N            how many hosts (default 2), on loopback ports 3001… (or --host-ports)
//   --isolate            each host its own network namespace, address and CPU cap (root)
//   --host-cpu F         the cap in cores with --isolate (default 0.25)
//   --no-read-cache      nginx passes every read to a host (capacity measurements)
//   --tls                HTTPS on --https-port (default 8443) with a self-signed certificate
//                        made for the session (or --tls-cert/--tls-key); HTTP redirects to it
// CORS_ORIGINS (environment or .env) is given to the hosts and to nginx's cache key.
// Rolling restart onto a new build: `npm run build`, then `kill -USR2 <pid>` (printed at start).
import { parseArgs, runCli, UsageError } from '../src/cli';
import { startCluster } from '../src/cluster/cluster';
import { rollingRestart } from '../src/cluster/rolling-restart';
import { isolationSupport } from '../src/cluster/host-isolation';
import { DEFAULT_CACHE_TTL, DEFAULT_READ_RATE, DEFAULT_WRITE_RATE } from '../src/cluster/nginx-config';
import { loadConfig } from '../src/config';
import { resolveDatabase } from '../src/database';
import { seedSampleIfEmpty } from '../src/etl/sample';

runCli(async () => {
  const args = parseArgs({
    port: { type: 'number', default: 8080, help: "nginx's port on 127.0.0.1" },
    hosts: { type: 'number', default: 2, help: 'how many API hosts' },
    'host-ports': { type: 'string', arg: 'P,P', help: "the hosts' loopback ports (default 3001, 3002, …)" },
    isolate: { type: 'boolean', help: 'each host in its own network namespace with a CPU cap (root)' },
    'host-cpu': { type: 'number', default: 0.25, arg: 'CORES', help: 'the CPU cap with --isolate' },
    'no-read-cache': { type: 'boolean', help: 'nginx passes every read to a host (capacity measurements)' },
    tls: { type: 'boolean', help: 'HTTPS on --https-port with a self-signed certificate (or --tls-cert/--tls-key)' },
    'https-port': { type: 'number', default: 8443, help: 'the HTTPS port with --tls' },
    'tls-cert': { type: 'string', arg: 'PEM', help: 'certificate chain for --tls' },
    'tls-key': { type: 'string', arg: 'PEM', help: 'key for --tls' },
    'cache-ttl': { type: 'string', default: DEFAULT_CACHE_TTL, arg: 'TIME', help: "nginx's read cache lifetime" },
    'access-log': { type: 'string', default: 'off', arg: 'FILE', help: "nginx's access log (off, or a file)" },
    // The per-client limits; a single load generator needs them raised (see docs/load-testing.md).
    'write-rate': { type: 'string', default: DEFAULT_WRITE_RATE, arg: 'RATE', help: 'per-client write limit' },
    'read-rate': { type: 'string', default: DEFAULT_READ_RATE, arg: 'RATE', help: 'per-client read limit' },
  }, {
    usage: 'npm run cluster -- [options]',
    about: 'API hosts behind nginx (round robin, proxy_cache), against DATABASE_URL or the embedded PostgreSQL\n(filled with sample data when empty). Ctrl-C stops everything; kill -USR2 <pid> rolls the hosts onto a new build.',
    notes: ['Needs nginx (apt-get install nginx, or NGINX_BIN=/path/to/nginx). CORS_ORIGINS goes to the hosts and to nginx.'],
  });
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
  const config = loadConfig();
  const database = await resolveDatabase(config, log);
  if (database.embedded) await seedSampleIfEmpty(database.url, config.SAMPLE_SCALE, log);
  const cluster = await startCluster({
    databaseUrl: database.url, port: args.port, hostPorts, isolate: args.isolate ? { hosts: n, cpu: args['host-cpu'] } : undefined,
    readCache: !args['no-read-cache'],
    corsOrigins: config.CORS_ORIGINS.split(',').map((x) => x.trim()).filter(Boolean),
    tls: args.tls ? { port: args['https-port'], cert: args['tls-cert'], key: args['tls-key'] } : undefined, cacheTtl: args['cache-ttl'], accessLog: args['access-log'], writeRate: args['write-rate'], readRate: args['read-rate'],
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
});

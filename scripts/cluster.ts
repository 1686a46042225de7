// npm run cluster: two API hosts on loopback behind nginx, against DATABASE_URL or the
// embedded PostgreSQL (filled with sample data when empty). Ctrl-C stops everything.
import { parseArgs, runCli } from '../src/cli';
import { startCluster } from '../src/cluster/cluster';
import { DEFAULT_CACHE_TTL, DEFAULT_READ_RATE, DEFAULT_WRITE_RATE } from '../src/cluster/nginx-config';
import { loadConfig } from '../src/config';
import { resolveDatabase } from '../src/database';
import { seedSampleIfEmpty } from '../src/etl/sample';

runCli(async () => {
  const args = parseArgs({
    port: { type: 'number', default: 8080 },
    'host-ports': { type: 'string', default: '3001,3002' },
    'cache-ttl': { type: 'string', default: DEFAULT_CACHE_TTL },
    'access-log': { type: 'string', default: 'off' },
    // The per-client write limit; a single load generator needs it raised (see README).
    'write-rate': { type: 'string', default: DEFAULT_WRITE_RATE },
    // The per-client read limit; likewise raised for load tests from one address.
    'read-rate': { type: 'string', default: DEFAULT_READ_RATE },
  });
  const hostPorts = args['host-ports'].split(',').map(Number) as [number, number];
  if (hostPorts.length !== 2 || hostPorts.some((p) => !Number.isInteger(p) || p < 1 || p > 65535)) throw new Error('--host-ports takes two ports, e.g. 3001,3002');
  const log = (l: string) => console.log(`[cluster] ${l}`);
  const config = loadConfig();
  const database = await resolveDatabase(config, log);
  if (database.embedded) await seedSampleIfEmpty(database.url, config.SAMPLE_SCALE, log);
  const cluster = await startCluster({ databaseUrl: database.url, port: args.port, hostPorts, cacheTtl: args['cache-ttl'], accessLog: args['access-log'], writeRate: args['write-rate'], readRate: args['read-rate'] });
  log(`hosts: ${cluster.hosts.map((h) => h.address).join(', ')}; nginx config: ${cluster.nginx.configFile}`);
  log(`listening on ${cluster.url}  (try: curl -i '${cluster.url}/reviews?product_id=2')`);
  let stopping = false;
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
      if (!stopping) log(`a child process exited (code ${code}, signal ${signal}):\n${p.output().slice(-2000)}`);
    });
  }
});

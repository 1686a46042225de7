// npm run cluster: API hosts behind nginx, against DATABASE_URL or the embedded PostgreSQL
// (filled with sample data when empty). Ctrl-C stops everything.
// The flags are in --help; the work is src/cluster/local-cluster.ts.
import { runLocalCluster } from '../src/cluster/local-cluster';
import { DEFAULT_CACHE_TTL, DEFAULT_READ_RATE, DEFAULT_WRITE_RATE } from '../src/cluster/nginx-config';
import { parseArgs, runCli } from '../src/lib/cli';
import { loadConfig } from '../src/config';

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
    replicas: { type: 'number', default: 0, arg: 'N', help: 'hot standbys of the embedded PostgreSQL that the hosts read from' },
  }, {
    usage: 'npm run cluster -- [options]',
    about: 'API hosts behind nginx (round robin, proxy_cache), against DATABASE_URL or the embedded PostgreSQL\n(filled with sample data when empty). Ctrl-C stops everything; kill -USR2 <pid> rolls the hosts onto a new build.',
    notes: ['Needs nginx (apt-get install nginx, or NGINX_BIN=/path/to/nginx). CORS_ORIGINS goes to the hosts and to nginx.'],
  });
  await runLocalCluster(args, loadConfig());
});

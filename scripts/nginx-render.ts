// npm run nginx:render -- --prefix DIR --listen ADDR --upstreams host:port,host:port [--cache-ttl 5s] [--cache-keys-zone 32m] [--write-rate 10r/s] [--read-rate 200r/s] [--cache-dir /dev/shm/atelier-nginx]
//   [--tls-cert fullchain.pem --tls-key key.pem --https-listen 443] [--cors-origins https://shop.example.com]
// Renders the production nginx config for ops; run it with `nginx -p DIR -c DIR/nginx.conf`.
import { parseArgs, runCli, UsageError } from '../src/lib/cli';
import { testNginxConfig } from '../src/cluster/cluster';
import { DEFAULT_CACHE_KEYS_ZONE, DEFAULT_CACHE_TTL, DEFAULT_READ_CONCURRENCY, DEFAULT_READ_RATE, DEFAULT_WRITE_RATE, findNginx, writeNginxConfig } from '../src/cluster/nginx-config';

runCli(async () => {
  const a = parseArgs({
    prefix: { type: 'string', required: true, arg: 'DIR', help: "nginx's prefix: the config, pid, logs and temp files go here" },
    listen: { type: 'string', default: '80', arg: 'ADDR', help: 'listen address (port, or host:port)' },
    upstreams: { type: 'string', required: true, arg: 'H:P,H:P', help: 'the API hosts' },
    'cache-ttl': { type: 'string', default: DEFAULT_CACHE_TTL, arg: 'TIME', help: 'read cache lifetime' },
    'cache-keys-zone': { type: 'string', default: DEFAULT_CACHE_KEYS_ZONE, arg: 'SIZE', help: "read cache's keys zone (1m holds ~8k keys)" },
    'write-rate': { type: 'string', default: DEFAULT_WRITE_RATE, arg: 'RATE', help: 'per-client write limit' },
    'read-rate': { type: 'string', default: DEFAULT_READ_RATE, arg: 'RATE', help: 'per-client read limit' },
    'read-concurrency': { type: 'number', arg: 'N', help: `reads in progress at once per client (default ${DEFAULT_READ_CONCURRENCY} with the default read rate, else none; 0: none)` },
    user: { type: 'string', arg: 'USER', help: "worker processes' user (when nginx starts as root)" },
    'access-log': { type: 'string', default: 'off', arg: 'FILE', help: 'access log (off, or a file)' },
    // Put the proxy cache on a tmpfs mount (every answer stored writes a file); default PREFIX/cache.
    'cache-dir': { type: 'string', arg: 'DIR', help: 'proxy cache folder, e.g. on tmpfs (default PREFIX/cache)' },
    // HTTPS: PEM certificate (full chain) and key; the plain listener then redirects.
    'tls-cert': { type: 'string', arg: 'PEM', help: 'certificate chain: serve HTTPS, redirect HTTP' },
    'tls-key': { type: 'string', arg: 'PEM', help: 'key for --tls-cert' },
    'https-listen': { type: 'string', default: '443', arg: 'ADDR', help: 'HTTPS listen address' },
    // The hosts' CORS_ORIGINS, so nginx's cache keeps origins apart.
    'cors-origins': { type: 'string', default: process.env.CORS_ORIGINS ?? '', arg: 'LIST', help: "the hosts' CORS_ORIGINS (default: the environment's)" },
    'limit-exempt': { type: 'string', default: '', arg: 'CIDRS', help: 'addresses or CIDR ranges exempt from the per-client limits (a load generator)' },
  }, {
    usage: 'npm run nginx:render -- --prefix DIR --upstreams H:P,H:P [options]',
    about: 'Renders the production nginx config and checks it with nginx -t when nginx is installed;\nrun it with `nginx -p DIR -c DIR/nginx.conf`.',
  });
  if (!!a['tls-cert'] !== !!a['tls-key']) throw new UsageError('--tls-cert and --tls-key go together');
  const file = writeNginxConfig({
    prefix: a.prefix, listen: a.listen, upstreams: a.upstreams.split(','), cacheTtl: a['cache-ttl'], cacheKeysZone: a['cache-keys-zone'],
    writeRate: a['write-rate'], readRate: a['read-rate'], readConcurrency: a['read-concurrency'], cacheDir: a['cache-dir'],
    tls: a['tls-cert'] ? { cert: a['tls-cert'], key: a['tls-key'], listen: a['https-listen'] } : undefined,
    corsOrigins: a['cors-origins'].split(',').map((x) => x.trim()).filter(Boolean), user: a.user, accessLog: a['access-log'],
    limitExempt: a['limit-exempt'].split(',').map((x) => x.trim()).filter(Boolean),
  });
  console.log(`wrote ${file}`);
  if (findNginx()) {
    testNginxConfig(file, a.prefix);
    console.log('nginx -t: ok');
  }
});

// npm run nginx:render -- --prefix DIR --listen ADDR --upstreams host:port,host:port [--cache-ttl 5s] [--write-rate 10r/s] [--read-rate 200r/s] [--cache-dir /dev/shm/atelier-nginx]
//   [--tls-cert fullchain.pem --tls-key key.pem --https-listen 443] [--cors-origins https://shop.example.com]
// Renders the production nginx config for ops; run it with `nginx -p DIR -c DIR/nginx.conf`.
import { parseArgs, runCli, UsageError } from '../src/cli';
import { testNginxConfig } from '../src/cluster/cluster';
import { DEFAULT_CACHE_TTL, DEFAULT_READ_RATE, DEFAULT_WRITE_RATE, findNginx, writeNginxConfig } from '../src/cluster/nginx-config';

runCli(async () => {
  const a = parseArgs({
    prefix: { type: 'string', required: true },
    listen: { type: 'string', default: '80' },
    upstreams: { type: 'string', required: true },
    'cache-ttl': { type: 'string', default: DEFAULT_CACHE_TTL },
    'write-rate': { type: 'string', default: DEFAULT_WRITE_RATE },
    'read-rate': { type: 'string', default: DEFAULT_READ_RATE },
    user: { type: 'string' },
    'access-log': { type: 'string', default: 'off' },
    // Put the proxy cache on a tmpfs mount (every miss writes a file); default PREFIX/cache.
    'cache-dir': { type: 'string' },
    // HTTPS: PEM certificate (full chain) and key; the plain listener then redirects.
    'tls-cert': { type: 'string' },
    'tls-key': { type: 'string' },
    'https-listen': { type: 'string', default: '443' },
    // The hosts' CORS_ORIGINS, so nginx's cache keeps origins apart.
    'cors-origins': { type: 'string', default: process.env.CORS_ORIGINS ?? '' },
  });
  if (!!a['tls-cert'] !== !!a['tls-key']) throw new UsageError('--tls-cert and --tls-key go together');
  const file = writeNginxConfig({
    prefix: a.prefix, listen: a.listen, upstreams: a.upstreams.split(','), cacheTtl: a['cache-ttl'],
    writeRate: a['write-rate'], readRate: a['read-rate'], cacheDir: a['cache-dir'],
    tls: a['tls-cert'] ? { cert: a['tls-cert'], key: a['tls-key'], listen: a['https-listen'] } : undefined,
    corsOrigins: a['cors-origins'].split(',').map((x) => x.trim()).filter(Boolean), user: a.user, accessLog: a['access-log'],
  });
  console.log(`wrote ${file}`);
  if (findNginx()) {
    testNginxConfig(file, a.prefix);
    console.log('nginx -t: ok');
  }
});

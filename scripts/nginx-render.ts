// npm run nginx:render -- --prefix DIR --listen ADDR --upstreams host:port,host:port [--cache-ttl 5s] [--write-rate 10r/s] [--read-rate 200r/s] [--cache-dir /dev/shm/atelier-nginx]
// Renders the production nginx config for ops; run it with `nginx -p DIR -c DIR/nginx.conf`.
import { parseArgs, runCli } from '../src/cli';
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
  });
  const file = writeNginxConfig({
    prefix: a.prefix, listen: a.listen, upstreams: a.upstreams.split(','), cacheTtl: a['cache-ttl'],
    writeRate: a['write-rate'], readRate: a['read-rate'], cacheDir: a['cache-dir'], user: a.user, accessLog: a['access-log'],
  });
  console.log(`wrote ${file}`);
  if (findNginx()) {
    testNginxConfig(file, a.prefix);
    console.log('nginx -t: ok');
  }
});

// nginx as a child process: the config rendered (nginx-config.ts) and checked with
// nginx -t, run in the foreground with its own prefix, ready when it proxies /healthz.
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { findNginx, writeNginxConfig, type NginxOptions } from './nginx-config';
import { assertPortFree, listenAddress, manage, waitFor, type Proc } from './processes';

/** The URL of something listening on `listen` (an nginx listen value; every address is reached on loopback). */
const urlOf = (scheme: 'http' | 'https', listen: string) => {
  const at = listenAddress(listen);
  if (!at) return `${scheme}://${listen}`;
  const host = at.host === '0.0.0.0' ? '127.0.0.1' : at.host === '::' ? '::1' : at.host;
  return `${scheme}://${host.includes(':') ? `[${host}]` : host}:${at.port}`;
};

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
  // nginx listens with reuseport: a second nginx on a port in use would share it silently.
  for (const listen of [o.listen, ...(o.tls ? [o.tls.listen] : [])]) {
    const at = listenAddress(listen);
    if (at) await assertPortFree(at.port, at.host);
  }
  const nginx = findNginx();
  if (!nginx) throw new Error('nginx not found (install it, or set NGINX_BIN)');
  // As root, nginx would drop its workers to "nobody", who cannot write our prefix.
  const user = process.getuid?.() === 0 ? 'root' : undefined;
  // The cache on tmpfs when there is one (every answer stored writes a file; see nginx.conf.template).
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

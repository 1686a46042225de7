// One API host: the compiled server (dist/src/server.js) as a child process, ready when
// its /healthz answers.
import { spawn } from 'node:child_process';
import { fromRoot } from '../lib/paths';
import { manage, waitFor, type Proc } from './processes';

/**
 * The V8 heap settings every host runs with (npm start, the systemd unit and this launcher
 * all pass them; tests/unit/host-flags.test.ts checks they agree). V8 sizes a fresh heap's
 * old generation small, so a host serving the storefront mix promoted its way to a
 * mark-compact every few seconds (measured: ~1.2 MB/s promoted per host at 500 req/s, a
 * major GC every ~5 s, each a burst of GC helper threads that stalled the whole 2-core box
 * for tens of ms: the periodic p99 spikes of docs/benchmarks.md's "heap" A/B). A larger
 * initial old space defers them; memory, not CPU, pays (see docs/operations.md).
 */
export const HOST_NODE_FLAGS = ['--initial-old-space-size=256'];

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
  const argv = (o.wrap ?? ((a: string[]) => a))([process.execPath, ...HOST_NODE_FLAGS, fromRoot('dist', 'src', 'server.js')]);
  const child = spawn(argv[0], argv.slice(1), {
    env: { ...process.env, LOG_FORMAT: 'off', ...o.env, PORT: String(o.port), HOST: host, DATABASE_URL: o.databaseUrl },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const proc = manage(child, `host ${o.port}`, o.echo);
  await waitFor(`http://${host}:${o.port}/readyz`, proc, `API host on port ${o.port}`);
  return { ...proc, address: `${host}:${o.port}` };
}

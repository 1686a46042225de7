// npm run db -- [--dir .data/pg] [--port 54329] [--database atelier]
// Runs the embedded PostgreSQL in the foreground (migrated), prints its URL, and stops it
// on Ctrl-C/SIGTERM: for running the API, the import and psql against one server by hand.
import { parseArgs, runCli } from '../src/lib/cli';
import { startEmbeddedPostgres } from '../src/db/embedded-postgres';
import { migrate } from '../src/db/migrate';

runCli(async () => {
  const a = parseArgs({
    dir: { type: 'string', default: '.data/pg', arg: 'DIR', help: "the embedded server's data folder" },
    port: { type: 'number', default: 54329, help: 'port on 127.0.0.1' },
    database: { type: 'string', default: 'atelier', arg: 'NAME', help: 'database to create and migrate' },
  }, { usage: 'npm run db -- [options]', about: 'Runs the embedded PostgreSQL in the foreground (migrated) and prints its DATABASE_URL; Ctrl-C stops it.' });
  const pg = await startEmbeddedPostgres({ dir: a.dir, port: a.port });
  await pg.ensureDatabase(a.database);
  await migrate(pg.url(a.database));
  console.log(`ready: DATABASE_URL=${pg.url(a.database)}`);
  const stop = async () => {
    await pg.stop();
    process.exit(0);
  };
  process.on('SIGINT', () => void stop());
  process.on('SIGTERM', () => void stop());
});

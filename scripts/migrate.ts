// npm run migrate: applies db/migrations to DATABASE_URL (as the schema's owner role in
// production; see docs/operations.md) and prints what it applied.
import { parseArgs, runCli } from '../src/lib/cli';
import { loadConfig } from '../src/config';
import { migrate } from '../src/db/migrate';

runCli(async () => {
  parseArgs({}, {
    usage: 'npm run migrate',
    about: 'Applies db/migrations to DATABASE_URL (as the schema owner in production) and prints what it applied.',
    notes: ['The embedded PostgreSQL of npm start migrates itself at start.'],
  });
  const { DATABASE_URL: url } = loadConfig();
  if (!url) throw new Error('set DATABASE_URL to the database to migrate (the embedded one migrates itself at start)');
  const applied = await migrate(url);
  console.log(applied.length ? `[migrate] applied ${applied.join(', ')}` : '[migrate] up to date');
});

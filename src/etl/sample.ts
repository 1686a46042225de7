// The database `npm start` and `npm run cluster` serve: DATABASE_URL (migrated), or the
// embedded PostgreSQL with sample data generated at a small scale and loaded through the real
// import, once, when it has no reviews.
import fs from 'node:fs';
import { withClient } from '../db';
import { resolveDatabase, type DatabaseSettings, type ResolvedDatabase } from '../db/resolve';
import { fromRoot } from '../lib/paths';
import { FILES } from './csv-format';
import { generate } from './generate';
import { load } from './load';

/** The database to serve, ready: resolved, migrated, and (embedded only) seeded when empty. */
export async function prepareDatabase(config: DatabaseSettings & { SAMPLE_SCALE: number }, log: (line: string) => void, o: { replication?: boolean } = {}): Promise<ResolvedDatabase> {
  const database = await resolveDatabase(config, log, o);
  if (database.embedded) await seedSampleIfEmpty(database.url, config.SAMPLE_SCALE, log);
  return database;
}

export async function seedSampleIfEmpty(url: string, scale: number, log: (line: string) => void): Promise<void> {
  const empty = await withClient(url, async (c) => (await c.query('SELECT NOT EXISTS (SELECT 1 FROM atelier.reviews) AS empty')).rows[0].empty as boolean);
  if (!empty) return;
  const dir = fromRoot('.data', `sample-${scale}`);
  if (!fs.existsSync(`${dir}/${FILES.ratings.name}`)) {
    log(`generating sample data (scale ${scale}) in ${dir}`);
    await generate({ out: dir, scale, seed: 1 });
  }
  const report = await load({ dir, databaseUrl: url, rejectsFile: `${dir}/rejects.csv` });
  const rows = report.files.reduce((n, f) => n + f.loaded, 0);
  log(`loaded sample data: ${rows.toLocaleString('en-US')} rows in ${report.totalSeconds.toFixed(1)} s`);
}

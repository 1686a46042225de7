// The sample data `npm start` serves on the embedded database: generated at a small
// scale and loaded through the real import, once, when the database has no reviews.
import fs from 'node:fs';
import { withClient } from '../db';
import { fromRoot } from '../paths';
import { FILES } from './csv-format';
import { generate } from './generate';
import { load } from './load';

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

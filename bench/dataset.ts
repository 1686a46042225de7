// The benchmarks' dataset: generated once per scale into .data/bench/, imported into its
// own database (bench_scale_S on the embedded server, or DATABASE_URL as it is).
import fs from 'node:fs';
import path from 'node:path';
import { loadConfig } from '../src/config';
import { resolveDatabase } from '../src/db/resolve';
import { withClient } from '../src/db';
import { benchmarkExport, FULL_SCALE_PRODUCTS } from '../src/etl/generate';
import { load } from '../src/etl/load';
import { migrate } from '../src/db/migrate';

export interface BenchDatabase {
  url: string;
  /** The embedded server (none with DATABASE_URL): its data folder and server URL, for standbys of it. */
  embedded?: { dir: string; serverUrl: string };
  products: number;
  reviews: number;
  stop(): Promise<void>;
}

export async function prepareBenchDatabase(scale: number, seed: number, log: (line: string) => void, o: { replication?: boolean } = {}): Promise<BenchDatabase> {
  const products = Math.max(1, Math.round(FULL_SCALE_PRODUCTS * scale));
  const dir = await benchmarkExport(scale, seed, log);
  const config = loadConfig();
  const database = await resolveDatabase(config, log, o);
  let url = database.url;
  if (database.embedded) {
    const name = `bench_scale_${String(scale).replace('.', '_')}`;
    await database.embedded.ensureDatabase(name);
    url = database.embedded.url(name);
    await migrate(url);
  }
  const marker = path.join(dir, `loaded-${Buffer.from(url).toString('base64url').slice(-24)}`);
  const countReviews = () => withClient(url, async (c) => Number((await c.query('SELECT count(*) AS n FROM atelier.reviews')).rows[0].n));
  if (!fs.existsSync(marker) || (await countReviews()) === 0) {
    log('importing the dataset');
    await load({ dir, databaseUrl: url, rejectsFile: path.join(dir, 'rejects.csv') });
    fs.writeFileSync(marker, new Date().toISOString());
  }
  const reviews = await countReviews();
  log(`dataset: ${reviews.toLocaleString('en-US')} reviews`);
  return { url, products, reviews, embedded: database.embedded ? { dir: config.EMBEDDED_PG_DIR, serverUrl: database.embedded.serverUrl } : undefined, stop: () => database.stop() };
}

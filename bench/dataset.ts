// The benchmarks' dataset: generated once per scale into .data/bench/, imported into its
// own database (bench_scale_S on the embedded server, or DATABASE_URL as it is).
// On the embedded server each run starts from the dataset as imported: the import is kept
// as a copy (bench_scale_S_as_imported) and the run's database is made from it again, so a
// run does not inherit what earlier runs wrote (the mix's POSTs go to its Zipf-popular
// products, which grow by thousands of reviews an hour and change what a run measures:
// docs/benchmarks.md, sixteenth session). `keep`: run on the database as earlier runs left it.
import fs from 'node:fs';
import path from 'node:path';
import { loadConfig } from '../src/config';
import { resolveDatabase } from '../src/db/resolve';
import { ident, withClient } from '../src/db';
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

export async function prepareBenchDatabase(scale: number, seed: number, log: (line: string) => void, o: { replication?: boolean; keep?: boolean } = {}): Promise<BenchDatabase> {
  const products = Math.max(1, Math.round(FULL_SCALE_PRODUCTS * scale));
  const dir = await benchmarkExport(scale, seed, log);
  const config = loadConfig();
  const database = await resolveDatabase(config, log, o);
  let url = database.url;
  const name = `bench_scale_${String(scale).replace('.', '_')}`;
  const embedded = database.embedded;
  if (embedded) url = embedded.url(name);
  const marker = path.join(dir, `loaded-${Buffer.from(url).toString('base64url').slice(-24)}`);
  // Without a copy as imported, what the database holds is not known to be the dataset: imported again.
  let imported = fs.existsSync(marker);
  if (embedded && imported && !o.keep) {
    const began = performance.now();
    imported = await restoreAsImported(embedded.serverUrl, name);
    log(imported ? `${name} made again from the dataset as imported (${((performance.now() - began) / 1000).toFixed(0)} s; --keep-data runs on it as earlier runs left it)`
      : `no copy of the dataset as imported beside ${name}: importing it again`);
  }
  if (embedded) {
    await embedded.ensureDatabase(name);
    await migrate(url);
  }
  const countReviews = () => withClient(url, async (c) => Number((await c.query('SELECT count(*) AS n FROM atelier.reviews')).rows[0].n));
  if (!imported || (await countReviews()) === 0) {
    log('importing the dataset');
    await load({ dir, databaseUrl: url, rejectsFile: path.join(dir, 'rejects.csv') });
    if (embedded) {
      const began = performance.now();
      await keepAsImported(embedded.serverUrl, name);
      log(`kept a copy as imported (${((performance.now() - began) / 1000).toFixed(0)} s)`);
    }
    fs.writeFileSync(marker, new Date().toISOString());
  }
  const reviews = await countReviews();
  log(`dataset: ${reviews.toLocaleString('en-US')} reviews`);
  return { url, products, reviews, embedded: database.embedded ? { dir: config.EMBEDDED_PG_DIR, serverUrl: database.embedded.serverUrl } : undefined, stop: () => database.stop() };
}

/** The copy of database `name` as imported. */
const asImported = (name: string) => `${name}_as_imported`;

/**
 * Keeps database `name` as it is now (just imported) as a copy beside it, replacing an older
 * copy: a file copy of the database (CREATE DATABASE … TEMPLATE, STRATEGY FILE_COPY, which
 * writes no WAL for the data: seconds per GB). Connections to `name` are ended first.
 */
export async function keepAsImported(serverUrl: string, name: string): Promise<void> {
  await withClient(`${serverUrl}/postgres`, async (c) => {
    await c.query(`DROP DATABASE IF EXISTS ${ident(asImported(name))}`);
    await c.query('SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()', [name]);
    await c.query(`CREATE DATABASE ${ident(asImported(name))} TEMPLATE ${ident(name)} STRATEGY FILE_COPY`);
  });
}

/**
 * Makes database `name` again from its copy as imported (keepAsImported), ending every
 * connection to it; false, with `name` untouched, when there is no copy.
 */
export async function restoreAsImported(serverUrl: string, name: string): Promise<boolean> {
  return withClient(`${serverUrl}/postgres`, async (c) => {
    const copy = await c.query('SELECT 1 FROM pg_database WHERE datname = $1', [asImported(name)]);
    if (!copy.rowCount) return false;
    await c.query(`DROP DATABASE IF EXISTS ${ident(name)} WITH (FORCE)`);
    await c.query(`CREATE DATABASE ${ident(name)} TEMPLATE ${ident(asImported(name))} STRATEGY FILE_COPY`);
    return true;
  });
}

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
  /** What the run did with it: imported the export, restored it from its copy as imported, or used it as it was. */
  plan: 'import' | 'restore' | 'as-is';
  stop(): Promise<void>;
}

/**
 * What a run does with its database: `import` the export (never imported into it, or no copy
 * of this export as imported to start from), `restore` it from that copy, or use it `as-is`
 * (DATABASE_URL, which is used as it is, or --keep-data).
 */
export function datasetPlan(s: { embedded: boolean; imported: boolean; copy: boolean; keep: boolean }): 'import' | 'restore' | 'as-is' {
  if (!s.imported) return 'import';
  if (!s.embedded || s.keep) return 'as-is';
  return s.copy ? 'restore' : 'import';
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
  // Which export a database holds: on the embedded server its comment names it (set at the
  // import, and again after a restore), as the copy's names the export it was made from; with
  // DATABASE_URL, the export's marker file for that URL.
  const source = path.basename(dir);
  const marker = path.join(dir, `loaded-${Buffer.from(url).toString('base64url').slice(-24)}`);
  const imported = embedded ? (await commentOf(embedded.serverUrl, name)) === source : fs.existsSync(marker);
  let plan = datasetPlan({ embedded: !!embedded, imported, copy: !!embedded && (await commentOf(embedded.serverUrl, asImported(name))) === source, keep: !!o.keep });
  if (embedded && plan === 'restore') {
    const began = performance.now();
    if (await restoreAsImported(embedded.serverUrl, name, source)) {
      await nameDatabase(embedded.serverUrl, name, source);
      log(`${name} made again from the dataset as imported (${((performance.now() - began) / 1000).toFixed(0)} s; --keep-data runs on it as earlier runs left it)`);
    } else {
      plan = 'import';
      log(`the copy of ${source} as imported is gone: importing it again`);
    }
  } else if (embedded && plan === 'import' && imported) {
    log(`no copy of ${source} as imported beside ${name}: importing it again`);
  } else if (embedded && plan === 'as-is') {
    log(`--keep-data: running on ${name} as earlier runs left it`);
  }
  if (embedded) {
    await embedded.ensureDatabase(name);
    await migrate(url);
  }
  const countReviews = () => withClient(url, async (c) => Number((await c.query('SELECT count(*) AS n FROM atelier.reviews')).rows[0].n));
  if (plan === 'import' || (await countReviews()) === 0) {
    plan = 'import';
    log('importing the dataset');
    await load({ dir, databaseUrl: url, rejectsFile: path.join(dir, 'rejects.csv') });
    if (!embedded) fs.writeFileSync(marker, new Date().toISOString());
    else {
      await nameDatabase(embedded.serverUrl, name, source);
      if (o.keep) log('--keep-data: no copy as imported kept');
      else {
        const began = performance.now();
        try {
          await keepAsImported(embedded.serverUrl, name, source);
          log(`kept a copy as imported (${((performance.now() - began) / 1000).toFixed(0)} s)`);
        } catch (err) {
          // A full disk, say: this run goes on; the next imports again (or runs with --keep-data).
          log(`could not keep a copy of the dataset as imported (${(err as Error).message}): the next run imports it again, unless run with --keep-data`);
        }
      }
    }
  }
  const reviews = await countReviews();
  log(`dataset: ${reviews.toLocaleString('en-US')} reviews`);
  return { url, products, reviews, plan, embedded: database.embedded ? { dir: config.EMBEDDED_PG_DIR, serverUrl: database.embedded.serverUrl } : undefined, stop: () => database.stop() };
}

/** A database's comment (null without one, or without the database). */
async function commentOf(serverUrl: string, database: string): Promise<string | null> {
  return withClient(`${serverUrl}/postgres`, async (c) =>
    (await c.query<{ comment: string | null }>("SELECT shobj_description(oid, 'pg_database') AS comment FROM pg_database WHERE datname = $1", [database])).rows[0]?.comment ?? null);
}

/** Names the export database `database` holds, in its comment. */
async function nameDatabase(serverUrl: string, database: string, source: string): Promise<void> {
  await withClient(`${serverUrl}/postgres`, (c) => c.query(`COMMENT ON DATABASE ${ident(database)} IS '${source.replaceAll("'", "''")}'`));
}

/** The copy of database `name` as imported. */
const asImported = (name: string) => `${name}_as_imported`;

/**
 * Keeps database `name` as it is now (just imported from export `source`) as a copy beside
 * it, replacing an older copy: a file copy of the database (CREATE DATABASE … TEMPLATE,
 * STRATEGY FILE_COPY, which writes no WAL for the data: seconds per GB), named by its
 * comment, and closed to connections (nothing writes to it by mistake, and no session left
 * on it can stop a restore). Connections to `name` are ended first.
 */
export async function keepAsImported(serverUrl: string, name: string, source: string): Promise<void> {
  const copy = ident(asImported(name));
  await withClient(`${serverUrl}/postgres`, async (c) => {
    await c.query(`DROP DATABASE IF EXISTS ${copy} WITH (FORCE)`);
    await c.query('SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()', [name]);
    await c.query(`CREATE DATABASE ${copy} TEMPLATE ${ident(name)} STRATEGY FILE_COPY`);
    await c.query(`ALTER DATABASE ${copy} ALLOW_CONNECTIONS false`);
  });
  await nameDatabase(serverUrl, asImported(name), source);
}

/**
 * Makes database `name` again from its copy as imported from export `source`
 * (keepAsImported), ending every connection to it; false, with `name` untouched, when there
 * is no such copy.
 */
export async function restoreAsImported(serverUrl: string, name: string, source: string): Promise<boolean> {
  if ((await commentOf(serverUrl, asImported(name))) !== source) return false;
  await withClient(`${serverUrl}/postgres`, async (c) => {
    await c.query(`DROP DATABASE IF EXISTS ${ident(name)} WITH (FORCE)`);
    await c.query(`CREATE DATABASE ${ident(name)} TEMPLATE ${ident(asImported(name))} STRATEGY FILE_COPY`);
  });
  return true;
}

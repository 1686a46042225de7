// The CSV import. Each file streams through the record reader and the row checks into
// COPY … FROM STDIN (pg-copy-streams) on staging tables in schema atelier_load that have
// no indexes. The meta aggregates are counted while the rows stream past and COPYed too
// (the set-based SQL recomputation took 53 s at full scale against 4 s; tests check one
// against the other). Then the keys, indexes and foreign keys are replayed from the live
// schema's own catalog, ANALYZE runs, the sequences move past the largest ids, and one
// transaction swaps atelier_load in for atelier. Until that commit the previous data keeps
// serving, whatever happens to this process.
import fs from 'node:fs';
import path from 'node:path';
import { once } from 'node:events';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { StringDecoder } from 'node:string_decoder';
import { from as copyFrom } from 'pg-copy-streams';
import { Db, type Client } from '../db';
import { advanceSequences } from '../reviews/aggregates';
import { CHANGES_CHANNEL } from '../response-cache/invalidation-feed';
import { FILES, quote, type FileKey } from './csv-format';
import { CsvReader } from './csv-reader';
import { characteristicsCopy, checkRow, LoadIndex, productRatingsCopy, TARGET } from './rows';
import { PageStore, type PageStoreOptions, type PageStoreStats } from './id-index';

export const LIVE = 'atelier';
export const STAGING = 'atelier_load';
const OLD = 'atelier_old';
/** The tables the import fills; any other live table starts empty in the new data set. */
const LOADED_TABLES = ['reviews', 'reviews_photos', 'characteristics', 'characteristic_reviews', 'product_ratings'];
const IMPORT_LOCK = 7_240_102;
/**
 * The write fence (db/migrations/0005): held exclusively for the import's run, so the API's
 * writes, which take it shared, get a JSON 503 instead of landing in tables the swap drops.
 */
const WRITE_FENCE = 7_240_103;
// Small reads keep each chunk's short-lived strings in V8's young generation: measured at
// full scale, 64 KiB reads ran a dry run in 34 s at 142 MB peak RSS, 1 MiB reads in 47 s at 265 MB.
const READ_CHUNK = 64 * 1024;

export interface FileStats {
  key: FileKey;
  file: string;
  read: number;
  loaded: number;
  rejected: number;
  seconds: number;
}

export interface LoadReport {
  files: FileStats[];
  /** Build steps after COPY (aggregates, keys, indexes, analyze, swap) with their durations. */
  steps: { name: string; seconds: number }[];
  totalSeconds: number;
  peakRssBytes: number;
  /** The cross-file index's pages: its memory budget, and what went to its temporary file. */
  index: PageStoreStats;
  rejectsFile: string;
  dryRun: boolean;
}

export interface Progress {
  start(key: FileKey, file: string, bytes: number): void;
  update(key: FileKey, bytesRead: number, rows: number): void;
  finish(key: FileKey): void;
  step(name: string): void;
}

export interface LoadOptions {
  dir: string;
  /** Required unless dryRun. */
  databaseUrl?: string;
  rejectsFile?: string;
  dryRun?: boolean;
  progress?: Progress;
  /** The cross-file index's memory budget and page size (see PageStore). */
  index?: PageStoreOptions;
  /** Test hook: called when a named point of the import is reached. */
  onPoint?: (point: string) => void | Promise<void>;
}

/** Fails the import as a whole (a missing file, a wrong header): nothing is changed. */
export class ImportError extends Error {}

class RejectsWriter {
  private readonly stream: fs.WriteStream;
  constructor(readonly file: string) {
    fs.mkdirSync(path.dirname(path.resolve(file)), { recursive: true });
    this.stream = fs.createWriteStream(file);
    this.stream.write('file,line,reason,raw\n');
  }
  add(file: string, line: number, reason: string, raw: string): void {
    this.stream.write(`${file},${line},${quote(reason)},${quote(raw)}\n`);
  }
  async drained(): Promise<void> {
    if (this.stream.writableNeedDrain) await once(this.stream, 'drain');
  }
  async close(): Promise<void> {
    if (this.stream.writableFinished) return;
    if (!this.stream.writableEnded) this.stream.end();
    await once(this.stream, 'finish');
  }
}

/** What every file of one import shares. */
interface Run {
  dir: string;
  ix: LoadIndex;
  rejects: RejectsWriter;
  progress?: Progress;
  point: (name: string) => Promise<void>;
}

/** Reads one file, validates each record, and writes the good ones (COPY text) to `sink`. */
async function streamFile(key: FileKey, run: Run, sink: Writable, signal?: AbortSignal): Promise<FileStats> {
  const { dir, ix, rejects, progress } = run;
  const { name, header } = FILES[key];
  const file = path.join(dir, name);
  const started = performance.now();
  const stats: FileStats = { key, file: name, read: 0, loaded: 0, rejected: 0, seconds: 0 };
  progress?.start(key, name, fs.statSync(file).size);

  let out: string[] = [];
  let sawHeader = false;
  const reader = new CsvReader((fields, line, raw, error) => {
    if (!sawHeader) {
      sawHeader = true;
      if (fields.join(',').toLowerCase() !== header.join(',')) {
        throw new ImportError(`${name} line ${line}: expected header "${header.join(',')}", found "${raw.slice(0, 200)}"`);
      }
      return;
    }
    stats.read++;
    const result = error ? { reject: error } : checkRow(key, fields, ix, raw);
    if ('copy' in result) {
      stats.loaded++;
      out.push(result.copy);
    } else {
      stats.rejected++;
      rejects.add(name, line, result.reject, raw);
    }
  });

  let bytes = 0;
  let midway = false;
  const decoder = new StringDecoder('utf8');
  await pipeline(
    fs.createReadStream(file, { highWaterMark: READ_CHUNK }),
    async function* (source: AsyncIterable<Buffer>) {
      for await (const chunk of source) {
        bytes += chunk.length;
        reader.push(decoder.write(chunk));
        if (out.length) {
          yield out.join('');
          out = [];
          if (!midway) {
            midway = true;
            await run.point(`copying-${key}`);
          }
        }
        await rejects.drained();
        progress?.update(key, bytes, stats.read);
      }
      reader.push(decoder.end());
      reader.end();
      if (!sawHeader) throw new ImportError(`${name} is empty: expected header "${header.join(',')}"`);
      if (out.length) yield out.join('');
      out = [];
    },
    sink,
    { signal },
  );
  stats.seconds = (performance.now() - started) / 1000;
  progress?.finish(key);
  return stats;
}

const nullSink = () => new Writable({ write: (_c, _e, cb) => cb() });

/**
 * Creates a staging table like the live one and COPYs into it what `write` sends to the
 * COPY stream, in one transaction: with wal_level=minimal the rows then skip WAL.
 * (Building each table's indexes inside that transaction too was measured: it saves WAL
 * but serialises the builds behind each COPY, 117 s against 108 s at full scale.)
 */
async function copyInto<T>(db: Db, table: string, columns: string, format: 'text' | 'csv', write: (copy: Writable) => Promise<T>): Promise<T> {
  const client = await db.connect();
  try {
    await client.query('BEGIN');
    // No autovacuum while loading: it would vacuum and analyze the fresh tables during the
    // index builds and compete for the same two cores. Re-enabled before the swap.
    await client.query(`CREATE TABLE ${STAGING}.${table} (LIKE ${LIVE}.${table} INCLUDING DEFAULTS INCLUDING IDENTITY INCLUDING CONSTRAINTS)
                        WITH (autovacuum_enabled = false)`);
    // FREEZE (allowed because the table is new in this transaction) writes the rows
    // already frozen and all-visible: no vacuum pass or hint-bit writes after the import.
    const copy = client.query(copyFrom(`COPY ${STAGING}.${table} (${columns}) FROM STDIN (FORMAT ${format}, FREEZE)`));
    // pipeline() reports the COPY's errors; one arriving after it settled (the server's
    // answer to our CopyFail) must not become an unhandled 'error' event.
    copy.on('error', () => undefined);
    const result = await write(copy);
    await client.query('COMMIT');
    return result;
  } catch (err) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw err;
  } finally {
    client.release();
  }
}

function copyFile(db: Db, key: Exclude<FileKey, 'characteristics'>, run: Run, signal?: AbortSignal): Promise<FileStats> {
  const { table, columns, format } = TARGET[key];
  return copyInto(db, table, columns, format, (copy) => streamFile(key, run, copy, signal));
}

/** COPYs rows the import computed itself (aggregates), from a generator of COPY text. */
function copyComputed(db: Db, table: string, columns: string, rows: Iterable<string>, signal?: AbortSignal): Promise<void> {
  return copyInto(db, table, columns, 'text', (copy) => pipeline(Readable.from(rows), copy, { signal }));
}

/**
 * The live schema's keys and indexes (per table, primary key first) and foreign keys,
 * rewritten to target the staging schema.
 */
async function structureOf(client: Client): Promise<{ indexes: Map<string, string[]>; foreignKeys: string[]; triggers: string[] }> {
  // An empty search_path makes the catalog print schema-qualified names.
  await client.query('SET search_path = pg_catalog');
  const constraints = await client.query<{ table: string; name: string; def: string; type: string }>(`
    SELECT c.relname AS table, k.conname AS name, pg_get_constraintdef(k.oid) AS def, k.contype AS type
    FROM pg_constraint k JOIN pg_class c ON c.oid = k.conrelid
    WHERE k.connamespace = '${LIVE}'::regnamespace AND k.contype IN ('p', 'u', 'f')
    ORDER BY k.contype DESC, c.relname, k.conname`);
  const indexes = await client.query<{ table: string; def: string }>(`
    SELECT t.relname AS table, pg_get_indexdef(i.indexrelid) AS def
    FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_class t ON t.oid = i.indrelid
    WHERE c.relnamespace = '${LIVE}'::regnamespace
      AND NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = i.indexrelid AND k.contype IN ('p', 'u'))
    ORDER BY c.relname`);
  // The change-notification triggers (db/migrations/0003) the hosts' caches depend on.
  const triggers = await client.query<{ def: string }>(`
    SELECT pg_get_triggerdef(t.oid) AS def
    FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
    WHERE c.relnamespace = '${LIVE}'::regnamespace AND NOT t.tgisinternal
    ORDER BY t.tgname`);
  await client.query('RESET search_path');
  const add = (r: { table: string; name: string; def: string }) =>
    `ALTER TABLE ${STAGING}.${r.table} ADD CONSTRAINT ${r.name} ${r.def.replace(/REFERENCES atelier\./g, `REFERENCES ${STAGING}.`)}`;
  const byTable = new Map<string, string[]>();
  const put = (table: string, statement: string) => byTable.set(table, [...(byTable.get(table) ?? []), statement]);
  for (const r of constraints.rows) if (r.type !== 'f') put(r.table, add(r));
  for (const r of indexes.rows) put(r.table, r.def.replace(/ ON atelier\./, ` ON ${STAGING}.`));
  return {
    indexes: byTable,
    // The loader has already checked every reference row by row (an orphan is a reject),
    // so the foreign keys are added without re-scanning 22 M rows; PostgreSQL enforces
    // them on every later write.
    foreignKeys: constraints.rows.filter((r) => r.type === 'f').map((r) => `${add(r)} NOT VALID`),
    triggers: triggers.rows.map((r) => r.def.replace(/ ON atelier\./, ` ON ${STAGING}.`)),
  };
}

/** Runs statements on up to `width` connections at once. */
async function runParallel(db: Db, statements: string[], width = 2): Promise<void> {
  const queue = [...statements];
  const worker = async () => {
    const client = await db.connect();
    try {
      await client.query('SET statement_timeout = 0');
      await client.query("SET maintenance_work_mem = '512MB'");
      // Two builds at once already use both cores; parallel workers would only oversubscribe.
      if (width > 1) await client.query('SET max_parallel_maintenance_workers = 0');
      for (let s = queue.shift(); s !== undefined; s = queue.shift()) await client.query(s);
    } finally {
      client.release();
    }
  };
  await Promise.all(Array.from({ length: Math.min(width, statements.length) }, worker));
}

/**
 * Two streaming tasks at once. The first to fail stops the other (its pipeline is destroyed
 * through the signal, and its COPY rolled back), and its error is thrown once both have
 * ended: the import's finally closes the index and the connections they use, and must not
 * do so under a stream still running, nor wait for a whole file to be read in vain.
 */
async function both<A, B>(a: (signal: AbortSignal) => Promise<A>, b: (signal: AbortSignal) => Promise<B>): Promise<[A, B]> {
  const stop = new AbortController();
  let first: { error: unknown } | undefined;
  const watch = <T>(task: Promise<T>) => task.catch((error: unknown) => {
    if (first === undefined) {
      first = { error };
      stop.abort(error);
    }
    throw error;
  });
  const [ra, rb] = await Promise.allSettled([watch(a(stop.signal)), watch(b(stop.signal))]);
  if (first !== undefined) throw first.error;
  return [(ra as PromiseFulfilledResult<A>).value, (rb as PromiseFulfilledResult<B>).value];
}

function peakRss(): number {
  return Math.max(process.resourceUsage().maxRSS * 1024, process.memoryUsage().rss);
}

export async function load(opts: LoadOptions): Promise<LoadReport> {
  const started = performance.now();
  const dryRun = opts.dryRun ?? false;
  if (!fs.existsSync(opts.dir) || !fs.statSync(opts.dir).isDirectory()) throw new ImportError(`not a directory: ${opts.dir}`);
  if (!dryRun && !opts.databaseUrl) throw new ImportError('a database URL is required unless --dry-run');
  for (const { name } of Object.values(FILES)) {
    const file = path.join(opts.dir, name);
    if (!fs.existsSync(file)) throw new ImportError(`missing file ${file}`);
  }
  const ix = new LoadIndex(new PageStore(opts.index));
  let rejects: RejectsWriter;
  try {
    rejects = new RejectsWriter(opts.rejectsFile ?? path.join(opts.dir, 'rejects.csv'));
  } catch (err) {
    ix.store.close();
    throw err;
  }
  const steps: LoadReport['steps'] = [];
  const point = async (name: string) => {
    await opts.onPoint?.(name);
  };
  const run: Run = { dir: opts.dir, ix, rejects, progress: opts.progress, point };

  if (dryRun) {
    try {
      const files: FileStats[] = [];
      for (const key of ['reviews', 'characteristics', 'photos', 'ratings'] as FileKey[]) {
        files.push(await streamFile(key, run, nullSink()));
      }
      return { files, steps, totalSeconds: (performance.now() - started) / 1000, peakRssBytes: peakRss(), index: ix.store.stats(), rejectsFile: rejects.file, dryRun };
    } finally {
      ix.store.close();
      await rejects.close();
    }
  }

  // Statement timeouts are for API requests; a bulk load's statements run as long as they need.
  const db = new Db({ connectionString: opts.databaseUrl!, poolSize: 4, statementTimeoutMs: 0, connectTimeoutMs: 10_000, application: 'atelier-import' });
  let lock: Awaited<ReturnType<Db['connect']>>;
  try {
    lock = await db.connect();
  } catch (err) {
    ix.store.close();
    await rejects.close().catch(() => undefined);
    await db.close().catch(() => undefined);
    throw err;
  }
  try {
    await lock.query('SET statement_timeout = 0');
    const got = await lock.query<{ ok: boolean }>('SELECT pg_try_advisory_lock($1) AS ok', [IMPORT_LOCK]);
    if (!got.rows[0].ok) throw new ImportError('another import is running against this database');
    // Waits for writes in flight (milliseconds); from here until the end every write is refused.
    await lock.query('SELECT pg_advisory_lock($1)', [WRITE_FENCE]);
    await point('writes-fenced');
    await lock.query(`DROP SCHEMA IF EXISTS ${STAGING} CASCADE`);
    await lock.query(`CREATE SCHEMA ${STAGING}`);
    // Tables the export does not fill (idempotency keys, …) start empty in the new data set.
    const others = await lock.query<{ tablename: string }>(
      "SELECT tablename FROM pg_tables WHERE schemaname = $1 AND tablename <> ALL($2::text[])",
      [LIVE, LOADED_TABLES]);
    for (const { tablename } of others.rows) {
      await lock.query(`CREATE TABLE ${STAGING}.${tablename} (LIKE ${LIVE}.${tablename} INCLUDING DEFAULTS INCLUDING IDENTITY INCLUDING CONSTRAINTS)`);
    }
    await point('staging-created');

    // Reviews and characteristics are independent; photos and ratings need both read.
    // Characteristics are only checked and indexed here: they are written with their
    // rating totals once the ratings have been counted.
    const structure = await structureOf(lock);
    const [reviews, characteristics] = await both((signal) => copyFile(db, 'reviews', run, signal), (signal) => streamFile('characteristics', run, nullSink(), signal));
    await point('copied-reviews');
    const [photos, ratings] = await both((signal) => copyFile(db, 'photos', run, signal), (signal) => copyFile(db, 'ratings', run, signal));
    await rejects.close();
    await point('copied-all');
    const files = [reviews, characteristics, photos, ratings];

    const step = async (name: string, fn: () => Promise<unknown>) => {
      opts.progress?.step(name);
      const t = performance.now();
      await fn();
      steps.push({ name, seconds: (performance.now() - t) / 1000 });
      await point(name);
    };
    await step('aggregates', () => both(
      (signal) => copyComputed(db, 'characteristics', 'id, product_id, name, rating_sum, rating_count', characteristicsCopy(ix), signal),
      (signal) => copyComputed(db, 'product_ratings', 'product_id, r1, r2, r3, r4, r5, recommended, not_recommended', productRatingsCopy(ix), signal),
    ));
    // Largest table first, so the two connections finish together. (Building the reviews'
    // indexes during the photos/ratings COPY was tried: on 2 cores it only moved the time.)
    const rows: Record<string, number> = {
      characteristic_reviews: ratings.loaded, reviews: reviews.loaded, characteristics: characteristics.loaded, reviews_photos: photos.loaded, product_ratings: 0,
    };
    const ordered = [...structure.indexes.entries()].sort((a, b) => (rows[b[0]] ?? 0) - (rows[a[0]] ?? 0));
    await step('keys and indexes', () => runParallel(db, ordered.flatMap(([, statements]) => statements)));
    await step('foreign keys', () => runParallel(db, structure.foreignKeys));
    await step('triggers', () => runParallel(db, structure.triggers, 1));
    await step('analyze', () => runParallel(db, LOADED_TABLES.map((t) => `ANALYZE ${STAGING}.${t}`)));
    await step('autovacuum on', () => runParallel(db, LOADED_TABLES.map((t) => `ALTER TABLE ${STAGING}.${t} RESET (autovacuum_enabled)`), 1));
    await step('sequences', () => advanceSequences(lock, STAGING));
    await step('swap', async () => {
      await lock.query('BEGIN');
      try {
        // Waits at most this long for in-flight API statements on the old tables.
        await lock.query("SET LOCAL lock_timeout = '30s'");
        await lock.query(`ALTER SCHEMA ${LIVE} RENAME TO ${OLD}`);
        await lock.query(`ALTER SCHEMA ${STAGING} RENAME TO ${LIVE}`);
        await point('swap-before-commit');
        await lock.query(`DROP SCHEMA ${OLD} CASCADE`);
        // Delivered at commit: every host's response cache empties as the new data goes live.
        await lock.query('SELECT pg_notify($1, $2)', [CHANGES_CHANNEL, '*']);
        await lock.query('COMMIT');
      } catch (err) {
        await lock.query('ROLLBACK').catch(() => undefined);
        throw err;
      }
    });
    return { files, steps, totalSeconds: (performance.now() - started) / 1000, peakRssBytes: peakRss(), index: ix.store.stats(), rejectsFile: rejects.file, dryRun };
  } finally {
    ix.store.close();
    await rejects.close().catch(() => undefined);
    await lock.query('SELECT pg_advisory_unlock($1)', [WRITE_FENCE]).catch(() => undefined);
    await lock.query('SELECT pg_advisory_unlock($1)', [IMPORT_LOCK]).catch(() => undefined);
    lock.release();
    await db.close();
  }
}

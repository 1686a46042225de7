// The benchmark's baseline: PostgreSQL's own CSV COPY of the four files, as they are,
// into bare tables (no validation, no indexes, no aggregates), two files at a time
// like the import. What the import costs is measured against this.
import fs from 'node:fs';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { from as copyFrom } from 'pg-copy-streams';
import type { Db } from '../src/db';
import { FILES, type FileKey } from '../src/etl/csv-format';

const SCHEMA = 'bench_raw';
const DDL: Record<FileKey, string> = {
  reviews: `id int, product_id int, rating int, date text, summary text, body text, recommend boolean, reported boolean,
            reviewer_name text, reviewer_email text, response text, helpfulness int`,
  photos: 'id int, review_id int, url text',
  characteristics: 'id int, product_id int, name text',
  ratings: 'id int, characteristic_id int, review_id int, value int',
};

async function copyOne(db: Db, key: FileKey, dir: string): Promise<number> {
  const client = await db.connect();
  try {
    await client.query('SET statement_timeout = 0');
    await client.query('BEGIN');
    await client.query(`CREATE TABLE ${SCHEMA}.${key} (${DDL[key]})`);
    const copy = client.query(copyFrom(`COPY ${SCHEMA}.${key} FROM STDIN (FORMAT csv, HEADER true)`));
    await pipeline(fs.createReadStream(path.join(dir, FILES[key].name), { highWaterMark: 1 << 20 }), copy);
    await client.query('COMMIT');
    return copy.rowCount ?? 0;
  } finally {
    client.release();
  }
}

/** Returns the rows copied and the seconds it took; drops its tables afterwards. */
export async function rawCopy(db: Db, dir: string): Promise<{ rows: number; seconds: number }> {
  await db.query(`DROP SCHEMA IF EXISTS ${SCHEMA} CASCADE`);
  await db.query(`CREATE SCHEMA ${SCHEMA}`);
  const started = performance.now();
  try {
    const counts = [
      ...(await Promise.all([copyOne(db, 'reviews', dir), copyOne(db, 'characteristics', dir)])),
      ...(await Promise.all([copyOne(db, 'photos', dir), copyOne(db, 'ratings', dir)])),
    ];
    return { rows: counts.reduce((a, b) => a + b, 0), seconds: (performance.now() - started) / 1000 };
  } finally {
    await db.query(`DROP SCHEMA IF EXISTS ${SCHEMA} CASCADE`);
  }
}

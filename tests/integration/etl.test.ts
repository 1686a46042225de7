// The CSV import: every bad row reported by file, line and reason while every good row
// loads; loaded data answers the API; reruns are idempotent; interrupted imports leave
// the previous data serving.
import { spawn } from 'node:child_process';
import { fromRoot } from '../../src/lib/paths';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parse } from 'csv-parse/sync';
import request from 'supertest';
import { createApp } from '../../src/app';
import { generate } from '../../src/etl/generate';
import { load } from '../../src/etl/load';
import { auditAggregates } from '../../src/reviews/aggregates';
import { createTestDatabase, type TestDatabase } from '../helpers/test-db';

const FIXTURE = fromRoot('tests', 'fixtures', 'dirty-export');
let t: TestDatabase;
let tmp: string;

beforeAll(async () => {
  t = await createTestDatabase();
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'atelier-etl-'));
});
afterAll(async () => {
  await t.drop();
  fs.rmSync(tmp, { recursive: true, force: true });
});

const readRejects = (file: string) => parse(fs.readFileSync(file, 'utf8'), { columns: true }) as { file: string; line: string; reason: string; raw: string }[];

async function fingerprint(): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const table of ['reviews', 'reviews_photos', 'characteristics', 'characteristic_reviews', 'product_ratings']) {
    const key = table === 'product_ratings' ? 'product_id' : 'id';
    const { rows } = await t.db.query(`SELECT count(*) || ':' || coalesce(md5(string_agg(t::text, '|' ORDER BY ${key})), '') AS f FROM atelier.${table} t`);
    out[table] = rows[0].f;
  }
  return out;
}

describe('a hand-made export with every kind of dirt', () => {
  let rejectsFile: string;
  beforeAll(async () => {
    rejectsFile = path.join(tmp, 'fixture-rejects.csv');
    await load({ dir: FIXTURE, databaseUrl: t.url, rejectsFile });
  });

  test('the rejects file lists exactly the bad lines, with their reasons', () => {
    // Files are loaded two at a time, so the rejects file interleaves them: compare in file order.
    const order = ['reviews.csv', 'characteristics.csv', 'reviews_photos.csv', 'characteristic_reviews.csv'];
    const got = readRejects(rejectsFile)
      .map((r) => [r.file, Number(r.line), r.reason] as [string, number, string])
      .sort((a, b) => order.indexOf(a[0]) - order.indexOf(b[0]) || a[1] - b[1]);
    expect(got).toEqual([
      ['reviews.csv', 6, 'rating 0 is out of range 1..5'],
      ['reviews.csv', 7, 'recommend "yes" is not true or false'],
      ['reviews.csv', 8, 'date "not-a-date" is neither epoch milliseconds nor a valid YYYY-MM-DD date'],
      ['reviews.csv', 9, 'helpfulness -1 is out of range 0..2147483647'],
      ['reviews.csv', 10, 'duplicate id 1'],
      ['reviews.csv', 11, 'expected 12 fields, found 9'],
      ['reviews.csv', 12, expect.stringMatching(/^broken quoting/)],
      ['reviews.csv', 13, 'product_id "x" is not an integer'],
      ['reviews.csv', 14, 'date "2021-02-30" is neither epoch milliseconds nor a valid YYYY-MM-DD date'],
      ['reviews.csv', 16, 'expected 12 fields, found 13'],
      ['characteristics.csv', 5, 'duplicate id 3'],
      ['characteristics.csv', 6, 'product_id 0 is out of range 1..2147483647'],
      ['characteristics.csv', 7, 'expected 3 fields, found 2'],
      ['reviews_photos.csv', 4, 'orphan: review 99 is not in the loaded reviews'],
      ['reviews_photos.csv', 6, 'duplicate id 1'],
      ['reviews_photos.csv', 7, 'orphan: review 4 is not in the loaded reviews'],
      ['characteristic_reviews.csv', 7, 'characteristic 1 belongs to product 1 but review 12 to product 2'],
      ['characteristic_reviews.csv', 8, 'value 9 is out of range 1..5'],
      ['characteristic_reviews.csv', 9, 'orphan: characteristic 99 is not in the loaded characteristics'],
      ['characteristic_reviews.csv', 10, 'orphan: review 999 is not in the loaded reviews'],
      ['characteristic_reviews.csv', 11, 'duplicate id 1'],
    ]);
    expect(readRejects(rejectsFile).find((r) => r.file === 'reviews.csv' && r.line === '6')?.raw).toBe('4,1,0,1610178433963,"s","b",true,false,"n","e",null,0');
  });

  test('every good row loads, with both date formats, NULL responses and multi-line text intact', async () => {
    const { rows } = await t.db.query(`SELECT id, date, response, body, reported FROM atelier.reviews ORDER BY id`);
    expect(rows.map((r) => r.id)).toEqual([1, 2, 3, 12]);
    expect(rows[1].date.toISOString()).toBe('2019-01-01T00:00:00.000Z');
    expect(rows[0].date.toISOString()).toBe(new Date(1596080481467).toISOString());
    expect(rows.map((r) => r.response)).toEqual([null, 'We replied', null, null]);
    expect(rows[2].body).toBe('line one\r\nline two');
    expect(rows[2].reported).toBe(true);
    const counts = await t.db.query(`SELECT (SELECT count(*) FROM atelier.characteristics) AS c, (SELECT count(*) FROM atelier.reviews_photos) AS p,
      (SELECT count(*) FROM atelier.characteristic_reviews) AS r`);
    expect(counts.rows[0]).toEqual({ c: 3, p: 3, r: 6 });
  });

  test('the loaded data answers the API, meta equal to a recomputation', async () => {
    const app = createApp(t.db, { log: () => undefined });
    expect((await request(app).get('/reviews/meta?product_id=1')).body).toEqual({
      product_id: '1',
      ratings: { 4: '1', 5: '1' },
      recommended: { false: '1', true: '1' },
      characteristics: { Fit: { id: 1, value: '4.5000000000000000' }, Length: { id: 2, value: '2.5000000000000000' } },
    });
    expect((await request(app).get('/reviews/meta?product_id=2')).body.characteristics).toEqual({ Quality: { id: 3, value: '4.0000000000000000' } });
    const list = await request(app).get('/reviews?product_id=1&sort=newest');
    expect(list.body.results.map((r: { review_id: number }) => r.review_id)).toEqual([1, 2]);
    expect(list.body.results[0].summary).toBe('Great, really');
    expect(list.body.results[0].body).toBe('Body with "quotes" and, commas');
    expect(list.body.results[0].photos).toEqual([{ id: 1, url: 'https://x/1.jpg' }, { id: 2, url: 'https://x/2.jpg' }]);
    expect((await auditAggregates(t.db)).drifted).toEqual([]);
  });

  test('POST /reviews works right after an import: sequences are past the loaded ids', async () => {
    const app = createApp(t.db, { log: () => undefined });
    const res = await request(app).post('/reviews').send({
      product_id: 1, rating: 5, body: 'x'.repeat(60), recommend: true, name: 'n', email: 'n@example.com',
      photos: ['https://x/new.jpg'], characteristics: { 1: 5, 2: 5 },
    });
    expect(res.status).toBe(201);
    expect(res.body.review_id).toBe(13);
  });

  test('--dry-run validates and reports without touching the database', async () => {
    const before = await fingerprint();
    const report = await load({ dir: FIXTURE, dryRun: true, rejectsFile: path.join(tmp, 'dry.csv') });
    expect(report.files.map((f) => [f.file, f.read, f.loaded, f.rejected])).toEqual([
      ['reviews.csv', 14, 4, 10],
      ['characteristics.csv', 6, 3, 3],
      ['reviews_photos.csv', 6, 3, 3],
      ['characteristic_reviews.csv', 11, 6, 5],
    ]);
    expect(await fingerprint()).toEqual(before);
  });
});

describe('a generated dirty export', () => {
  let dir: string;
  let manifest: { file: string; line: string; kind: string }[];
  beforeAll(async () => {
    dir = path.join(tmp, 'gen');
    const result = await generate({ out: dir, scale: 0.002, seed: 7, dirty: 0.01 });
    manifest = parse(fs.readFileSync(result.manifest!, 'utf8'), { columns: true });
  });

  test('the rejects are exactly the injected rows, every kind is injected, and the rest loads', async () => {
    const report = await load({ dir, databaseUrl: t.url, rejectsFile: path.join(dir, 'rejects.csv') });
    const rejects = readRejects(path.join(dir, 'rejects.csv'));
    const key = (r: { file: string; line: string }) => `${r.file}:${r.line}`;
    expect(rejects.map(key).sort()).toEqual(manifest.map(key).sort());
    expect(new Set(manifest.map((m) => m.kind)).size).toBeGreaterThanOrEqual(12);
    const loaded = report.files.reduce((n, f) => n + f.loaded, 0);
    const { rows } = await t.db.query(`SELECT (SELECT count(*) FROM atelier.reviews) + (SELECT count(*) FROM atelier.reviews_photos)
      + (SELECT count(*) FROM atelier.characteristics) + (SELECT count(*) FROM atelier.characteristic_reviews) AS n`);
    expect(rows[0].n).toBe(loaded);
    expect((await auditAggregates(t.db)).drifted).toEqual([]);
  });

  test('a second import of the same files gives the same database', async () => {
    const first = await fingerprint();
    await load({ dir, databaseUrl: t.url, rejectsFile: path.join(dir, 'rejects2.csv') });
    expect(await fingerprint()).toEqual(first);
  });

  test('with its index mostly in the temporary file (an 8 KB budget, 256-byte pages) the import gives the same database', async () => {
    const first = await fingerprint();
    const report = await load({ dir, databaseUrl: t.url, rejectsFile: path.join(dir, 'rejects3.csv'), index: { memoryBytes: 8192, pageBits: 6 } });
    expect(report.index).toMatchObject({ memoryBytes: 8192, lifted: false });
    expect(report.index.writes).toBeGreaterThan(100);
    expect(report.index.reloads).toBeGreaterThan(100);
    expect(await fingerprint()).toEqual(first);
    // The same rows rejected for the same reasons (two files stream at once, so not in the same order).
    const rows = (f: string) => readRejects(path.join(dir, f)).map((r) => JSON.stringify(r)).sort();
    expect(rows('rejects3.csv')).toEqual(rows('rejects.csv'));
  });

  test('a missing file or a wrong header fails the import and changes nothing', async () => {
    const before = await fingerprint();
    const broken = path.join(tmp, 'broken');
    fs.mkdirSync(broken, { recursive: true });
    for (const f of ['reviews.csv', 'characteristics.csv', 'reviews_photos.csv']) fs.copyFileSync(path.join(dir, f), path.join(broken, f));
    await expect(load({ dir: broken, databaseUrl: t.url })).rejects.toThrow(/missing file .*characteristic_reviews.csv/);
    fs.writeFileSync(path.join(broken, 'characteristic_reviews.csv'), 'id,review_id,characteristic_id,value\n1,1,1,1\n');
    await expect(load({ dir: broken, databaseUrl: t.url })).rejects.toThrow(/expected header/);
    expect(await fingerprint()).toEqual(before);
  });

  test('a file that fails stops the file streaming beside it: the error comes at once, not after the other file is read', async () => {
    const before = await fingerprint();
    const broken = path.join(tmp, 'broken-photos');
    fs.mkdirSync(broken, { recursive: true });
    for (const f of ['reviews.csv', 'characteristics.csv', 'characteristic_reviews.csv']) fs.copyFileSync(path.join(dir, f), path.join(broken, f));
    // Ratings (characteristic_reviews.csv) stream beside photos: make them many chunks long.
    const ratings = fs.readFileSync(path.join(dir, 'characteristic_reviews.csv'), 'utf8').split('\n').filter(Boolean);
    const extra = Array.from({ length: 20 }, (_, k) => ratings.slice(1).map((line) => line.replace(/^\d+/, (id) => String(Number(id) + (k + 1) * 10_000_000)))).flat();
    fs.writeFileSync(path.join(broken, 'characteristic_reviews.csv'), [...ratings, ...extra].join('\n') + '\n');
    fs.writeFileSync(path.join(broken, 'reviews_photos.csv'), 'id,url,review_id\n1,x,1\n');
    const finished: string[] = [];
    const progress = { start: () => undefined, update: () => undefined, step: () => undefined, finish: (key: string) => void finished.push(key) };
    await expect(load({ dir: broken, databaseUrl: t.url, rejectsFile: path.join(broken, 'rejects.csv'), progress })).rejects.toThrow(/reviews_photos.csv line 1: expected header/);
    expect(finished).toEqual(['characteristics', 'reviews']);
    expect(await fingerprint()).toEqual(before);
  });

  test('a row with a NUL character is rejected with its line; the rest of the file loads', async () => {
    const dirty = path.join(tmp, 'nul');
    fs.mkdirSync(dirty, { recursive: true });
    for (const f of ['reviews.csv', 'characteristics.csv', 'reviews_photos.csv', 'characteristic_reviews.csv']) fs.copyFileSync(path.join(FIXTURE, f), path.join(dirty, f));
    fs.appendFileSync(path.join(dirty, 'characteristics.csv'), '6,2,"Wi\u0000dth"\n7,2,"Width"\n');
    const report = await load({ dir: dirty, dryRun: true, rejectsFile: path.join(tmp, 'nul-rejects.csv') });
    const rejects = readRejects(path.join(tmp, 'nul-rejects.csv')).filter((r) => r.file === 'characteristics.csv');
    expect(rejects.map((r) => [Number(r.line), r.reason])).toEqual([
      [5, 'duplicate id 3'], [6, 'product_id 0 is out of range 1..2147483647'], [7, 'expected 3 fields, found 2'],
      [8, 'contains a NUL character, which PostgreSQL text cannot store'],
    ]);
    expect(report.files.find((f) => f.file === 'characteristics.csv')?.loaded).toBe(4);
  });

  /** Runs the compiled ETL CLI, pauses it at `point`, kills it with SIGKILL. */
  async function killAt(point: string): Promise<void> {
    const child = spawn(process.execPath, [fromRoot('dist', 'scripts', 'etl.js'), '--dir', dir, '--rejects', path.join(tmp, 'killed.csv')], {
      env: { ...process.env, DATABASE_URL: t.url, ETL_PAUSE_AT: point },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (out += d));
    const exited = new Promise((r) => child.once('exit', r));
    const deadline = Date.now() + 60_000;
    while (!out.includes(`paused at ${point}`)) {
      if (child.exitCode !== null || Date.now() > deadline) throw new Error(`ETL did not reach ${point}: ${out}`);
      await new Promise((r) => setTimeout(r, 50));
    }
    child.kill('SIGKILL');
    await exited;
  }

  test.each(['copying-reviews', 'copying-ratings', 'aggregates', 'keys and indexes', 'swap-before-commit'])(
    'when the import is killed at %s, then the previous data keeps serving and a rerun completes',
    async (point) => {
      const before = await fingerprint();
      const app = createApp(t.db, { log: () => undefined });
      const metaBefore = (await request(app).get('/reviews/meta?product_id=3')).body;
      await killAt(point);
      expect(await fingerprint()).toEqual(before);
      expect((await request(app).get('/reviews/meta?product_id=3')).body).toEqual(metaBefore);
      await load({ dir, databaseUrl: t.url, rejectsFile: path.join(tmp, 'rerun.csv') });
      expect(await fingerprint()).toEqual(before);
    },
  );

  // These write through the API, so they run after the tests that compare with the export.
  test('writes during an import get a JSON 503 (Retry-After) for its whole run and nothing of them is stored; after it they land', async () => {
    const app = createApp(t.db, { log: () => undefined });
    const { rows: [old] } = await t.db.query<{ id: number; product_id: number }>('SELECT id, product_id FROM atelier.reviews WHERE NOT reported ORDER BY id LIMIT 1');
    const writes = () => Promise.all([
      request(app).post('/reviews').send({ product_id: old.product_id, rating: 5, body: 'x'.repeat(60), recommend: true, name: 'during-import', email: 'd@example.com' }),
      request(app).put(`/reviews/${old.id}/helpful`),
      request(app).put(`/reviews/${old.id}/report`),
    ]);
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const seen: string[] = [];
    const importing = load({
      dir, databaseUrl: t.url, rejectsFile: path.join(tmp, 'fenced.csv'),
      onPoint: async (p) => {
        seen.push(p);
        if (p === 'copied-all') await gate;
      },
    });
    while (!seen.includes('copied-all')) await new Promise((r) => setTimeout(r, 20));
    for (const res of await writes()) {
      expect(res.status).toBe(503);
      expect(res.headers['retry-after']).toBe('30');
      expect(res.body.error).toMatch(/import/);
    }
    release();
    await importing;
    const { rows } = await t.db.query("SELECT count(*)::int AS n FROM atelier.reviews WHERE reviewer_name = 'during-import'");
    expect(rows[0].n).toBe(0);
    const after = await writes();
    expect(after.map((r) => r.status)).toEqual([201, 204, 204]);
    const listed = await request(app).get(`/reviews?product_id=${old.product_id}&sort=newest&count=1000`);
    expect(listed.body.results.filter((r: { reviewer_name: string }) => r.reviewer_name === 'during-import')).toHaveLength(1);
  });

  test('a failed import lifts the write fence as well', async () => {
    const app = createApp(t.db, { log: () => undefined });
    await expect(load({ dir, databaseUrl: t.url, rejectsFile: path.join(tmp, 'failed.csv'), onPoint: async (p) => {
      if (p === 'copied-all') throw new Error('stopped here by the test');
    } })).rejects.toThrow(/stopped here/);
    const { rows: [r] } = await t.db.query<{ id: number }>('SELECT id FROM atelier.reviews ORDER BY id LIMIT 1');
    expect((await request(app).put(`/reviews/${r.id}/helpful`)).status).toBe(204);
  });
});

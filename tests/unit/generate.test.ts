// The synthetic export: deterministic, in the export's exact format, at the scale asked.
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parse } from 'csv-parse/sync';
import { FILES } from '../../src/etl/csv-format';
import { generate } from '../../src/etl/generate';
import { load } from '../../src/etl/load';

let tmp: string;
beforeAll(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'atelier-gen-'));
});
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

const hash = (file: string) => crypto.createHash('sha256').update(fs.readFileSync(file)).digest('hex');

test('the same seed and scale give byte-identical files; another seed does not', async () => {
  const [a, b, c] = ['a', 'b', 'c'].map((d) => path.join(tmp, d));
  await generate({ out: a, scale: 0.001, seed: 5 });
  await generate({ out: b, scale: 0.001, seed: 5 });
  await generate({ out: c, scale: 0.001, seed: 6 });
  for (const { name } of Object.values(FILES)) {
    expect(hash(path.join(a, name))).toBe(hash(path.join(b, name)));
    expect(hash(path.join(a, name))).not.toBe(hash(path.join(c, name)));
  }
});

test("headers, quoting and value formats are the export's", async () => {
  const dir = path.join(tmp, 'fmt');
  await generate({ out: dir, scale: 0.002, seed: 1 });
  const text = (f: string) => fs.readFileSync(path.join(dir, f), 'utf8');
  for (const { name, header } of Object.values(FILES)) expect(text(name).split('\n')[0]).toBe(header.join(','));

  const reviews = text('reviews.csv');
  const records = parse(reviews, { from_line: 2 }) as string[][];
  for (const r of records) {
    expect(r).toHaveLength(12);
    expect(r[3]).toMatch(/^\d{13}$/);
    const year = new Date(Number(r[3])).getUTCFullYear();
    expect(year === 2020 || year === 2021).toBe(true);
    expect(['true', 'false']).toContain(r[6]);
    expect(['true', 'false']).toContain(r[7]);
    expect(r[2]).toMatch(/^[1-5]$/);
    expect(r[11]).toMatch(/^\d+$/);
  }
  // Text fields quoted, null responses unquoted, doubled quotes and embedded newlines present.
  expect(reviews).toMatch(/^\d+,\d+,[1-5],\d{13},"[^\n]*",".*",(true|false),(true|false),"[^"]*","[^"]*@[^"]*",null,\d+$/m);
  expect(reviews).toContain('""wow""');
  expect(records.some((r) => r[5].includes('\n'))).toBe(true);
  expect(records.some((r) => r[4].includes(','))).toBe(true);
  const responses = records.map((r) => r[10]);
  expect(responses.filter((x) => x === 'null' || x === '').length / responses.length).toBeGreaterThan(0.8);
  const reported = records.filter((r) => r[7] === 'true').length / records.length;
  expect(reported).toBeGreaterThan(0.005);
  expect(reported).toBeLessThan(0.03);
  const ratings = records.map((r) => Number(r[2]));
  expect(ratings.filter((x) => x >= 4).length / ratings.length).toBeGreaterThan(0.6);
  // A clean export loads with no rejects at all.
  const report = await load({ dir, dryRun: true, rejectsFile: path.join(tmp, 'fmt-rejects.csv') });
  expect(report.files.map((f) => f.rejected)).toEqual([0, 0, 0, 0]);
});

test("row counts follow the real export's proportions at the scale asked", async () => {
  const dir = path.join(tmp, 'scale');
  const r = await generate({ out: dir, scale: 0.01, seed: 3 });
  expect(r.products).toBe(10_000);
  const near = (got: number, fullScale: number) => {
    expect(got).toBeGreaterThan(fullScale * 0.01 * 0.9);
    expect(got).toBeLessThan(fullScale * 0.01 * 1.1);
  };
  near(r.rows.reviews, 5_774_952);
  near(r.rows.photos, 2_742_540);
  near(r.rows.characteristics, 3_347_679);
  near(r.rows.ratings, 19_327_575);
  // Skewed: most products have a handful of reviews, a few have hundreds.
  const perProduct = new Map<string, number>();
  for (const rec of parse(fs.readFileSync(path.join(dir, 'reviews.csv'), 'utf8'), { from_line: 2 }) as string[][]) {
    perProduct.set(rec[1], (perProduct.get(rec[1]) ?? 0) + 1);
  }
  const counts = [...perProduct.values()].sort((a, b) => a - b);
  expect(counts[Math.floor(counts.length / 2)]).toBeLessThanOrEqual(6);
  expect(counts[counts.length - 1]).toBeGreaterThanOrEqual(100);
  expect(perProduct.size / r.products).toBeGreaterThan(0.9);
  expect(perProduct.size / r.products).toBeLessThan(0.99);
});

test('the dirty manifest points at exactly the rows that are not clean', async () => {
  const dir = path.join(tmp, 'dirty');
  const r = await generate({ out: dir, scale: 0.002, seed: 9, dirty: 0.02 });
  const manifest = parse(fs.readFileSync(r.manifest!, 'utf8'), { columns: true }) as { file: string; line: string; kind: string }[];
  expect(manifest.length).toBe(r.injected.length);
  expect(manifest.length).toBeGreaterThan(50);
  // The quirks that are not errors are present too.
  expect(fs.readFileSync(path.join(dir, 'reviews.csv')).subarray(0, 3)).toEqual(Buffer.from([0xef, 0xbb, 0xbf]));
  expect(fs.readFileSync(path.join(dir, 'characteristics.csv'), 'utf8')).toContain('\r\n');
  expect(fs.readFileSync(path.join(dir, 'characteristic_reviews.csv'), 'utf8').endsWith('\n\n')).toBe(true);
  // Each listed line shows its kind of dirt.
  const lines = (f: string) => fs.readFileSync(path.join(dir, f), 'utf8').split('\n');
  const files = Object.fromEntries(Object.values(FILES).map(({ name }) => [name, lines(name)]));
  for (const m of manifest) {
    const line = files[m.file][Number(m.line) - 1];
    if (m.kind === 'bad_rating') expect(line).toMatch(/^\d+,\d+,[07],/);
    if (m.kind === 'negative_helpfulness') expect(line).toMatch(/,-3$/);
    if (m.kind === 'bad_boolean') expect(line).toContain(',yes,');
    if (m.kind === 'broken_quoting') expect(line).toContain('"He said "hi" there"');
    if (m.kind === 'bad_value') expect(line).toMatch(/,[09]$/);
  }
});

// The import's cross-file index: values survive pages going to the temporary file and
// back, memory stays within the budget whatever the number of ids, the file is unlinked,
// and ids out of order grow the budget instead of reading a page per row.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { IdCounters, IdMap, IdSet, PageStore } from '../../src/etl/id-index';

const dirs: string[] = [];
const tmpDir = () => {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), 'id-index-'));
  dirs.push(d);
  return d;
};
afterAll(() => dirs.forEach((d) => fs.rmSync(d, { recursive: true, force: true })));

// Pages of 256 bytes: 64 ids of an IdMap, 8 of a 7-wide IdCounters, 2,048 of an IdSet.
const small = (memoryBytes: number, dir = tmpDir()) => new PageStore({ memoryBytes, pageBits: 6, dir });

test('memory stays within the budget however many ids there are, and every value comes back', () => {
  const store = small(4096);
  const map = new IdMap(store);
  const counters = new IdCounters(store, 7);
  const set = new IdSet(store);
  let peak = 0;
  // As the import sees them: ids in order, three structures written in turn.
  for (let id = 1; id <= 50_000; id++) {
    map.set(id, id * 3);
    counters.add(id >> 2, id % 7, id);
    if (id % 3 === 0) set.add(id);
    peak = Math.max(peak, store.residentBytes);
  }
  // Every page's memory ever allocated (reused after a page is written out, never left to
  // the garbage collector): the budget, 16 pages.
  expect(peak).toBeLessThanOrEqual(4096);
  const written = store.stats();
  expect(written.writes).toBeGreaterThan(100);
  expect(written.fileBytes).toBeGreaterThan(200_000);
  expect(written.lifted).toBe(false);

  // A pass that only reads writes out at most the pages still in memory from the writes
  // (4 KB's worth: 16 pages), not every page again.
  const wrong: number[] = [];
  for (let id = 50_000; id >= 1; id--) {
    if (map.get(id) !== id * 3 || set.has(id) !== (id % 3 === 0)) wrong.push(id);
  }
  expect(wrong).toEqual([]);
  expect(store.stats().writes - written.writes).toBeLessThanOrEqual(16);
  expect(store.stats().reloads).toBeGreaterThan(700);
  expect(map.get(50_001)).toBe(0);
  expect(map.size).toBe(50_000);
  const expected = new Map<number, number[]>();
  for (let id = 1; id <= 50_000; id++) {
    const row = expected.get(id >> 2) ?? [0, 0, 0, 0, 0, 0, 0];
    row[id % 7] += id;
    expected.set(id >> 2, row);
  }
  expect(counters.get(1234)).toEqual(expected.get(1234));
  const entries = [...counters.entries()].map(([id, row]) => [id, [...row]]);
  expect(entries).toEqual([...expected.entries()].sort((a, b) => a[0] - b[0]));
  const pairs = [...map.entries()];
  expect(pairs.length).toBe(50_000);
  expect(pairs.every(([id, v], i) => id === i + 1 && v === id * 3)).toBe(true);
  expect(store.stats().reloads).toBeGreaterThan(100);
  // Each page has one place in the file, written again only when changed: 782 map pages,
  // 1,563 counter pages and 25 set pages of 256 bytes.
  expect(store.stats().fileBytes).toBeLessThanOrEqual((782 + 1563 + 25) * 256);
  expect(store.stats().lifted).toBe(false);
  store.close();
});

test('a page in use is never written out under its user, however long ago it was opened', () => {
  const store = small(1024);
  const hot = new IdMap(store);
  const stream = new IdMap(store);
  // `hot` stays on its first page while `stream` runs through hundreds of pages.
  const expected = new Array<number>(60).fill(0);
  for (let i = 1; i <= 20_000; i++) {
    stream.set(i, i);
    hot.set(1 + (i % 60), i);
    expected[i % 60] = i;
  }
  expect(store.stats().writes).toBeGreaterThan(100);
  expect(Array.from({ length: 60 }, (_, k) => hot.get(k + 1))).toEqual(expected);
  store.close();
});

test('a page read back and then changed is written out again with the change', () => {
  const store = small(512);
  const map = new IdMap(store);
  for (let id = 1; id <= 5000; id++) map.set(id, id);
  // has() brings each page back unchanged; set() then changes it in place.
  for (let id = 1; id <= 5000; id++) if (map.has(id) && id % 2 === 0) map.set(id, -id);
  // One write to a page, brought back by that write.
  for (let id = 1; id <= 5000; id += 64) map.set(id, 7);
  // And changed with no read first: set() brings the page back itself.
  for (let id = 3; id <= 5000; id += 3) map.set(id, 3 * id);
  const wrong: number[] = [];
  for (let id = 1; id <= 5000; id++) if (map.get(id) !== (id % 3 === 0 ? 3 * id : id % 64 === 1 ? 7 : id % 2 === 0 ? -id : id)) wrong.push(id);
  expect(wrong).toEqual([]);
  expect(store.stats().reloads).toBeGreaterThan(100);
  store.close();
});

test('two files streaming at once through one structure each keep their page: no page is read back per row', () => {
  const store = small(2048);
  const map = new IdMap(store);
  for (let id = 1; id <= 20_000; id++) map.set(id, id);
  const before = store.stats().reloads;
  // As photos and ratings look up reviews: two cursors far apart, taking turns every few rows.
  const wrong: number[] = [];
  for (let a = 1, b = 10_001; a <= 10_000; a += 8, b += 8) {
    for (let k = 0; k < 8; k++) if (map.get(a + k) !== a + k || map.get(b + k) !== b + k) wrong.push(a + k);
  }
  expect(wrong).toEqual([]);
  // Each of the 313 pages comes back about once (the page where one cursor ends and the
  // other begins, twice), not once per turn (2,500 turns).
  expect(store.stats().reloads - before).toBeLessThanOrEqual(320);
  expect(store.stats().lifted).toBe(false);
  store.close();
});

test('the least recently used page is the one written out: a page read on every turn stays while others stream past', () => {
  const store = small(2048);
  const map = new IdMap(store);
  for (let id = 1; id <= 64; id++) map.set(id, id);
  const wrong: number[] = [];
  // One structure, two cursors: one keeps coming back to the first page, the other writes
  // 20,000 ids (313 pages, far beyond the budget of 8).
  for (let id = 65; id <= 20_064; id++) {
    if (map.get(1 + (id % 64)) !== 1 + (id % 64)) wrong.push(id);
    map.set(id, id);
  }
  expect(wrong).toEqual([]);
  expect(store.stats().writes).toBeGreaterThan(300);
  // Written out by age alone, the first page would come back on every turn after the first 8 pages.
  expect(store.stats().reloads).toBe(0);
  store.close();
});

test('a store used after it is closed throws, whether the page asked for was in memory, in the file or never made', () => {
  const store = small(512);
  const map = new IdMap(store);
  for (let id = 1; id <= 5000; id++) map.set(id, id);
  store.close();
  expect(() => map.get(5)).toThrow(/used after it was closed/);
  expect(() => map.get(5000)).toThrow(/used after it was closed/);
  expect(() => map.set(4999, 1)).toThrow(/used after it was closed/);
  expect(() => map.get(1_000_000)).toThrow(/used after it was closed/);
  store.close();
});

test('after its temporary file fails, the index refuses every use instead of answering "absent"', () => {
  const store = small(512);
  const map = new IdMap(store);
  for (let id = 1; id <= 2000; id++) map.set(id, id);
  // The file goes away under the store (as a disk error would).
  fs.closeSync((store as unknown as { fd: number }).fd);
  const write = () => {
    for (let id = 2001; id <= 5000; id++) map.set(id, id);
  };
  expect(write).toThrow(/cannot write its temporary file in .* \(EBADF\)/);
  expect(() => map.get(1)).toThrow(/unusable after an earlier error/);
  expect(() => map.get(2000)).toThrow(/unusable after an earlier error/);
  expect(() => map.get(1_000_000)).toThrow(/unusable after an earlier error/);
  (store as unknown as { fd: number }).fd = -1;
  store.close();
});

test('a temporary folder that cannot be written fails at once, naming the folder and the ways out', () => {
  expect(() => new PageStore({ dir: '/nonexistent/atelier-import-index' })).toThrow(/cannot create its temporary file in \/nonexistent\/atelier-import-index \(ENOENT\); set TMPDIR .* --index-memory/);
});

test('a set reports a second add of an id, across the file', () => {
  const store = small(64);
  const set = new IdSet(store);
  const firsts: boolean[] = [];
  const seconds: boolean[] = [];
  for (let id = 1; id < 5000; id++) firsts.push(set.add(id));
  for (let id = 1; id < 5000; id += 7) seconds.push(set.add(id));
  expect(firsts.every((added) => added)).toBe(true);
  expect(seconds.some((added) => added)).toBe(false);
  expect(set.has(5000)).toBe(false);
  expect(store.stats().reloads).toBeGreaterThan(0);
  store.close();
});

test('the temporary file is unlinked as soon as it is opened', () => {
  const dir = tmpDir();
  const store = small(512, dir);
  const map = new IdMap(store);
  for (let id = 1; id < 10_000; id++) map.set(id, 1);
  expect(store.stats().fileBytes).toBeGreaterThan(0);
  expect(fs.readdirSync(dir)).toEqual([]);
  store.close();
});

test('nothing is written while the pages fit', () => {
  const store = small(1 << 20);
  const map = new IdMap(store);
  for (let id = 1; id < 10_000; id++) map.set(id, id);
  expect(store.stats()).toEqual({ fileBytes: 0, writes: 0, reloads: 0, memoryBytes: 1 << 20, lifted: false });
  store.close();
});

test('ids out of order lift the budget rather than read a page per row, and stay right', () => {
  const store = small(1024);
  const map = new IdMap(store);
  for (let id = 1; id <= 20_000; id++) map.set(id, id);
  let x = 12345;
  const wrong: number[] = [];
  for (let i = 0; i < 20_000; i++) {
    x = (x * 1103515245 + 12345) % 2147483648;
    const id = 1 + (x % 20_000);
    if (map.get(id) !== id) wrong.push(id);
  }
  expect(wrong).toEqual([]);
  const s = store.stats();
  expect(s.lifted).toBe(true);
  // Without the lift nearly every one of those reads would have read a page back.
  expect(s.reloads).toBeLessThan(10_000);
  store.close();
});

// The read-back rule of a table in memory (src/reviews/memory-table.ts), with a load and a
// refresher whose answers the test releases by hand: no database, so the order of events is
// exactly the one written here. A product is made clean only by a read-back during which no
// change to it was heard, into the table it was read for; a failed read-back leaves it dirty
// and is tried again.
import { MemoryTable, type HeldTable } from '../../src/reviews/memory-table';
import { ResponseCache } from '../../src/response-cache/response-cache';

interface Fake extends HeldTable {
  /** What each product's read-backs put in (the test's stand-in for its data). */
  installed: number[];
}

function deferred<T>() {
  let resolve!: (v: T) => void;
  let reject!: (e: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

const tick = () => new Promise((r) => setTimeout(r, 5));

function setup() {
  const cache = new ResponseCache({ maxBytes: 1 << 20, ttlMs: 60_000 });
  let loads = 0;
  const reads: { products: number[]; answer: ReturnType<typeof deferred<Map<number, () => boolean>>>; table: Fake }[] = [];
  const table = new MemoryTable<Fake>({ cache, maxBytes: 1 << 20, maxAgeMs: 600_000, refreshDelayMs: 0, minLoadIntervalMs: 0, jitterMs: 0 }, 'test',
    async (loading, began) => {
      loads++;
      return { maxProduct: 100, dirty: loading.dirty, bytes: 10, loadedAt: began, describe: () => 'fake', installed: [] };
    },
    (t, products) => {
      const answer = deferred<Map<number, () => boolean>>();
      reads.push({ products, answer, table: t });
      return answer.promise;
    });
  /** Releases read-back `i` with an install for each of its products. */
  const answer = (i: number) => reads[i].answer.resolve(new Map(reads[i].products.map((p) => [p, () => (reads[i].table.installed.push(p), true)])));
  return { cache, table, reads, answer, loads: () => loads };
}

async function loaded(s: ReturnType<typeof setup>) {
  s.table.start();
  for (let i = 0; i < 100 && s.table.stats().loads === 0; i++) await tick();
  expect(s.table.stats().loads).toBe(1);
}

test('a change heard while its product is read back keeps it dirty; the read-back after it makes it clean', async () => {
  const s = setup();
  await loaded(s);
  expect(s.table.clean(7)).toBeDefined();
  s.cache.invalidate(7);
  expect(s.table.clean(7)).toBeUndefined();
  await tick();
  expect(s.reads.map((r) => r.products)).toEqual([[7]]);
  // Heard after the read-back's statement began: what it read may predate it.
  s.cache.invalidate(7);
  s.answer(0);
  await tick();
  expect(s.table.clean(7)).toBeUndefined();
  expect(s.table.stats()).toMatchObject({ refreshed: 0, dirty: 1 });
  // The change queued a second read-back, which nothing overtakes.
  expect(s.reads.map((r) => r.products)).toEqual([[7], [7]]);
  s.answer(1);
  await tick();
  expect(s.table.clean(7)).toBeDefined();
  expect(s.table.stats()).toMatchObject({ refreshed: 1, dirty: 0 });
  s.table.close();
});

test('a read-back overtaken by a flush puts nothing into the new table', async () => {
  const s = setup();
  await loaded(s);
  s.cache.invalidate(9);
  await tick();
  const first = s.reads[0].table;
  s.cache.invalidateAll();
  for (let i = 0; i < 100 && s.table.stats().loads < 2; i++) await tick();
  expect(s.table.stats().loads).toBe(2);
  s.answer(0);
  await tick();
  expect(first.installed).toEqual([]);
  expect(s.table.stats().refreshed).toBe(0);
  s.table.close();
});

test('a failed read-back leaves its products dirty and tries them again', async () => {
  const s = setup();
  await loaded(s);
  s.cache.invalidate(3);
  await tick();
  s.reads[0].answer.reject(new Error('the database is busy'));
  await tick();
  expect(s.table.clean(3)).toBeUndefined();
  expect(s.table.stats()).toMatchObject({ failedRefreshes: 1, dirty: 1 });
  // Tried again after its pause (1 s), with no new change.
  for (let i = 0; i < 300 && s.reads.length < 2; i++) await tick();
  expect(s.reads.map((r) => r.products)).toEqual([[3], [3]]);
  s.answer(1);
  await tick();
  expect(s.table.clean(3)).toBeDefined();
  s.table.close();
});

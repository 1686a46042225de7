// The read-back rule of a table in memory (src/reviews/memory-table.ts), with a load and a
// refresher whose answers the test releases by hand: no database, so the order of events is
// exactly the one written here. A product is read back only for a reader, and made clean only
// by a read-back during which no change to it was heard, into the table it was read for; a
// reader waiting for one is always let go (done, dropped, failed); a failed read-back leaves
// it dirty, and read-backs pause before the next.
import { loadPause, MemoryTable, type HeldTable, type Install, type MemoryTableOptions } from '../../src/reviews/memory-table';
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
/** Waits until `cond` holds, at most about `ms`. */
const until = async (cond: () => boolean, ms = 1000) => {
  for (let i = 0; i < ms / 5 && !cond(); i++) await tick();
};

type Options = Partial<Pick<MemoryTableOptions, 'busy' | 'refreshWaitBehindMs' | 'sweepAfterMs' | 'sweepBatch' | 'sweepIntervalMs' | 'maxBytes' | 'maxAgeMs' | 'minLoadIntervalMs' | 'reloadDirtyMin' | 'reloadDirtyShare' | 'reloadJitterMs' | 'loadDuty' | 'reloadDuty'>>;

function setup(options: Options = {}, worth?: (t: Fake, product: number) => boolean) {
  const cache = new ResponseCache({ maxBytes: 1 << 20, ttlMs: 60_000 });
  let loads = 0;
  /** Each load's duty as its read began, and as the read ended. */
  const duties: [number, number][] = [];
  /** While set, a load waits for it (a load under way, changes heard meanwhile). */
  let gate: Promise<void> | undefined;
  const reads: { products: number[]; answer: ReturnType<typeof deferred<Map<number, () => Install>>>; table: Fake }[] = [];
  // Readers behind a statement under way wait for it however slow the box (the 50 ms default
  // let a reader of a busy machine's next turn go: a test that means it sets its own).
  const table = new MemoryTable<Fake>({ cache, maxBytes: 1 << 20, maxAgeMs: 600_000, refreshDelayMs: 0, minLoadIntervalMs: 0, jitterMs: 0, refreshWaitBehindMs: 60_000, ...options }, 'test',
    async (loading, began) => {
      loads++;
      const first = loading.duty();
      await gate;
      duties.push([first, loading.duty()]);
      return { maxProduct: 1000, dirty: loading.dirty, bytes: 10, loadedAt: began, describe: () => 'fake', installed: [] };
    },
    (t, products) => {
      const answer = deferred<Map<number, () => Install>>();
      reads.push({ products, answer, table: t });
      return answer.promise;
    }, worth);
  /** Releases read-back `i` with an install for each of its products. */
  const answer = (i: number) => reads[i].answer.resolve(new Map(reads[i].products.map((p) => [p, () => (reads[i].table.installed.push(p), true)])));
  /** Holds the next loads until the returned function is called. */
  const holdLoads = () => {
    let release!: () => void;
    gate = new Promise<void>((r) => (release = r));
    return () => {
      gate = undefined;
      release();
    };
  };
  return { cache, table, reads, answer, loads: () => loads, holdLoads, duties };
}

async function loaded(s: ReturnType<typeof setup>) {
  s.table.start();
  for (let i = 0; i < 100 && s.table.stats().loads === 0; i++) await tick();
  expect(s.table.stats().loads).toBe(1);
}

test('a written product is read back only for a reader; readers of the moment share the statement; a change heard while it runs keeps it dirty', async () => {
  const s = setup();
  await loaded(s);
  expect(s.table.clean(7)).toBeDefined();
  // Clean: nothing to read back.
  expect(s.table.readBack(7)).toBeUndefined();
  s.cache.invalidate(7);
  s.cache.invalidate(8);
  expect(s.table.clean(7)).toBeUndefined();
  await tick();
  // Written, not read: no statement.
  expect(s.reads).toEqual([]);
  const first = s.table.readBack(7)!;
  expect(first).toBeInstanceOf(Promise);
  // Another reader of the same moment waits with it; one of another product joins the statement.
  expect(s.table.readBack(7)).toBe(first);
  const eight = s.table.readBack(8)!;
  await tick();
  expect(s.reads.map((r) => r.products)).toEqual([[7, 8]]);
  // A reader while it runs waits for it too.
  expect(s.table.readBack(7)).toBe(first);
  // Heard after the read-back's statement began: what it read of 7 may predate it.
  s.cache.invalidate(7);
  s.answer(0);
  await first;
  await eight;
  expect(s.table.clean(7)).toBeUndefined();
  expect(s.table.clean(8)).toBeDefined();
  expect(s.table.stats()).toMatchObject({ refreshed: 1, dirty: 1 });
  await tick();
  // Nothing is read again until someone reads it.
  expect(s.reads).toHaveLength(1);
  const second = s.table.readBack(7)!;
  await tick();
  expect(s.reads.map((r) => r.products)).toEqual([[7, 8], [7]]);
  s.answer(1);
  await second;
  expect(s.table.clean(7)).toBeDefined();
  expect(s.table.stats()).toMatchObject({ refreshed: 2, dirty: 0 });
  s.table.close();
});

test('a product the table does not think worth reading back is not', async () => {
  const s = setup({}, (_t, product) => product !== 5);
  await loaded(s);
  s.cache.invalidate(5);
  expect(s.table.readBack(5)).toBeUndefined();
  await tick();
  expect(s.reads).toEqual([]);
  expect(s.table.clean(5)).toBeUndefined();
  // Counted apart among the dirty reads; a dirty product worth reading back is not.
  s.cache.invalidate(6);
  expect(s.table.clean(6)).toBeUndefined();
  expect(s.table.stats()).toMatchObject({ dirtyReads: 2, dirtyReadsTooLarge: 1, dirtyReadsBehindSlow: 0 });
  s.table.close();
});

test('a read-back overtaken by a flush installs nothing; its readers are let go at once, and on a close', async () => {
  const s = setup();
  await loaded(s);
  // A flush before the statement begins: the reader is let go, nothing is read.
  s.cache.invalidate(9);
  const dropped = s.table.readBack(9)!;
  s.cache.invalidateAll();
  await dropped;
  for (let i = 0; i < 100 && s.table.stats().loads < 2; i++) await tick();
  expect(s.table.stats().loads).toBe(2);
  expect(s.reads).toEqual([]);
  // A flush while the statement runs: its reader is let go before the statement ends.
  s.cache.invalidate(9);
  const waiting = s.table.readBack(9)!;
  await tick();
  const first = s.reads[0].table;
  s.cache.invalidateAll();
  await waiting;
  for (let i = 0; i < 100 && s.table.stats().loads < 3; i++) await tick();
  expect(s.table.stats().loads).toBe(3);
  s.answer(0);
  await tick();
  expect(first.installed).toEqual([]);
  expect(s.table.stats().refreshed).toBe(0);
  // Closed (the host stopping) before the statement begins: the reader is let go too.
  s.cache.invalidate(11);
  const closing = s.table.readBack(11)!;
  s.table.close();
  await closing;
  expect(s.reads).toHaveLength(1);
});

test('past 256 products a statement, the rest wait for the next one, and their readers with them', async () => {
  const s = setup();
  await loaded(s);
  const products = Array.from({ length: 300 }, (_, i) => i + 1);
  const done = new Set<number>();
  for (const p of products) s.cache.invalidate(p);
  for (const p of products) void s.table.readBack(p)!.then(() => done.add(p));
  await tick();
  expect(s.reads.map((r) => r.products.length)).toEqual([256]);
  s.answer(0);
  // The next statement follows the first's end on a timer: on a busy box 256 installs can
  // outlast a fixed tick, so wait for it (at most a second) rather than for a fixed time.
  await until(() => s.reads.length === 2 && done.size === 256);
  // The first 256 are answered and clean; the other 44 are being read, their readers waiting.
  expect(s.reads.map((r) => r.products.length)).toEqual([256, 44]);
  expect(done.size).toBe(256);
  expect(s.table.clean(300)).toBeUndefined();
  s.answer(1);
  await until(() => done.size === 300);
  expect(done.size).toBe(300);
  expect(s.table.stats()).toMatchObject({ refreshed: 300, dirty: 0 });
  s.table.close();
});

test('readers queued behind a statement that runs long are let go to the database, and new ones neither queue nor join', async () => {
  // 300 ms: the two ticks below must end within it, however busy the box.
  const s = setup({ refreshWaitBehindMs: 300 });
  await loaded(s);
  for (const p of [1, 2, 3]) s.cache.invalidate(p);
  const first = s.table.readBack(1)!;
  const began = performance.now();
  await tick();
  // Just begun: another product's reader waits for the next statement.
  let released = false;
  let releasedAfter = 0;
  const queued = s.table.readBack(2)!;
  void queued.then(() => ((released = true), (releasedAfter = performance.now() - began)));
  await tick();
  expect(released).toBe(false);
  // A reader waiting behind a statement that has not run long is not counted as behind a slow one.
  expect(s.table.stats()).toMatchObject({ dirtyReadsBehindSlow: 0 });
  // Past 300 ms it is let go, with no statement of its own.
  await until(() => released, 2000);
  expect(released).toBe(true);
  expect(releasedAfter).toBeGreaterThanOrEqual(295);
  expect(s.table.stats()).toMatchObject({ dirtyReadsBehindSlow: 1 });
  expect(s.table.readBack(3)).toBeUndefined();
  expect(s.table.readBack(1)).toBeUndefined();
  // Let go, or refused a wait: each counted once as behind a slow read-back.
  expect(s.table.stats()).toMatchObject({ dirtyReadsBehindSlow: 3, dirtyReadsTooLarge: 0 });
  s.answer(0);
  await first;
  await tick();
  expect(s.reads.map((r) => r.products)).toEqual([[1]]);
  expect(s.table.clean(1)).toBeDefined();
  expect(s.table.clean(2)).toBeUndefined();
  s.table.close();
});

test('a close lets go the readers of the statement under way', async () => {
  const s = setup();
  await loaded(s);
  s.cache.invalidate(12);
  const running = s.table.readBack(12)!;
  await tick();
  expect(s.reads).toHaveLength(1);
  s.table.close();
  await running;
  s.answer(0);
  await tick();
  expect(s.reads[0].table.installed).toEqual([]);
});

test('a failed read-back leaves its product dirty and lets its readers go, those queued behind it too; read-backs pause, then are tried again', async () => {
  const s = setup();
  await loaded(s);
  s.cache.invalidate(3);
  s.cache.invalidate(4);
  const waiting = s.table.readBack(3)!;
  await tick();
  // Queued behind it, for the next statement.
  const queued = s.table.readBack(4)!;
  s.reads[0].answer.reject(new Error('the database is busy'));
  await waiting;
  await queued;
  expect(s.table.clean(3)).toBeUndefined();
  expect(s.table.stats()).toMatchObject({ failedRefreshes: 1, dirty: 2 });
  // Paused (1 s): no statement for the queued reader, and readers go to the database without trying.
  await tick();
  expect(s.reads).toHaveLength(1);
  expect(s.table.readBack(3)).toBeUndefined();
  let again: Promise<void> | undefined;
  for (let i = 0; i < 300 && !(again = s.table.readBack(3)); i++) await tick();
  expect(again).toBeDefined();
  await tick();
  expect(s.reads.map((r) => r.products)).toEqual([[3], [3]]);
  s.answer(1);
  await again;
  expect(s.table.clean(3)).toBeDefined();
  s.table.close();
});

test('a product whose read-back cannot install until the next table is not read back again until then; one refused for now is', async () => {
  const s = setup();
  try {
    await loaded(s);
    s.cache.invalidate(7);
    s.cache.invalidate(8);
    const first = [s.table.readBack(7)!, s.table.readBack(8)!];
    await tick();
    // 7: a layout only a load sets; 8: refused for now (past the table's bound).
    s.reads[0].answer.resolve(new Map<number, () => Install>([[7, () => 'until-load'], [8, () => false]]));
    await Promise.all(first);
    expect([s.table.clean(7), s.table.clean(8)]).toEqual([undefined, undefined]);
    // 7's readers go to the database at once from now on: no statement bound to fail.
    expect(s.table.readBack(7)).toBeUndefined();
    // 8 is tried again by its next reader.
    expect(s.table.readBack(8)).toBeInstanceOf(Promise);
    await tick();
    expect(s.reads[1].products).toEqual([8]);
    s.answer(1);
    await tick();
    expect(s.table.clean(8)).toBeDefined();
    // The next table tries 7 again.
    s.cache.invalidateAll();
    for (let i = 0; i < 100 && s.table.stats().loads < 2; i++) await tick();
    s.cache.invalidate(7);
    expect(s.table.readBack(7)).toBeInstanceOf(Promise);
  } finally {
    s.table.close();
  }
});

test('a dropped table is not kept alive by its marks', async () => {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  require('node:v8').setFlagsFromString('--expose-gc');
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const gc = require('node:vm').runInNewContext('gc') as () => void;
  const s = setup();
  try {
    await loaded(s);
    s.cache.invalidate(7);
    const waiting = s.table.readBack(7)!;
    await tick();
    s.reads[0].answer.resolve(new Map<number, () => Install>([[7, () => 'until-load']]));
    await waiting;
    const old = new WeakRef(s.reads[0].table);
    s.reads.length = 0;
    s.cache.invalidateAll();
    for (let i = 0; i < 100 && s.table.stats().loads < 2; i++) await tick();
    expect(s.table.stats().loads).toBe(2);
    await tick();
    gc();
    await tick();
    gc();
    expect(old.deref()).toBeUndefined();
  } finally {
    s.table.close();
  }
});

describe('the sweep: dirty products no change has touched for sweepAfterMs are read back unread', () => {
  const quiet = { sweepAfterMs: 200, sweepIntervalMs: 10 };

  test('a product written once and not read is read back after it has been quiet, by the same rule, and counted', async () => {
    // Quiet for 600 ms here: the 100 ms wait below has 500 ms to spare on a stalled box.
    const s = setup({ ...quiet, sweepAfterMs: 600 });
    await loaded(s);
    s.cache.invalidate(7);
    const written = performance.now();
    // Without the sweep (a reader's read-back only) nothing would read it: the dirty set grows.
    await new Promise((r) => setTimeout(r, 100));
    expect(s.reads).toEqual([]);
    await until(() => s.reads.length > 0, 3000);
    // Not before it had been quiet for sweepAfterMs (a stall only makes it later).
    expect(performance.now() - written).toBeGreaterThanOrEqual(590);
    expect(s.reads.map((r) => r.products)).toEqual([[7]]);
    s.answer(0);
    await until(() => s.table.stats().dirty === 0);
    expect(s.table.clean(7)).toBeDefined();
    expect(s.table.stats()).toMatchObject({ refreshed: 1, swept: 1, dirty: 0 });
    s.table.close();
  });

  test('a change while it is quiet starts its wait again; a change while its statement runs keeps it dirty', async () => {
    // Quiet for 1 s here, with waits of 600 ms: a stall of up to 400 ms on a busy box cannot
    // let the sweep in early.
    const s = setup({ ...quiet, sweepAfterMs: 1000 });
    await loaded(s);
    s.cache.invalidate(7);
    await new Promise((r) => setTimeout(r, 600));
    s.cache.invalidate(7);
    // 1,200 ms after the first change, 600 after the second: not yet.
    await new Promise((r) => setTimeout(r, 600));
    expect(s.reads).toEqual([]);
    await until(() => s.reads.length > 0, 3000);
    // Heard after the sweep's statement began: what it read may predate it.
    s.cache.invalidate(7);
    s.answer(0);
    await tick();
    expect(s.table.clean(7)).toBeUndefined();
    expect(s.table.stats()).toMatchObject({ refreshed: 0, swept: 0, dirty: 1 });
    // Quiet again since that change: swept again, and clean this time.
    await until(() => s.reads.length > 1, 3000);
    s.answer(1);
    await until(() => s.table.stats().dirty === 0);
    expect(s.table.stats()).toMatchObject({ refreshed: 1, swept: 1 });
    s.table.close();
  });

  test('oldest first, sweepBatch at a time, and never while a reader\'s read-back is queued or under way', async () => {
    const s = setup({ ...quiet, sweepBatch: 2 });
    await loaded(s);
    for (const p of [5, 3, 9]) s.cache.invalidate(p);
    // A reader's read-back of another product, held open: the sweep waits behind it.
    s.cache.invalidate(1);
    const reader = s.table.readBack(1)!;
    await new Promise((r) => setTimeout(r, 300));
    expect(s.reads.map((r) => r.products)).toEqual([[1]]);
    s.answer(0);
    await reader;
    await until(() => s.reads.length > 1);
    expect(s.reads[1].products).toEqual([5, 3]);
    s.answer(1);
    await until(() => s.reads.length > 2);
    expect(s.reads[2].products).toEqual([9]);
    s.answer(2);
    await until(() => s.table.stats().dirty === 0);
    expect(s.table.stats()).toMatchObject({ refreshed: 4, swept: 3 });
    s.table.close();
  });

  test('a product not worth reading back stays dirty and is not tried again; a failed sweep leaves its products dirty and pauses', async () => {
    let askedAbout4 = 0;
    const s = setup(quiet, (_t, product) => {
      if (product === 4) askedAbout4++;
      return product !== 4;
    });
    await loaded(s);
    s.cache.invalidate(4);
    s.cache.invalidate(6);
    await until(() => s.reads.length > 0);
    expect(s.reads[0].products).toEqual([6]);
    s.reads[0].answer.reject(new Error('connection lost'));
    await tick();
    expect(s.table.stats()).toMatchObject({ failedRefreshes: 1, dirty: 2 });
    // Read-backs pause 1 s after a failure: no statement meanwhile, the sweep's included.
    await new Promise((r) => setTimeout(r, 300));
    expect(s.reads).toHaveLength(1);
    await until(() => s.reads.length > 1);
    expect(s.reads[1].products).toEqual([6]);
    s.answer(1);
    await until(() => s.table.stats().dirty === 1);
    await new Promise((r) => setTimeout(r, 300));
    expect(s.reads).toHaveLength(2);
    // Asked once (the sweep's first pass over it), not at every pass since.
    expect(askedAbout4).toBe(1);
    // Its reader finds it dirty, counted as too large (that asks the predicate once more).
    expect(s.table.clean(4)).toBeUndefined();
    expect(s.table.stats()).toMatchObject({ dirtyReads: 1, dirtyReadsTooLarge: 1 });
    s.table.close();
  });

  test('no turn of the sweep while the database is busy (`busy`); counted; it sweeps once it is not', async () => {
    let busy: 'queued' | 'taken' | false = 'taken';
    const s = setup({ ...quiet, busy: () => busy });
    await loaded(s);
    // Nothing due: no turn skipped (the count says work was held back, not that time passed).
    await new Promise((r) => setTimeout(r, 100));
    expect(s.table.stats().sweepsSkippedBusy).toBe(0);
    s.cache.invalidate(7);
    await new Promise((r) => setTimeout(r, 400));
    expect(s.reads).toEqual([]);
    // Turns every 10 ms: more than 5 skipped by now, or soon after on a stalled box.
    await until(() => s.table.stats().sweepsSkippedBusy > 5, 2000);
    expect(s.table.stats().sweepsSkippedBusy).toBeGreaterThan(5);
    busy = 'queued';
    const skipped = s.table.stats().sweepsSkippedBusy;
    await until(() => s.table.stats().sweepsSkippedBusy > skipped + 5);
    expect(s.reads).toEqual([]);
    // A reader's read-back is not held back: it replaces the reader's own statement.
    s.cache.invalidate(8);
    const reader = s.table.readBack(8)!;
    await until(() => s.reads.length > 0);
    expect(s.reads.map((r) => r.products)).toEqual([[8]]);
    s.answer(0);
    await reader;
    busy = false;
    await until(() => s.reads.length > 1);
    expect(s.reads[1].products).toEqual([7]);
    s.answer(1);
    await until(() => s.table.stats().dirty === 0);
    expect(s.table.stats()).toMatchObject({ swept: 1 });
    s.table.close();
  });

  /**
   * With the database `busy` throughout and a bound of 8 dirty products (reloadDirtyMin 8, no
   * share): products 1, 2, … changed one at a time; no statement while fewer than `goAt` are
   * dirty (turns skipped), and the oldest read back once `goAt` are.
   */
  async function heldUntil(busy: 'queued' | 'taken', goAt: number) {
    const s = setup({ ...quiet, busy: () => busy, reloadDirtyMin: 8, reloadDirtyShare: 0 });
    await loaded(s);
    for (let p = 1; p < goAt; p++) {
      s.cache.invalidate(p);
      const skipped = s.table.stats().sweepsSkippedBusy;
      await until(() => s.table.stats().sweepsSkippedBusy > skipped + 3);
      expect(s.reads).toEqual([]);
    }
    s.cache.invalidate(goAt);
    await until(() => s.reads.length > 0);
    // The quiet ones of the moment, oldest first (on a slow box later ones may be quiet too).
    expect(s.reads[0].products[0]).toBe(1);
    s.table.close();
  }

  test('every connection taken holds the sweep back until half the products that reload the table are dirty', () => heldUntil('taken', 4));

  test('requests waiting for a connection hold the sweep back until three quarters of them are', () => heldUntil('queued', 6));

  test('a product the sweep would not take leaves its queue before any turn is counted as skipped', async () => {
    const s = setup({ ...quiet, busy: () => 'queued' }, (_t, product) => product !== 4);
    await loaded(s);
    s.cache.invalidate(4);
    await new Promise((r) => setTimeout(r, 400));
    expect(s.table.stats()).toMatchObject({ sweepsSkippedBusy: 0, dirty: 1 });
    s.table.close();
  });

  test('changes heard while a table loads are swept once it is held; off (0) reads back only for readers', async () => {
    const s = setup(quiet);
    await loaded(s);
    // A flush: the next table loads; a change heard meanwhile is dirty in it from the start.
    const release = s.holdLoads();
    s.cache.invalidateAll();
    await until(() => s.loads() === 2);
    s.cache.invalidate(7);
    release();
    await until(() => s.table.stats().loads === 2);
    expect(s.table.stats().dirty).toBe(1);
    await until(() => s.reads.length > 0);
    expect(s.reads.map((r) => r.products)).toEqual([[7]]);
    s.answer(0);
    await until(() => s.table.stats().dirty === 0);
    expect(s.table.stats()).toMatchObject({ swept: 1 });
    s.table.close();
    const off = setup({ ...quiet, sweepAfterMs: 0 });
    await loaded(off);
    off.cache.invalidate(7);
    await new Promise((r) => setTimeout(r, 400));
    expect(off.reads).toEqual([]);
    expect(off.table.stats().dirty).toBe(1);
    off.table.close();
  });
});

describe('reloads: paced gently while a table serves, and not every host at once', () => {

  test('a load runs at loadDuty while nothing is served from a table, at reloadDuty while the table held keeps serving, and at loadDuty again once it is dropped', async () => {
    const s = setup({ reloadDirtyMin: 0, reloadDirtyShare: 0, reloadJitterMs: 0 });
    await loaded(s);
    // A reload at the dirty bound: the table held (10 bytes of 1 MiB) keeps serving.
    s.cache.invalidate(7);
    await until(() => s.table.stats().loads === 2, 2000);
    // A flush drops the table: the load after it has nothing served meanwhile.
    s.cache.invalidateAll();
    await until(() => s.table.stats().loads === 3, 2000);
    expect(s.duties).toEqual([[0.5, 0.5], [0.1, 0.1], [0.5, 0.5]]);
    s.table.close();
    // A reload under way when the table it began beside ages out (dropped, the load not
    // abandoned): the rest of it goes at loadDuty.
    const aging = setup({ reloadDirtyMin: 0, reloadDirtyShare: 0, reloadJitterMs: 0, maxAgeMs: 1000 });
    await loaded(aging);
    const release = aging.holdLoads();
    aging.cache.invalidate(8);
    await until(() => aging.loads() === 2, 2000);
    // Aged out (nothing asks for the table meanwhile, so nothing has dropped it yet).
    await new Promise((r) => setTimeout(r, 1050));
    release();
    await until(() => aging.duties.length === 2, 2000);
    expect(aging.duties).toEqual([[0.5, 0.5], [0.1, 0.5]]);
    aging.table.close();
    // Two tables would not fit: the one held is dropped for the load, which then goes at loadDuty.
    const big = setup({ reloadDirtyMin: 0, reloadDirtyShare: 0, reloadJitterMs: 0, maxBytes: 15, loadDuty: 0.7, reloadDuty: 0.3 });
    await loaded(big);
    big.cache.invalidate(7);
    await until(() => big.table.stats().loads === 2, 2000);
    expect(big.duties).toEqual([[0.7, 0.7], [0.7, 0.7]]);
    big.table.close();
  });

  describe('on a fake clock', () => {
    beforeEach(() => jest.useFakeTimers());
    afterEach(() => {
      jest.restoreAllMocks();
      jest.useRealTimers();
    });
    /** Moves the fake clock `ms` on, letting the loads' promises run. */
    const advance = (ms: number) => jest.advanceTimersByTimeAsync(ms);
    const started = async (options: Options) => {
      const s = setup({ reloadDirtyMin: 0, reloadDirtyShare: 0, ...options });
      s.table.start();
      await advance(1);
      expect(s.table.stats().loads).toBe(1);
      return s;
    };
    /** Not reloaded after `notYetMs` more on the clock, reloaded `thenMs` after that; then closed. */
    const reloadsBetween = async (s: ReturnType<typeof setup>, notYetMs: number, thenMs: number) => {
      await advance(notYetMs);
      expect(s.table.stats().loads).toBe(1);
      await advance(thenMs);
      expect(s.table.stats().loads).toBe(2);
      s.table.close();
    };

    test('a reload the dirty bound asks for waits a random delay up to reloadJitterMs (60 s by default), drawn once however many changes follow', async () => {
      const s = await started({ reloadJitterMs: 400 });
      jest.spyOn(Math, 'random').mockReturnValueOnce(0.5).mockReturnValue(0);
      s.cache.invalidate(1);
      // Changes go on arriving: neither a new draw (0: at once) nor a timer set again (200 ms
      // from the last change) moves it.
      for (let p = 2; p < 14; p++) {
        await advance(10);
        s.cache.invalidate(p);
      }
      await reloadsBetween(s, 75, 10);
      const byDefault = await started({});
      jest.spyOn(Math, 'random').mockReturnValue(0.5);
      byDefault.cache.invalidate(1);
      await reloadsBetween(byDefault, 29_900, 200);
    });

    test('a load pauses after each statement (1 - duty) / duty times as long as it took; a duty below 0.01 (or none) is taken as 0.01', async () => {
      for (const [duty, pause] of [[0.5, 100], [0.1, 900], [0, 9900], [-1, 9900], [NaN, 9900]]) {
        let done = false;
        void loadPause(100, duty)?.then(() => (done = true));
        await advance(pause - 1);
        expect(done).toBe(false);
        await advance(2);
        expect(done).toBe(true);
      }
      expect(loadPause(100, 1)).toBeUndefined();
    });

    test('the delay comes after the spacing of loads, and does not put off a load due sooner', async () => {
      // Spaced: the bound reached 100 ms after a load began waits out the 1 s, then its delay.
      const spaced = await started({ reloadJitterMs: 400, minLoadIntervalMs: 1000 });
      jest.spyOn(Math, 'random').mockReturnValue(0.5);
      await advance(100);
      spaced.cache.invalidate(1);
      await reloadsBetween(spaced, 1050, 100);
      jest.restoreAllMocks();
      // A reload due for the table's age (at 60-80 % of 1 s) is not put off by the bound's 10 s.
      const aging = await started({ reloadJitterMs: 10_000, maxAgeMs: 1000 });
      jest.spyOn(Math, 'random').mockReturnValue(0.99);
      aging.cache.invalidate(1);
      await advance(850);
      expect(aging.table.stats().loads).toBe(2);
      aging.table.close();
    });
  });
});

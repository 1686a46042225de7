// The benchmark starts each run from the dataset as imported (bench/dataset.ts): the copy
// kept after an import is what a later run's database is made from again, whatever earlier
// runs wrote; connections left open to the database do not stop it; no copy of that export,
// no change; and which of import, restore or as-is a run does.
import { datasetPlan, keepAsImported, restoreAsImported } from '../../bench/dataset';
import { Db, ident, withClient } from '../../src/db';
import { finishArrange, insertReviews } from '../helpers/fixtures';
import { createTestDatabase, type TestDatabase } from '../helpers/test-db';

let t: TestDatabase;
const server = () => process.env.ATELIER_TEST_SERVER!;
const SOURCE = 'export-scale-1-seed-1';

beforeAll(async () => {
  t = await createTestDatabase();
  await insertReviews(t.db, [{ id: 1, product_id: 1, rating: 4, date: '2021-01-01T00:00:00.000Z' }, { id: 2, product_id: 1, rating: 5, date: '2021-01-02T00:00:00.000Z' }]);
  await finishArrange(t.db);
  await t.db.close();
});

afterAll(async () => {
  await withClient(`${server()}/postgres`, (c) => c.query(`DROP DATABASE IF EXISTS ${ident(`${t.name}_as_imported`)}`));
  await t.drop();
});

const reviews = (url: string) => withClient(url, async (c) => (await c.query('SELECT id, helpfulness, reported FROM atelier.reviews ORDER BY id')).rows);

test('without a copy of that export nothing is touched; a run after keepAsImported starts from what was kept, however earlier runs changed it', async () => {
  expect(await restoreAsImported(server(), t.name, SOURCE)).toBe(false);
  expect(await reviews(t.url)).toHaveLength(2);

  // An open connection (a host left running, say) does not stop the copy.
  const open = new Db({ connectionString: t.url, poolSize: 1 });
  await open.query('SELECT 1');
  await keepAsImported(server(), t.name, SOURCE);
  const kept = await reviews(t.url);

  // What a run writes: a vote, a report, a new review.
  const run = new Db({ connectionString: t.url, poolSize: 1 });
  await run.query('UPDATE atelier.reviews SET helpfulness = helpfulness + 7 WHERE id = 1');
  await run.query('UPDATE atelier.reviews SET reported = true WHERE id = 2');
  await insertReviews(run, [{ id: 3, product_id: 2, rating: 3, date: '2021-01-03T00:00:00.000Z' }]);
  expect(await reviews(t.url)).not.toEqual(kept);

  // Another export's copy is not this dataset: nothing is restored from it.
  expect(await restoreAsImported(server(), t.name, 'export-scale-1-seed-2')).toBe(false);
  expect(await reviews(t.url)).toHaveLength(3);

  // The run's connection still open: the next run's database is made again anyway.
  expect(await restoreAsImported(server(), t.name, SOURCE)).toBe(true);
  expect(await reviews(t.url)).toEqual(kept);
  // And again, from the same copy (a restore does not use it up).
  expect(await restoreAsImported(server(), t.name, SOURCE)).toBe(true);
  expect(await reviews(t.url)).toEqual(kept);
  await open.close().catch(() => undefined);
  await run.close().catch(() => undefined);

  // The copy takes no connections: nothing writes to it by mistake.
  await expect(withClient(`${server()}/${t.name}_as_imported`, (c) => c.query('SELECT 1'))).rejects.toThrow(/not currently accepting connections/);
});

test('a run imports what was never imported, restores on the embedded server when a copy of that export is kept, else imports again; --keep-data and DATABASE_URL use it as it is', () => {
  const plan = (imported: boolean, copy: boolean, keep = false, embedded = true) => datasetPlan({ embedded, imported, copy, keep });
  expect(plan(false, false)).toBe('import');
  expect(plan(false, true)).toBe('import');
  expect(plan(false, false, true)).toBe('import');
  expect(plan(true, true)).toBe('restore');
  expect(plan(true, false)).toBe('import');
  expect(plan(true, true, true)).toBe('as-is');
  expect(plan(true, false, true)).toBe('as-is');
  expect(plan(true, false, false, false)).toBe('as-is');
  expect(plan(false, false, false, false)).toBe('import');
});

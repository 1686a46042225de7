// The benchmark's count of PostgreSQL's background work (bench/wait-sampler.ts): a vacuum,
// an analyze and a checkpoint between two snapshots are named (autovacuum may add others:
// it runs in test databases too), and two equal snapshots name nothing.
import { describeMaintenance, maintenance, maintenanceBetween } from '../../bench/wait-sampler';
import { finishArrange, insertReviews } from '../helpers/fixtures';
import { until } from '../helpers/replica-hosts';
import { createTestDatabase, type TestDatabase } from '../helpers/test-db';

let t: TestDatabase;

beforeAll(async () => {
  t = await createTestDatabase();
  await insertReviews(t.db, [{ id: 1, product_id: 1, rating: 4, date: '2021-01-01T00:00:00.000Z' }]);
  await finishArrange(t.db);
});

afterAll(async () => {
  await t.drop();
});

test('a vacuum, an analyze and a checkpoint between two snapshots are counted; equal snapshots count nothing', async () => {
  const before = await maintenance(t.db);
  await t.db.query('VACUUM atelier.reviews');
  await t.db.query('ANALYZE atelier.characteristics');
  await t.db.query('CHECKPOINT');
  // Statistics reach the shared counters shortly after (the checkpointer's after its checkpoint).
  let between = maintenanceBetween(before, await maintenance(t.db));
  await until('the counters', async () => {
    between = maintenanceBetween(before, await maintenance(t.db));
    return between.vacuumed.includes('reviews') && between.analyzed.includes('characteristics') && between.checkpoints >= 1;
  }, 10_000);
  expect(between.vacuumed).toContain('reviews');
  expect(between.analyzed).toContain('characteristics');
  expect(describeMaintenance(between)).toMatch(/^vacuum (.+, )?reviews(, .+)?; analyze (.+, )?characteristics(, .+)?; \d+ checkpoints?$/);
  expect(describeMaintenance(maintenanceBetween(before, before))).toBe('vacuum none; analyze none; 0 checkpoints');
});

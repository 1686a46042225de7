// A fresh, migrated database per test file, cloned from the template made in globalSetup.
import { Db, ident, withClient } from '../../src/db';

const TEMPLATE = 'atelier_test_template';

export interface TestDatabase {
  url: string;
  name: string;
  db: Db;
  drop(): Promise<void>;
}

function server(): string {
  const s = process.env.ATELIER_TEST_SERVER;
  if (!s) throw new Error('ATELIER_TEST_SERVER is not set: run the tests through jest (globalSetup)');
  return s;
}

export async function createTestDatabase(opts: Partial<ConstructorParameters<typeof Db>[0]> = {}): Promise<TestDatabase> {
  const name = `t_${process.pid}_${Date.now().toString(36)}_${Math.random().toString(36).slice(2, 8)}`;
  await withClient(`${server()}/postgres`, (c) => c.query(`CREATE DATABASE ${ident(name)} TEMPLATE ${ident(TEMPLATE)}`));
  const url = `${server()}/${name}`;
  // A generous queue wait: these tests are about correctness, not about shedding load.
  const db = new Db({ connectionString: url, poolSize: 10, queueTimeoutMs: 10_000, genericPlans: true, ...opts });
  return {
    url,
    name,
    db,
    drop: async () => {
      await db.close().catch(() => undefined);
      await withClient(`${server()}/postgres`, (c) => c.query(`DROP DATABASE IF EXISTS ${ident(name)} WITH (FORCE)`));
    },
  };
}

// Starts one PostgreSQL for the whole run (unless a server URL is given) and migrates a
// template database that every test file clones.
import { execFileSync } from 'node:child_process';
import { ident, withClient } from '../../src/db';
import { startEmbeddedPostgres } from '../../src/db/embedded-postgres';
import { freePort } from '../../src/cluster/processes';
import { migrate } from '../../src/db/migrate';
import { cleanTestLeftovers } from './leftovers';

export const TEMPLATE = 'atelier_test_template';

function serverUrlFrom(url: string): string {
  const u = new URL(url);
  u.pathname = '/postgres';
  return u.toString().replace(/\/postgres$/, '');
}

export default async function globalSetup(): Promise<void> {
  // Both database tiers (integration, system) name this set-up; jest runs it once per
  // project in this one process: the first starts the server, the second finds it.
  if (process.env.ATELIER_TEST_SERVER) return;
  // Process-level tests (server, ETL interruption) run the compiled entry points; npm test
  // has built them already (ATELIER_TEST_BUILT), a bare `npx jest` builds here.
  if (process.env.ATELIER_TEST_BUILT !== '1') execFileSync(process.execPath, [require.resolve('typescript/bin/tsc'), '-p', '.'], { stdio: 'inherit' });
  for (const dir of await cleanTestLeftovers()) console.log(`[test] removed a crashed run's embedded PostgreSQL: ${dir}`);
  const given = process.env.TEST_DATABASE_URL || process.env.DATABASE_URL;
  let serverUrl: string;
  if (given) {
    serverUrl = serverUrlFrom(given);
  } else {
    // A free port unless one is given: a server left running by an interrupted run (or another
    // checkout's) must not stop this run.
    const port = Number(process.env.TEST_PG_PORT) || (await freePort());
    const pg = await startEmbeddedPostgres({ dir: `.data/test-pg/${process.pid}`, port, ephemeral: true });
    (globalThis as { __embeddedPg?: unknown }).__embeddedPg = pg;
    serverUrl = pg.serverUrl;
  }
  process.env.ATELIER_TEST_SERVER = serverUrl;
  await withClient(`${serverUrl}/postgres`, async (c) => {
    await c.query(`DROP DATABASE IF EXISTS ${ident(TEMPLATE)} WITH (FORCE)`);
    await c.query(`CREATE DATABASE ${ident(TEMPLATE)}`);
  });
  await migrate(`${serverUrl}/${TEMPLATE}`);
}

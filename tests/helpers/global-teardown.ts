import type { EmbeddedPostgres } from '../../src/db/embedded-postgres';

export default async function globalTeardown(): Promise<void> {
  const pg = (globalThis as { __embeddedPg?: EmbeddedPostgres }).__embeddedPg;
  await pg?.stop();
}

// Single, unpooled connections for admin work (create a database, migrations, the import's
// lock), and identifier quoting for names that come from code.
import pg from 'pg';

/** Quotes an identifier that came from code (a database name), never from a request. */
export function ident(name: string): string {
  return '"' + name.replace(/"/g, '""') + '"';
}

/** Runs `fn` with a single, unpooled connection (admin work: create database, migrations). */
export async function withClient<T>(config: string | pg.ClientConfig, fn: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client(typeof config === 'string' ? { connectionString: config } : config);
  client.on('error', () => undefined);
  await client.connect();
  try {
    return await fn(client);
  } finally {
    await client.end().catch(() => undefined);
  }
}

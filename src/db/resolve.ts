// Resolves which PostgreSQL the service talks to: DATABASE_URL when set, otherwise the
// embedded server (started here) with the `atelier` database, migrated either way.
import { startEmbeddedPostgres, type EmbeddedPostgres } from './embedded-postgres';
import { migrate } from './migrate';

export interface ResolvedDatabase {
  url: string;
  embedded?: EmbeddedPostgres;
  /** Stops the embedded server if this process started it. */
  stop(): Promise<void>;
}

export const EMBEDDED_DATABASE = 'atelier';

/** The settings this needs (a subset of src/config.ts's). */
export interface DatabaseSettings {
  DATABASE_URL?: string;
  MIGRATE_ON_START: boolean;
  EMBEDDED_PG_DIR: string;
  EMBEDDED_PG_PORT: number;
}

/** `replication`: the embedded server streams WAL to standbys (src/db/standby.ts). */
export async function resolveDatabase(config: DatabaseSettings, log: (line: string) => void = () => undefined, o: { replication?: boolean } = {}): Promise<ResolvedDatabase> {
  if (config.DATABASE_URL) {
    if (config.MIGRATE_ON_START) await migrate(config.DATABASE_URL);
    return { url: config.DATABASE_URL, stop: async () => undefined };
  }
  const embedded = await startEmbeddedPostgres({ dir: config.EMBEDDED_PG_DIR, port: config.EMBEDDED_PG_PORT, log, replication: o.replication });
  try {
    await embedded.ensureDatabase(EMBEDDED_DATABASE);
    const url = embedded.url(EMBEDDED_DATABASE);
    const applied = await migrate(url);
    if (applied.length) log(`applied migrations: ${applied.join(', ')}`);
    return { url, embedded, stop: () => embedded.stop() };
  } catch (err) {
    await embedded.stop();
    throw err;
  }
}

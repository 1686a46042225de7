// Applies db/migrations/NNNN_*.sql in order, each in its own transaction, recording
// each in public.schema_migrations. An advisory lock lets several hosts start at once.
import fs from 'node:fs';
import { withClient } from './connection';
import { fromRoot } from '../lib/paths';

const LOCK_KEY = 7_240_101; // any constant shared by every instance of this service

export function migrationFiles(dir = fromRoot('db', 'migrations')): { name: string; sql: string }[] {
  return fs
    .readdirSync(dir)
    .filter((f) => /^\d{4}_[\w-]+\.sql$/.test(f))
    .sort()
    .map((name) => ({ name, sql: fs.readFileSync(`${dir}/${name}`, 'utf8') }));
}

/** Returns the names of the migrations it applied (empty when up to date). */
export async function migrate(connectionString: string): Promise<string[]> {
  return withClient(connectionString, async (client) => {
    await client.query('SELECT pg_advisory_lock($1)', [LOCK_KEY]);
    try {
      await client.query(`CREATE TABLE IF NOT EXISTS public.schema_migrations (
        name text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())`);
      const done = new Set((await client.query<{ name: string }>('SELECT name FROM public.schema_migrations')).rows.map((r) => r.name));
      const applied: string[] = [];
      for (const m of migrationFiles()) {
        if (done.has(m.name)) continue;
        await client.query('BEGIN');
        try {
          await client.query(m.sql);
          await client.query('INSERT INTO public.schema_migrations (name) VALUES ($1)', [m.name]);
          await client.query('COMMIT');
        } catch (err) {
          await client.query('ROLLBACK');
          throw new Error(`migration ${m.name} failed: ${(err as Error).message}`);
        }
        applied.push(m.name);
      }
      return applied;
    } finally {
      await client.query('SELECT pg_advisory_unlock($1)', [LOCK_KEY]).catch(() => undefined);
    }
  });
}

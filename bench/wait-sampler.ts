// Where the service's PostgreSQL backends spend their time, by sampling pg_stat_activity
// (the method of pg_wait_sampling and of AWS's "average active sessions", without an
// extension: the bundled server has none). Every `intervalMs` one query lists the active
// backends of the service and what each waits on; a write is a backend whose
// application_name is "atelier-reviews <request id>" (the write functions of
// db/migrations/0005 set it for their transaction, commit included), everything else of
// the service's is a read. "CPU" is an active backend waiting on nothing. Also counted:
// PostgreSQL's own background work (vacuums, analyzes, checkpoints) between two snapshots,
// which the knee and steady steps report beside their latencies.
import { Db } from '../src/db';
import { cpuMs } from './cpu';

export interface WaitProfile {
  samples: number;
  intervalMs: number;
  /** Per class (write, read): sampled active backends by wait event, busiest first. */
  byClass: Record<string, Record<string, number>>;
  /** Mean active backends per class (samples × backends / samples): "average active sessions". */
  activeSessions: Record<string, number>;
  /** Samples in which every pooled connection of the service was active (admission queues then). */
  saturatedSamples: number;
  /** CPU the sampler's own backend spent (ms): subtract it from PostgreSQL's. */
  samplerCpuMs: number;
}

const SAMPLE_SQL = `
  SELECT CASE WHEN application_name LIKE 'atelier-reviews %' THEN 'write' ELSE 'read' END AS class,
         coalesce(wait_event_type || ':' || wait_event, 'CPU') AS wait, count(*)::int AS n
    FROM pg_stat_activity
   WHERE backend_type = 'client backend' AND state = 'active' AND pid <> pg_backend_pid()
     AND datname = current_database() AND query NOT LIKE 'LISTEN%'
   GROUP BY 1, 2`;

/** Samples while `run` runs; `connections`: the service's pooled connections in all (for saturation). */
export async function sampleWaits<T>(url: string, connections: number, run: () => Promise<T>, intervalMs = 5): Promise<{ result: T; profile: WaitProfile }> {
  const db = new Db({ connectionString: url, poolSize: 1 });
  const profile: WaitProfile = { samples: 0, intervalMs, byClass: {}, activeSessions: {}, saturatedSamples: 0, samplerCpuMs: 0 };
  const { rows: [{ pid }] } = await db.query<{ pid: number }>('SELECT pg_backend_pid() AS pid');
  const cpuBefore = cpuMs(pid);
  let running = true;
  const loop = (async () => {
    while (running) {
      const started = Date.now();
      const { rows } = await db.query<{ class: string; wait: string; n: number }>(SAMPLE_SQL);
      profile.samples++;
      let active = 0;
      for (const r of rows) {
        const c = (profile.byClass[r.class] ??= {});
        c[r.wait] = (c[r.wait] ?? 0) + r.n;
        active += r.n;
      }
      if (active >= connections) profile.saturatedSamples++;
      const wait = intervalMs - (Date.now() - started);
      if (wait > 0) await new Promise((r) => setTimeout(r, wait));
    }
  })();
  try {
    const result = await run();
    return { result, profile };
  } finally {
    running = false;
    await loop.catch(() => undefined);
    profile.samplerCpuMs = cpuMs(pid) - cpuBefore;
    await db.close();
    for (const [k, waits] of Object.entries(profile.byClass)) {
      profile.byClass[k] = Object.fromEntries(Object.entries(waits).sort((a, b) => b[1] - a[1]));
      profile.activeSessions[k] = Object.values(waits).reduce((a, b) => a + b, 0) / Math.max(1, profile.samples);
    }
  }
}

/** "IO:WalSync 41 %, CPU 30 %, …" for one class. */
export function describeWaits(waits: Record<string, number> = {}): string {
  const total = Object.values(waits).reduce((a, b) => a + b, 0);
  return Object.entries(waits).slice(0, 6).map(([w, n]) => `${w} ${Math.round((100 * n) / Math.max(1, total))} %`).join(', ') || 'none sampled';
}

/** PostgreSQL's own background work, counted: vacuums, analyzes and checkpoints so far. */
export interface Maintenance {
  /** Vacuums (auto or manual) and analyzes finished, per table of the service's schema. */
  vacuums: Record<string, number>;
  analyzes: Record<string, number>;
  /** Vacuums under way now (pg_stat_progress_vacuum), by table. */
  vacuuming: string[];
  /** Checkpoints done (pg_stat_checkpointer on PostgreSQL 17+, pg_stat_bgwriter before). */
  checkpoints: number;
}

/** What PostgreSQL's background work has done so far (one snapshot; see maintenanceBetween). */
export async function maintenance(db: Db): Promise<Maintenance> {
  const tables = await db.query<{ relname: string; vacuums: number; analyzes: number }>(
    `SELECT relname, (vacuum_count + autovacuum_count)::int AS vacuums, (analyze_count + autoanalyze_count)::int AS analyzes
       FROM pg_stat_user_tables WHERE schemaname = 'atelier'`);
  const running = await db.query<{ relname: string }>(
    `SELECT c.relname FROM pg_stat_progress_vacuum p JOIN pg_class c ON c.oid = p.relid WHERE p.datname = current_database()`);
  const checkpoints = await db.query<{ n: number }>('SELECT (num_timed + num_requested)::int AS n FROM pg_stat_checkpointer')
    .catch(() => db.query<{ n: number }>('SELECT (checkpoints_timed + checkpoints_req)::int AS n FROM pg_stat_bgwriter'));
  return {
    vacuums: Object.fromEntries(tables.rows.map((r) => [r.relname, r.vacuums])),
    analyzes: Object.fromEntries(tables.rows.map((r) => [r.relname, r.analyzes])),
    vacuuming: running.rows.map((r) => r.relname),
    checkpoints: checkpoints.rows[0].n,
  };
}

/** The background work between two snapshots: tables vacuumed or analyzed (finished, or under way at the end), checkpoints. */
export function maintenanceBetween(before: Maintenance, after: Maintenance): { vacuumed: string[]; analyzed: string[]; checkpoints: number } {
  const grew = (a: Record<string, number>, b: Record<string, number>) => Object.keys(b).filter((t) => b[t] > (a[t] ?? 0)).sort();
  return {
    vacuumed: [...new Set([...grew(before.vacuums, after.vacuums), ...before.vacuuming, ...after.vacuuming])].sort(),
    analyzed: grew(before.analyzes, after.analyzes),
    checkpoints: after.checkpoints - before.checkpoints,
  };
}

/** "vacuum reviews; analyze none; 1 checkpoint" for a log line. */
export function describeMaintenance(m: { vacuumed: string[]; analyzed: string[]; checkpoints: number }): string {
  return `vacuum ${m.vacuumed.join(', ') || 'none'}; analyze ${m.analyzed.join(', ') || 'none'}; ${m.checkpoints} checkpoint${m.checkpoints === 1 ? '' : 's'}`;
}

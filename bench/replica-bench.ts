// The replicas series of `npm run bench:scale -- --replicas 0,1,2` (issue 21 item 6): the
// same isolated, CPU-capped hosts behind nginx reading cold (uniform over the last 10 % of
// products, caches on as deployed, so nearly every read reaches a database), with 0, 1, 2
// hot standbys of the embedded primary, all on this box. For each: the highest rate holding
// the p99 bound and the CPU per request of the primary and of each standby apart. Then what
// a synchronous standby costs a POST (zero loss of acknowledged writes at failover):
// synchronous_standby_names off and on, alternating, writes only, open loop.
import { asDeployed, processGroups, READS } from './api-bench';
import { postmasterOf, serverCpu, withCpu, type ProcessGroups } from './cpu';
import { findMaxRate, type ScalePoint } from './scale-bench';
import { freePort, hostDatabaseUrl, startCluster } from '../src/cluster/cluster';
import { Db } from '../src/db';
import type { EmbeddedPostgres } from '../src/db/embedded-postgres';
import { startStandby } from '../src/db/standby';
import { fromRoot } from '../src/lib/paths';
import { formatNumber as fmt } from '../src/lib/cli';
import { runLoad, type StageResult } from '../loadtest/node/runner';

export interface ReplicaPoint extends ScalePoint { replicas: number; readsOnReplicas?: number }
export interface CommitRow { synchronous: boolean; rate: number; p50: number; p99: number; errors: number; cpuUsPerRequest: Record<string, number> }

interface Options {
  primary: { dir: string; serverUrl: string; url: string };
  database: string;
  counts: number[];
  hosts: number;
  hostCpu: number;
  p99Ms: number;
  stepSeconds: number;
  startRate: number;
  products: number;
  log: (line: string) => void;
}

export async function replicaSeries(o: Options): Promise<{ points: ReplicaPoint[]; commit: CommitRow[] }> {
  const standbys: EmbeddedPostgres[] = [];
  const points: ReplicaPoint[] = [];
  let commit: CommitRow[] = [];
  const port = new URL(o.primary.serverUrl).port;
  try {
    for (const count of [...o.counts].sort((a, b) => a - b)) {
      while (standbys.length < count) {
        const i = standbys.length + 1;
        o.log(`replicas: making standby ${i} (base backup of the primary's data folder)`);
        standbys.push(await startStandby({ primary: { dir: o.primary.dir, serverUrl: o.primary.serverUrl }, dir: `${o.primary.dir}-bench-standby-${i}`, port: Number(port) + 10 + i, slot: `bench_standby_${i}`, ephemeral: true }));
      }
      const urls = standbys.slice(0, count).map((s) => s.url(o.database));
      const groups: ProcessGroups = { primary: serverCpu(await postmasterOf(o.primary.url)) };
      for (const [i, url] of urls.entries()) groups[`standby${i + 1}`] = serverCpu(await postmasterOf(url));
      o.log(`replicas: ${count} standby(s), ${o.hosts} hosts at ${o.hostCpu} cores each, cold reads`);
      const cluster = await startCluster({
        databaseUrl: o.primary.url, port: await freePort(), isolate: { hosts: o.hosts, cpu: o.hostCpu }, prefix: fromRoot('.data', 'bench', 'nginx-replicas'),
        ...asDeployed('nginx-replicas', count ? { DATABASE_REPLICA_URLS: urls.map(hostDatabaseUrl).join(',') } : {}), writeRate: '1000000r/s', readRate: '1000000r/s',
      });
      try {
        const point = await findMaxRate({
          target: cluster.url, hostPids: cluster.hosts.map((h) => h.process.pid!), products: o.products, distribution: 'uniform-last-10pct', mix: READS,
          p99Ms: o.p99Ms, stepSeconds: o.stepSeconds, startRate: o.startRate, rounds: 3, log: o.log, warmupSeconds: 8, groups,
        }, o.hosts);
        points.push({ ...point, replicas: count });
        if (count === 1) commit = await commitCost(o, cluster.url, processGroups(cluster.hosts.map((h) => h.process.pid!), true));
      } finally {
        await cluster.stop();
      }
    }
  } finally {
    for (const s of standbys.reverse()) await s.stop().catch(() => undefined);
  }
  return { points, commit };
}

/**
 * POSTs, helpful and report votes only, at a fixed open-loop rate, with the standby
 * asynchronous and synchronous (`synchronous_standby_names`), alternating twice.
 */
async function commitCost(o: Options, target: string, groups: ProcessGroups): Promise<CommitRow[]> {
  const admin = new Db({ connectionString: o.primary.url, poolSize: 1 });
  const rows: CommitRow[] = [];
  const WRITES = [{ op: 'post', weight: 0.03 }, { op: 'helpful', weight: 0.04 }, { op: 'report', weight: 0.01 }];
  const rate = 200;
  try {
    for (const synchronous of [false, true, false, true]) {
      await admin.query(`ALTER SYSTEM SET synchronous_standby_names = '${synchronous ? 'bench_standby_1' : ''}'`);
      await admin.query('SELECT pg_reload_conf()');
      await new Promise((r) => setTimeout(r, 1000));
      const state = (await admin.query<{ s: string }>("SELECT coalesce(max(sync_state), 'none') AS s FROM pg_stat_replication WHERE application_name = 'bench_standby_1'")).rows[0].s;
      const { result, cpuMs } = await withCpu(groups, () => runLoad({ target, stages: [{ rate, duration: o.stepSeconds * 2 }], products: o.products, distribution: 'zipf', mix: WRITES, seed: rows.length + 7 }));
      const s: StageResult = result.stages[0];
      const row = { synchronous, rate, p50: s.writes.p50, p99: s.writes.p99, errors: s.errors, cpuUsPerRequest: Object.fromEntries(Object.entries(cpuMs).map(([k, v]) => [k, (v * 1000) / Math.max(1, s.requests)])) };
      o.log(`  writes at ${rate}/s, standby ${state}: p50 ${row.p50.toFixed(2)} ms, p99 ${row.p99.toFixed(1)} ms, errors ${row.errors}, postgres ${Math.round(row.cpuUsPerRequest.postgres)} µs/write`);
      rows.push(row);
    }
  } finally {
    await admin.query("ALTER SYSTEM RESET synchronous_standby_names").then(() => admin.query('SELECT pg_reload_conf()')).catch(() => undefined);
    await admin.close();
  }
  return rows;
}


/** The series as Markdown: a row per replica count, then the write rows. */
export function replicaTable(points: ReplicaPoint[], commit: CommitRow[], a: { 'max-hosts': number; 'host-cpu': number; p99: number; 'step-seconds': number }): string[] {
  const servers = (c: Record<string, number>) => Object.entries(c).filter(([k]) => k === 'primary' || k.startsWith('standby')).map(([k, v]) => `${k} ${fmt(v)}`).join(', ');
  return [
    `${a['max-hosts']} hosts capped at ${a['host-cpu']} cores each behind nginx, cold reads (uniform over the last 10 % of products; caches on, as deployed), with 0..N hot standbys of the embedded primary, all on this 2-core box. Highest constant rate holding p99 ≤ ${a.p99} ms with 0 errors (${a['step-seconds']} s steps).`,
    '',
    '| standbys | max req/s | p99 ms there | PostgreSQL CPU µs per request, each server | all PostgreSQL | hosts | nginx |',
    '|---:|---:|---:|---|---:|---:|---:|',
    ...points.map((p) => `| ${p.replicas} | ${fmt(p.maxRate)} | ${p.best ? fmt(p.best.p99, 1) : ''} | ${p.best ? servers(p.best.cpuUsPerRequest) : ''} | ${p.best ? fmt(p.best.cpuUsPerRequest.postgres) : ''} | ${p.best ? fmt(p.best.cpuUsPerRequest.hosts) : ''} | ${p.best ? fmt(p.best.cpuUsPerRequest.nginx) : ''} |`),
    '',
    'Writes only (POST, helpful, report) with one standby, asynchronous vs synchronous (`synchronous_standby_names`), alternating:',
    '',
    '| standby | writes/s | p50 ms | p99 ms | errors | PostgreSQL CPU µs per write (all servers) | hosts |',
    '|---|---:|---:|---:|---:|---:|---:|',
    ...commit.map((c) => `| ${c.synchronous ? 'synchronous' : 'asynchronous'} | ${fmt(c.rate)} | ${fmt(c.p50, 2)} | ${fmt(c.p99, 1)} | ${fmt(c.errors)} | ${fmt(c.cpuUsPerRequest.postgres)} | ${fmt(c.cpuUsPerRequest.host)} |`),
  ];
}

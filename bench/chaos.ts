// `npm run chaos -- --minutes N` (issue 27): the nemesis of the exactness oracle
// (src/cluster/nemesis.ts) against the local cluster with a hot standby applying WAL late
// (`npm run cluster -- --replicas 1`, nginx + 2 hosts on the embedded PostgreSQL), under the
// open-loop storefront mix. A fault every --interval seconds, each kind in turn in a seeded
// order; beside the mix, a write ledger (POSTs with idempotency keys, retried as a client
// would; helpful votes). At the end, once quiet for nginx's TTL plus a margin: the exactness
// check through nginx against a fresh render, the ledger against the database, the audit of
// `npm run verify`, and each process's RSS at the start and the end.
// Per fault kind: the mix's requests that failed while it lasted (and the second after), and
// the time from its start until the mix saw no failed request for two seconds running.
import fs from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { childrenOf, postmasterOf } from './cpu';
import { asDeployed } from './api-bench';
import { createApp } from '../src/app';
import { freePort, startCluster } from '../src/cluster/cluster';
import { differingViews, FAULT_KINDS, helpfulnessOf, Nemesis, WriteLedger, type FaultKind, type FaultRecord } from '../src/cluster/nemesis';
import { Db } from '../src/db';
import type { EmbeddedPostgres } from '../src/db/embedded-postgres';
import { startStandby } from '../src/db/standby';
import { prepareDatabase } from '../src/etl/sample';
import { createRandom } from '../src/lib/random.js';
import { auditAggregates } from '../src/reviews/aggregates';
import type { LocalClusterSettings } from '../src/cluster/local-cluster';
import { runLoad, type RunResult } from '../loadtest/node/runner';

export interface ChaosOptions {
  minutes: number;
  rate: number;
  intervalS: number;
  holdMs: number;
  applyDelayMs: number;
  seed: number;
  cacheTtlS: number;
  log: (line: string) => void;
}

export interface FaultSummary { kind: FaultKind; count: number; failedDuring: number; worstRecoveryS: number; meanRecoveryS: number }

export interface ChaosReport {
  options: Omit<ChaosOptions, 'log'>;
  load: { requests: number; errors: number; statuses: Record<string, number>; p50: number; p99: number; max: number };
  faults: FaultSummary[];
  exactness: { views: number; differing: string[] };
  ledger: Awaited<ReturnType<WriteLedger['check']>>;
  drift: string[];
  /** What the hosts logged as unexpected errors (their 500s), distinct, with counts. */
  unexpectedErrors: string[];
  rss: { process: string; startMb: number; endMb: number }[];
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function rssMb(pid: number): number {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) / 1024 : 0;
  } catch {
    return 0;
  }
}

/**
 * Per kind: failed requests of the mix in the seconds a fault lasted (plus one), and the
 * time from its start to the first two seconds in a row without a failed request.
 */
export function summariseFaults(faults: FaultRecord[], result: RunResult, startedAt: number): FaultSummary[] {
  const errorsAt = (s: number) => result.timeline.find((p) => p.second === s)?.errors ?? 0;
  const out = new Map<FaultKind, { count: number; failed: number; recoveries: number[] }>();
  for (const f of faults) {
    const from = Math.floor((f.startedAt - startedAt) / 1000);
    const to = Math.floor((f.endedAt - startedAt) / 1000) + 1;
    let failed = 0;
    for (let s = from; s <= to; s++) failed += errorsAt(s);
    let clear = from;
    while (clear < from + 120 && (errorsAt(clear) > 0 || errorsAt(clear + 1) > 0)) clear++;
    const e = out.get(f.kind) ?? { count: 0, failed: 0, recoveries: [] };
    e.count++;
    e.failed += failed;
    e.recoveries.push(Math.max(0, (startedAt + clear * 1000 - f.startedAt) / 1000));
    out.set(f.kind, e);
  }
  return [...out].map(([kind, e]) => ({
    kind, count: e.count, failedDuring: e.failed,
    worstRecoveryS: Math.max(...e.recoveries), meanRecoveryS: e.recoveries.reduce((a, b) => a + b, 0) / e.recoveries.length,
  }));
}

export async function runChaos(o: ChaosOptions, config: LocalClusterSettings): Promise<ChaosReport> {
  const log = o.log;
  const random = createRandom(o.seed);
  const database = await prepareDatabase(config, log, { replication: true });
  let standby: EmbeddedPostgres | undefined;
  let cluster: Awaited<ReturnType<typeof startCluster>> | undefined;
  let truth: http.Server | undefined;
  const truthDb = new Db({ connectionString: database.url, poolSize: 2, application: 'atelier-truth' });
  try {
    standby = await startStandby({
      primary: { dir: config.EMBEDDED_PG_DIR, serverUrl: database.embedded!.serverUrl },
      dir: `${config.EMBEDDED_PG_DIR}-standby-chaos`, port: config.EMBEDDED_PG_PORT + 9, slot: 'chaos_standby', ephemeral: true, applyDelayMs: o.applyDelayMs,
    });
    const standbyUrl = standby.url('atelier');
    log(`standby applying WAL ${o.applyDelayMs} ms late: ${standbyUrl}`);
    cluster = await startCluster({
      databaseUrl: database.url, port: await freePort(), hostPorts: [await freePort(), await freePort()], cacheTtl: `${o.cacheTtlS}s`,
      // One load generator stands for many shoppers: nginx's per-client limits are lifted.
      readRate: '100000r/s', writeRate: '100000r/s',
      ...asDeployed('nginx-chaos', { DATABASE_REPLICA_URLS: standbyUrl }),
    });
    log(`cluster: ${cluster.url} (hosts ${cluster.hosts.map((h) => h.address).join(', ')})`);
    truth = createApp(truthDb, { log: () => undefined }).listen(0, '127.0.0.1');
    await new Promise((r) => truth!.once('listening', r));
    const truthBase = `http://127.0.0.1:${(truth.address() as AddressInfo).port}`;

    // The operator's products: twelve that have characteristics; the ledger writes three others.
    // From the far end of the ids: the mix draws products by Zipf from the first ones, and
    // its votes must not land on the ledger's reviews.
    const { rows } = await truthDb.query<{ p: number }>('SELECT product_id AS p FROM atelier.characteristics GROUP BY 1 ORDER BY 1 DESC LIMIT 15');
    const ids = rows.map((r) => r.p);
    const [ledgerProducts, operated] = [ids.slice(0, 3), ids.slice(3)];
    const reviewIds = (await truthDb.query<{ id: number }>('SELECT id FROM atelier.reviews WHERE product_id = ANY($1::int[]) AND NOT reported ORDER BY id LIMIT 20', [ledgerProducts])).rows.map((r) => r.id);
    const products = (await truthDb.query<{ n: number }>('SELECT coalesce(max(product_id), 1) AS n FROM atelier.reviews')).rows[0].n;
    const before = await helpfulnessOf(database.url, reviewIds);
    const ledger = new WriteLedger(`chaos-${Date.now()}`, ledgerProducts, reviewIds);

    const pids = async () => {
      const nginxMaster = cluster!.nginx.process.pid!;
      return [
        ...cluster!.hosts.map((h, i) => ({ process: `host ${i + 1}`, pid: h.process.pid! })),
        { process: 'nginx master', pid: nginxMaster },
        ...childrenOf(nginxMaster).map((pid, i) => ({ process: `nginx child ${i + 1}`, pid })),
        { process: 'PostgreSQL primary (postmaster)', pid: await postmasterOf(database.url) },
        { process: 'PostgreSQL standby (postmaster)', pid: await postmasterOf(standbyUrl) },
      ];
    };
    // What a host answered 500 for: each 'unexpected error' it logs, kept (distinct, a few).
    const unexpected = new Map<string, number>();
    for (const h of cluster.hosts) {
      let buffered = '';
      h.process.stderr?.on('data', (d: Buffer) => {
        buffered = (buffered + d.toString()).slice(-100_000);
        for (const m of buffered.matchAll(/unexpected error: ([^\n]*)/g)) unexpected.set(m[1].slice(0, 300), (unexpected.get(m[1].slice(0, 300)) ?? 0) + 1);
        buffered = buffered.slice(buffered.lastIndexOf('\n') + 1);
      });
    }
    const procs = await pids();
    const rssStart = procs.map((p) => rssMb(p.pid));

    const nemesis = new Nemesis({
      primaryUrl: database.url, standbyUrls: [standbyUrl], readBase: `http://${cluster.hosts[0].address}`,
      shopBases: [cluster.url], products: operated, holdMs: o.holdMs, random,
    });
    const kinds = nemesis.kinds;
    const durationS = Math.round(o.minutes * 60);
    log(`${durationS} s of the storefront mix at ${o.rate} req/s (open loop) through nginx; a fault every ${o.intervalS} s (${kinds.join(', ')}), a ledger write every 100 ms`);
    const startedAt = Date.now();
    let running = true;
    const load = runLoad({ target: cluster.url, stages: [{ rate: o.rate, duration: durationS }], products, seed: o.seed });
    const writer = (async () => {
      while (running) {
        await (random() < 0.6 ? ledger.post(cluster!.url, random) : ledger.helpful(cluster!.url, random));
        await sleep(100);
      }
    })();
    const faults = (async () => {
      let order: FaultKind[] = [];
      while (Date.now() - startedAt < (durationS - o.intervalS) * 1000) {
        await sleep(o.intervalS * 1000);
        if (!order.length) order = [...kinds].sort(() => random() - 0.5);
        const f = await nemesis.inject(order.shift()!);
        log(`${((f.startedAt - startedAt) / 1000).toFixed(0).padStart(5)} s  ${f.kind.padEnd(13)} ${f.detail} (${f.endedAt - f.startedAt} ms)`);
      }
    })();
    let result: RunResult;
    try {
      result = await load;
    } finally {
      running = false;
      await Promise.all([writer, faults]);
      await nemesis.close();
    }

    // Quiet for the stated bound: nginx's TTL plus a second (it expires in whole seconds) and a margin.
    await sleep((o.cacheTtlS + 1) * 1000 + 1000);
    const views = operated.flatMap((p) => [`/reviews/meta?product_id=${p}`, `/reviews?product_id=${p}&count=5`, `/reviews?product_id=${p}&sort=newest&count=20`]);
    const differing = await differingViews(cluster.url, truthBase, views);
    const ledgerCheck = await ledger.check(database.url, before);
    const audit = await auditAggregates(truthDb);
    const stage = result.stages[0];
    return {
      options: { minutes: o.minutes, rate: o.rate, intervalS: o.intervalS, holdMs: o.holdMs, applyDelayMs: o.applyDelayMs, seed: o.seed, cacheTtlS: o.cacheTtlS },
      load: { requests: stage.requests, errors: stage.errors, statuses: stage.statuses, p50: stage.latencyMs.p50, p99: stage.latencyMs.p99, max: stage.latencyMs.max },
      faults: summariseFaults(nemesis.log, result, startedAt),
      exactness: { views: views.length, differing },
      ledger: ledgerCheck,
      drift: audit.examples,
      unexpectedErrors: [...unexpected].slice(0, 10).map(([line, n]) => `${n} x ${line}`),
      rss: procs.map((p, i) => ({ process: p.process, startMb: rssStart[i], endMb: rssMb(p.pid) })),
    };
  } finally {
    await new Promise((r) => (truth ? truth.close(r) : r(undefined)));
    await truthDb.close().catch(() => undefined);
    await cluster?.stop();
    await standby?.stop();
    await database.stop();
  }
}

export { FAULT_KINDS };

// The API benchmark behind `npm run bench` -- [--scale S] [--duration SECONDS] [--load-duration SECONDS]
// One run on one generated dataset, everything on this box: the HTTP ceiling (bare
// node:http), one host with its response cache off (cold reads) and on (Zipf reads), the
// nginx cluster under the load scenario at 1000 req/s and at max rate, and overload (32 vs
// 1000 connections) against one host and the cluster. Max-rate rows use wrk (Debian's
// package; it costs a fraction of a Node generator's CPU per request), the fixed-rate row
// the Node generator. Prints a table with CPU per request per process, and writes
// bench/results/api-scale-S.json (api-scale-S-cold.json etc. with --only).
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { asDeployed, benchLogDir, costRatios, DEPLOYED_HOST_ENV, only, processGroups, READS, requestList, stageRow, wrkRow, type Row, type StepCost } from './api-bench';
import { childrenOf, cpuHog, sampleCpuOf, withCpu } from './cpu';
import { findWrk } from './wrk';
import { UsageError, formatNumber as fmt } from '../src/lib/cli';
import { freePort, startCluster, startHost, testNginxConfig, type NginxHandle } from '../src/cluster/cluster';
import { prepareBenchDatabase } from './dataset';
import { Db } from '../src/db';
import { runLoad, type RunResult, type StageResult } from '../loadtest/node/runner';
import { apiTable, currentCommit } from './report';
import { fromRoot } from '../src/lib/paths';
import { describeMaintenance, describeWaits, maintenance, maintenanceBetween, sampleWaits } from './wait-sampler';
import { withBareServer } from './bare-server';
import { EVENT_LOOP_SAMPLE_MS } from '../src/http/metrics';
import { cacheability } from './cacheability';

export const SECTIONS = ['cold', 'cache', 'metrics', 'logs', 'cluster', 'knee', 'steady', 'writes', 'fairness', 'overload', 'ab'];
// The generator is one address standing for many shoppers: the hosts' per-client render
// budget is lifted for it, as nginx's per-client limits are raised for the cluster rows.
const ONE_GENERATOR = { READ_BUDGET_KB_S: '0' };

export interface ApiBenchArgs {
  scale: number;
  duration: number;
  'load-duration': number;
  'step-seconds': number;
  /** --only knee/steady: seconds at a step's rate before the step is measured (0: none). */
  'lead-in': number;
  /** --only knee: ramps in a row on one cluster; the headline is their median knee. */
  ramps: number;
  seed: number;
  /** Run on the database as earlier runs left it, not on the dataset as imported (bench/dataset.ts). */
  'keep-data'?: boolean;
  only: string;
  /** --only ab: the hosts' environment of side A and of side B (NAME=VALUE,NAME=VALUE), the rate and the rounds. */
  a: string;
  b: string;
  /** --only ab: nginx directives added to each side's read locations (reviews-read.conf), '' for none. */
  'a-nginx': string;
  'b-nginx': string;
  /** --only ab: each side's hosts' and nginx's scheduling policy (chrt: 'other', the default, or 'batch'). */
  'a-sched': string;
  'b-sched': string;
  rate: number;
  rounds: number;
  /** Accept-Encoding on every generated request ('' for none). */
  'accept-encoding': string;
}

/** NAME=VALUE,NAME=VALUE as an environment (empty: none). */
export function parseEnvList(text: string): Record<string, string> {
  const env: Record<string, string> = {};
  for (const part of text.split(',').map((x) => x.trim()).filter(Boolean)) {
    const m = /^([A-Z][A-Z0-9_]*)=(.*)$/.exec(part);
    if (!m) throw new UsageError(`--a/--b take NAME=VALUE,NAME=VALUE (got "${part}")`);
    env[m[1]] = m[2];
  }
  return env;
}

/** The sections `--only` names; `all` is every section but the A/B, which needs its two sides named. */
export const sectionsOf = (only: string): string[] => (only === 'all' ? SECTIONS.filter((x) => x !== 'ab') : only.split(','));

/** The middle value (the mean of the middle two for an even count). */
const median = (xs: number[]) => {
  const s = [...xs].sort((x, y) => x - y);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};

export async function runApiBenchmark(a: ApiBenchArgs): Promise<void> {
  const sections = sectionsOf(a.only);
  const unknown = sections.filter((s) => !SECTIONS.includes(s));
  if (unknown.length) throw new UsageError(`--only takes ${SECTIONS.join(', ')} (got ${unknown.join(', ')})`);
  const runs = (section: string) => sections.includes(section);
  if (!findWrk()) throw new Error('the benchmark drives max-rate rows with wrk: apt-get install wrk');
  const log = (l: string) => console.log(`[bench] ${l}`);
  const { url, products, reviews, plan, embedded, stop } = await prepareBenchDatabase(a.scale, a.seed, log, { keep: a['keep-data'] });
  const db = new Db({ connectionString: url, poolSize: 2 });

  const rows: Row[] = [];
  const d = a.duration;
  let seed = a.seed * 1000;
  // Every open-loop run sends what browsers send (nginx gzips JSON of 1 KB or more for them).
  const browser = { acceptEncoding: a['accept-encoding'] || undefined };
  const list = (distribution: string, mix: Parameters<typeof requestList>[0]['mix'], n = 300_000) =>
    requestList({ n, products, distribution, mix, seed: seed++, db });
  const add = (r: Row) => {
    rows.push(r);
    log(`${r.name}: ${fmt(r.rps)} rps, p99 ${fmt(r.p99, 1)} ms, errors ${fmt(r.errors)}`);
  };

  // 1. The box's HTTP ceiling.
  await withBareServer(async ({ url: bare, pid }) => {
    add(await wrkRow('baseline: bare node:http, 1 KB JSON', bare, [{ method: 'GET', path: '/' }], { seconds: d, connections: 64, groups: processGroups([pid]) }));
    // The floor under the overload rows' p99: the same server at 1000 connections. wrk opens
    // them all at once and this box accepts them over seconds, so the first request of the
    // late ones waits that long whatever the server does (measured: p99 4.3–5.4 s).
    if (runs('overload')) {
      add(await wrkRow('baseline: bare node:http, 1 KB JSON, 1000 connections', bare, [{ method: 'GET', path: '/' }], { seconds: 12, connections: 1000, groups: processGroups([pid]) }));
    }
  });
  const ceiling = rows[0].rps;

  // What the data set costs on disk (issue 29 item 4): every relation of the live schema
  // (tables, their TOAST and indexes), per review.
  const diskBytes = Number((await db.query<{ bytes: string }>(
    "SELECT sum(pg_total_relation_size(c.oid)) AS bytes FROM pg_class c WHERE c.relnamespace = 'atelier'::regnamespace AND c.relkind IN ('r', 'm')")).rows[0].bytes);
  log(`disk: ${fmt(diskBytes / 2 ** 20)} MiB for ${fmt(reviews)} reviews = ${fmt(diskBytes / reviews)} bytes per review (tables, TOAST and indexes)`);

  const startBenchCluster = async (name = 'nginx', env: Record<string, string> = {}) => {
    const cluster = await startCluster({
      databaseUrl: url, port: await freePort(), hostPorts: [await freePort(), await freePort()], prefix: fromRoot('.data', 'bench', name),
      ...asDeployed(name, env),
      // All load comes from one address here: lift the per-client limits (production: 10 writes/s, 200 reads/s).
      writeRate: '1000000r/s', readRate: '1000000r/s',
    });
    // A cluster that has been serving holds its meta table: no step measures its load.
    await untilTablesLoaded(cluster.hosts);
    return cluster;
  };
  const untilTablesLoaded = async (hosts: { address: string }[]) => {
    if (!(await tablesLoaded(hosts, 600_000))) log('meta or reviews from memory not loaded on every host after 600 s: measuring without them');
  };
  /** One host, once it holds its meta table (as a host that has been serving does). */
  const startBenchHost = async (env: Record<string, string>) => {
    const host = await startHost({ port: await freePort(), databaseUrl: url, env: { ...DEPLOYED_HOST_ENV, ...env, ...ONE_GENERATOR }, logFile: path.join(benchLogDir('host'), 'host.log') });
    await untilTablesLoaded([host]);
    return host;
  };

  // 2. One host, cold reads, uniform over the last 10 % of products: first as deployed
  // (response cache and metrics on; the host-cache hit column says how cold the run was),
  // then with the response cache off.
  for (const [config, env] of runs('cold') ? [['as deployed', {}], ['cache off', { RESPONSE_CACHE_MB: '0' }]] as const : []) {
    const host = await startBenchHost(env);
    const target = `http://${host.address}`;
    const groups = processGroups([host.process.pid!]);
    try {
      for (const [op, label] of [['list', 'GET /reviews'], ['meta', 'GET /reviews/meta']] as const) {
        // A short warm-up on other draws first: the host's JIT and each connection's prepared
        // statement are ready, as in a host that has been serving (measured: the first seconds
        // of a fresh host had a p99 of 120-130 ms against 25 ms after).
        await wrkRow('warm-up', target, await list('uniform-last-10pct', only(op), 30_000), { seconds: 3, connections: 64, groups });
        add(await wrkRow(`one host, ${config}, cold ${label} (uniform last 10 %)`, target, await list('uniform-last-10pct', only(op)), { seconds: d, connections: 64, groups }));
      }
    } finally {
      await host.stop();
    }
  }

  // 3. One host with its response cache: Zipf reads after a warm-up of the same length.
  if (runs('cache')) {
    const host = await startBenchHost({});
    const target = `http://${host.address}`;
    const groups = processGroups([host.process.pid!]);
    try {
      await wrkRow('warm-up', target, await list('zipf', READS), { seconds: d, connections: 64, groups });
      add(await wrkRow('one host, response cache on, Zipf reads, max rate (after a warm-up)', target, await list('zipf', READS), { seconds: d, connections: 64, groups }));
    } finally {
      await host.stop();
    }
  }

  // 3b. What the metrics cost on the cheapest request there is (a host-cache hit): the same
  // host with METRICS off and on, alternating (without meta from memory on either side: with
  // METRICS off there is no gauge to wait on for its load, which would land in the run).
  for (const metrics of runs('metrics') ? ['off', 'on', 'off', 'on'] : []) {
    const host = await startBenchHost({ METRICS: metrics, META_MEMORY_MB: '0', REVIEW_MEMORY_MB: '0' });
    try {
      const target = `http://${host.address}`;
      const one = [{ method: 'GET', path: '/reviews?product_id=5' }];
      await fetch(`${target}${one[0].path}`);
      add(await wrkRow(`one host, one cached URL (host-cache hits), metrics ${metrics}`, target, one, { seconds: d, connections: 64, groups: processGroups([host.process.pid!]) }));
    } finally {
      await host.stop();
    }
  }

  // 3c. What the JSON request log costs on a host-cache hit: LOG_FORMAT off and json,
  // alternating (metrics on, as deployed).
  for (const format of runs('logs') ? ['off', 'json', 'off', 'json'] : []) {
    const host = await startBenchHost({ LOG_FORMAT: format });
    try {
      const target = `http://${host.address}`;
      const one = [{ method: 'GET', path: '/reviews?product_id=5' }];
      await fetch(`${target}${one[0].path}`);
      add(await wrkRow(`one host, one cached URL (host-cache hits), LOG_FORMAT=${format}`, target, one, { seconds: d, connections: 64, groups: processGroups([host.process.pid!]) }));
    } finally {
      await host.stop();
    }
  }

  // 4. The cluster: nginx + 2 hosts, both cache tiers, the load scenario's mix.
  // `name` and `env`: a second cluster beside the first (the A/B section), with its hosts' environment.
  if (runs('cluster')) {
    const cluster = await startBenchCluster();
    const groups = processGroups(cluster.hosts.map((h) => h.process.pid!), true);
    try {
      log(`cluster: the load scenario, 1000 req/s for ${a['load-duration']} s (Node generator), Zipf`);
      // Open loop (src/loadtest/runner.ts): latency from each request's scheduled time.
      const { result, cpuMs } = await withCpu(groups, () => runLoad({ ...browser, target: cluster.url, stages: [{ rate: 1000, duration: a['load-duration'] }], products, distribution: 'zipf', seed: seed++ }));
      add(stageRow('nginx + 2 hosts, load scenario: 1000 req/s, Zipf mix', result.stages[0], cpuMs));
      await wrkRow('warm-up', cluster.url, await list('zipf', undefined), { seconds: d, connections: 64, groups });
      add(await wrkRow('nginx + 2 hosts, Zipf mix (writes included), max rate (after a warm-up)', cluster.url, await list('zipf', undefined), { seconds: d, connections: 64, groups }));
    } finally {
      await cluster.stop();
    }
  }

  // 3b. The knee for arriving traffic (issue 29 item 1), as ops measure it with k6's
  // constant-arrival-rate: the storefront mix (Zipf), open loop, through nginx + 2 hosts as
  // deployed; rates doubling from 500 req/s until a step misses (p99 > 50 ms or any error),
  // then bisecting to within 10 %; --step-seconds each (default 30). At every rate: the
  // floor (bare node:http, same generator, same rate, a third of the step), then the step:
  // --lead-in s at the rate (default 5, not counted, reported as "from idle"), and on the same
  // schedule the measured --step-seconds; CPU per request of each process group with the
  // generator's own apart (this process), and where a request spends its time: in a host (its
  // duration histogram), the rest (nginx, the kernel, the generator) outside; the hosts'
  // event-loop delay. The knee is the highest rate that held.
  // 3c. Steady (issue 29's "done when"): the same mix at 1,000 req/s, three 60 s runs in a row,
  // each beside its floor and after its lead-in; met when p99 <= floor p99 + 5 ms, writes p99
  // <= 10 ms, max <= 100 ms and no errors.
  // Each section on a cluster of its own, so neither starts on hosts the other has warmed.
  for (const section of ['steady', 'knee'].filter(runs)) {
    const cluster = await startBenchCluster();
    const hostPids = cluster.hosts.map((h) => h.process.pid!);
    const groups = { ...processGroups(hostPids, true), generator: () => [process.pid] };
    const stepS = a['step-seconds'];
    // prom-client's lag includes the sampling interval (an idle host reads it): the delay is the rest.
    const loopDelayMs = (ms: number) => Math.max(0, ms - EVENT_LOOP_SAMPLE_MS);
    /** What a step must do to count as met, and how the log names it. */
    interface Verdict { label: string; criterion: string; met(st: StageResult, floorP99: number): boolean }
    // How a step's window starts, in every criterion and knee row: runs with and without a lead-in differ.
    const afterLeadIn = a['lead-in'] > 0 ? `, after a ${a['lead-in']} s lead-in` : ', from idle';
    const KNEE: Verdict = { label: 'knee', criterion: `p99 <= 50 ms, no errors${afterLeadIn}`, met: (st) => st.latencyMs.p99 <= 50 && st.errors === 0 };
    /** Each step's CPU per request by rate (the ramp under way), for the ratio to the knee. */
    const costs = new Map<number, StepCost>();
    const step = async (rate: number, seconds: number, name: string, verdict: Verdict) => {
      const floor = await withBareServer(async ({ url: bare, pid }) => withCpu({ ...processGroups([pid]), generator: () => [process.pid] },
        (restart) => runLoad({ ...browser, target: bare, stages: [{ rate, duration: Math.max(5, Math.round(seconds / 3)), leadIn: a['lead-in'] }], products, mix: only('list'), seed: seed++, onMeasureStart: restart })));
      const floorP99 = floor.result.stages[0].latencyMs.p99;
      // The floor's own CPU per request at this rate (the bare server, and the generator driving it).
      const floorRequests = Math.max(1, floor.result.stages[0].requests);
      const floorCost = { serverUsPerRequest: (floor.cpuMs.host * 1000) / floorRequests, generatorUsPerRequest: (floor.cpuMs.generator * 1000) / floorRequests };
      // What a cache behind nginx could answer in such a window at all (the traffic model's distribution and this step's seed, from cold).
      // The model draws from the step's own seed (from cold; the step itself follows its lead-in).
      const stepSeed = seed++;
      const model = cacheability({ rate, seconds, products, seed: stepSeed });
      // The lead-in (--lead-in s at this rate, on the same schedule and sockets, not counted):
      // the floor left the cluster idle, and a step that starts from idle measures a burst from
      // cold, not the rate. In the thirteenth session most slow requests of the steps at
      // 1,000-2,000 req/s (87-100 %) and all the errors of the failing 2,000 req/s step were in
      // their first 0.5 s, and 4 s bursts of 2,000 req/s had 79-1,141 errors each after 3 s or
      // 10 s of idle against 0-39 after 0.3 s (docs/benchmarks.md; keeping nginx's connections
      // to the hosts open through the idle did not change that; in the fourteenth session, at
      // scale 0.01, most of it went with a 60 s TTL: nginx's cached answers expire in the idle).
      // The lead-in's figures are kept apart, as "from idle". As the measured part starts, the
      // step takes its CPU readings again (a few ms of /proc reads in this process, counted as
      // send lag) and reads the hosts' metrics (each host's /metrics answer takes ~25 ms of its
      // event loop, now inside the measured part) and PostgreSQL's maintenance counters. The
      // floor gets the same lead-in.
      let before: Promise<HostStats> | undefined;
      let pgBefore: ReturnType<typeof maintenance> | undefined;
      const { result, cpuMs, systemMs, switches, stealMs } = await withCpu(groups, (restart) => runLoad({
        ...browser, target: cluster.url, stages: [{ rate, duration: seconds, leadIn: a['lead-in'] }], products, distribution: 'zipf', seed: stepSeed,
        onMeasureStart: () => {
          restart();
          // One read of the hosts' metrics on each side (it also resets their event-loop histogram),
          // and PostgreSQL's background work during the step (a vacuum or checkpoint can explain a write tail).
          before = hostStats(cluster.hosts);
          pgBefore = maintenance(db);
          // Awaited after the step; a failure then ends the run, not an unhandled rejection now.
          before.catch(() => undefined);
          pgBefore.catch(() => undefined);
        },
      }));
      // onMeasureStart fires before the measured part's first request: a step with none sends nothing.
      if (!before || !pgBefore) throw new Error(`the step at ${rate} req/s sent no measured request (--step-seconds ${seconds})`);
      const leadIn = result.stages[0].leadIn;
      const pgWork = maintenanceBetween(await pgBefore, await maintenance(db));
      // The hypervisor's share of the box's two CPUs during the step (steal time): a slow hour, measured.
      const stealShare = stealMs / (2 * 1000 * seconds);
      const hosts = diffHostStats(await hostStats(cluster.hosts), await before);
      const st = result.stages[0];
      const met = verdict.met(st, floorP99);
      const hostMeanMs = (hosts.durationSum / Math.max(1, hosts.durationCount)) * 1000;
      const ev = hosts.cacheEvents;
      // Reads answered from the hosts' memory: the response cache's hits, meta and lists from memory.
      const fromMemory = (ev.hits ?? 0) + (hosts.metaMemory.served ?? 0) + (hosts.reviewMemory.served ?? 0);
      const row = stageRow(name, st, cpuMs, { systemMs, switches, hostCacheHits: fromMemory });
      // A coalesced read is also counted as a miss (it joined a render in flight).
      const reachedHosts = fromMemory + (ev.misses ?? 0) + (ev.bypassed ?? 0);
      const extra = { ...row.extra, hostCache: { ...ev, hitRatioOfReadsReachingHosts: (ev.hits ?? 0) / Math.max(1, reachedHosts) }, metaMemory: { ...hosts.metaMemory, ratioOfReadsReachingHosts: (hosts.metaMemory.served ?? 0) / Math.max(1, reachedHosts) }, reviewMemory: { ...hosts.reviewMemory, ratioOfReadsReachingHosts: (hosts.reviewMemory.served ?? 0) / Math.max(1, reachedHosts) }, cacheModel: model, floor: { p50: floor.result.stages[0].latencyMs.p50, p99: floorP99, max: floor.result.stages[0].latencyMs.max, ...floorCost },
        hostMeanMs, outsideHostMeanMs: st.latencyMs.mean - hostMeanMs, eventLoopDelayP99Ms: loopDelayMs(hosts.loopP99Ms), eventLoopDelayMaxMs: loopDelayMs(hosts.loopMaxMs), lateSends: st.lateSends,
        gcPauses: hosts.gcPauses, gcSeconds: hosts.gcSeconds, stealShare, maintenance: pgWork, criterion: verdict.criterion, met,
        fromIdle: leadIn && { seconds: leadIn.seconds, requests: leadIn.requests, p50: leadIn.latencyMs.p50, p99: leadIn.latencyMs.p99, max: leadIn.latencyMs.max, errors: leadIn.errors, lateSends: leadIn.lateSends, maxSendLagMs: leadIn.maxSendLagMs } };
      add({ ...row, extra });
      const perRequest = (k: string) => (row.extra?.[k] ?? {}) as Record<string, number>;
      const kernel = perRequest('systemUsPerRequest');
      log(`${verdict.label} ${fmt(rate)} req/s: p50 ${fmt(st.latencyMs.p50, 1)} p99 ${fmt(st.latencyMs.p99, 1)} max ${fmt(st.latencyMs.max, 0)} ms, writes p99 ${fmt(st.writes.p99, 1)} ms, errors ${st.errors}, late sends ${st.lateSends} ` +
        `(floor p99 ${fmt(floorP99, 1)} ms, CPU µs/request bare node:http ${fmt(floorCost.serverUsPerRequest)}, generator ${fmt(floorCost.generatorUsPerRequest)})${leadIn ? `; from idle (the ${leadIn.seconds} s lead-in, not counted): p99 ${fmt(leadIn.latencyMs.p99, 1)} max ${fmt(leadIn.latencyMs.max, 0)} ms, errors ${leadIn.errors}, late sends ${leadIn.lateSends}` : ''}; CPU steal ${fmt(stealShare * 100, 1)} %; mean ${fmt(st.latencyMs.mean, 2)} ms of which in a host ${fmt(hostMeanMs, 2)}; ` +
        `CPU µs/request ${Object.entries(row.cpuUsPerRequest).map(([k, v]) => `${k} ${fmt(v)} (kernel ${fmt(kernel[k] ?? 0)})`).join(', ')}; ` +
        `context switches/request (all threads) ${Object.entries(perRequest('switchesPerRequest')).map(([k, v]) => `${k} ${fmt(v, 2)}`).join(', ')}; event-loop delay p99 ${fmt(extra.eventLoopDelayP99Ms, 1)} ms; ` +
        `hosts' cache ${fmt(ev.hits ?? 0)} hits of ${fmt(reachedHosts)} reads reaching them (the model from cold: ${fmt(model.hostHitRatio * 100, 1)} %, ` +
        `any cache behind nginx ${fmt(model.seenBeforeRatio * 100, 1)} %), meta from memory ${fmt(hosts.metaMemory.served ?? 0)} (loads ${fmt(hosts.metaMemory.loads ?? 0)}), lists from memory ${fmt(hosts.reviewMemory.served ?? 0)} (loads ${fmt(hosts.reviewMemory.loads ?? 0)}); hosts' GC pauses ${Object.entries(hosts.gcPauses).map(([k, v]) => `${k} ${fmt(v)} (${fmt((hosts.gcSeconds[k] ?? 0) * 1000)} ms)`).join(', ')}; PostgreSQL's background work: ${describeMaintenance(pgWork)} -> ${met ? 'met' : 'missed'} (${verdict.criterion})`);
      costs.set(rate, { cluster: row.cpuUsPerRequest, floor: floorCost });
      return met;
    };
    try {
      // Warm both cache tiers and the hosts' JIT, as a cluster that has been serving.
      await runLoad({ ...browser, target: cluster.url, stages: [{ rate: 500, duration: 10 }], products, distribution: 'zipf', seed: seed++ });
      if (section === 'steady') {
        for (let run = 1; run <= 3; run++) {
          await step(1000, 60, `steady: the mix at 1,000 req/s, 60 s, run ${run} of 3`, {
            label: `steady run ${run}:`, criterion: `p99 <= floor p99 + 5 ms, writes p99 <= 10 ms, max <= 100 ms, no errors${afterLeadIn}`,
            met: (st, floorP99) => st.latencyMs.p99 <= floorP99 + 5 && st.writes.p99 <= 10 && st.latencyMs.max <= 100 && st.errors === 0,
          });
        }
        continue;
      }
      // One ramp's verdict depends on when its steps fall on this box (the same code gave
      // 950 and 2,250 req/s back to back): --ramps N runs N in a row and sums them up with
      // the median knee (the lower middle one for an even N: a rate a ramp held).
      const knees: number[] = [];
      for (let ramp = 1; ramp <= a.ramps; ramp++) {
        const of = a.ramps > 1 ? `, ramp ${ramp} of ${a.ramps}` : '';
        const kneeStep = (rate: number) => step(rate, stepS, `knee: the mix at ${fmt(rate)} req/s, open loop, nginx + 2 hosts${of}`, KNEE);
        costs.clear();
        let pass = 0;
        let fail = 0;
        for (let rate = 500; rate <= 64_000; rate *= 2) {
          if (await kneeStep(rate)) pass = rate;
          else {
            fail = rate;
            break;
          }
        }
        while (fail && pass && fail - pass > pass * 0.1) {
          const mid = Math.round((pass + fail) / 2 / 50) * 50;
          if (await kneeStep(mid)) pass = mid;
          else fail = mid;
        }
        log(`knee${of}: ${fmt(pass)} req/s held p99 <= 50 ms with no errors${fail ? `; ${fmt(fail)} req/s did not` : ''}`);
        // Issue 29's ratio: CPU per request at 1,000 req/s against the knee, beside the floor's own.
        const low = costs.get(1000);
        const atKnee = costs.get(pass);
        const ratios = low && atKnee && pass > 1000 ? costRatios(low, atKnee) : undefined;
        if (ratios) {
          log(`knee${of}: CPU per request at 1,000 req/s against the knee (${fmt(pass)} req/s): the box ${fmt(ratios.box, 2)}× (generator included), the service ${fmt(ratios.service, 2)}× (hosts, PostgreSQL, nginx); ` +
            `the floor at the same two rates ${fmt(ratios.floor, 2)}× (bare node:http and its generator; the server alone ${fmt(ratios.floorServer, 2)}×)`);
        }
        rows.push({ name: `knee: highest rate held (p99 <= 50 ms, no errors), ${stepS} s steps${afterLeadIn}${of}`, generator: 'open-loop', rps: pass, p50: 0, p99: 0, max: 0, errors: 0, statuses: {}, cpuUsPerRequest: {}, extra: { firstMissed: fail, costRatios: ratios } });
        knees.push(pass);
      }
      if (a.ramps > 1) {
        const knee = [...knees].sort((x, y) => x - y)[Math.floor((knees.length - 1) / 2)];
        log(`knee: median of ${a.ramps} ramps ${fmt(knee)} req/s (ramps: ${knees.map((k) => fmt(k)).join(', ')})`);
        rows.push({ name: `knee: median of ${a.ramps} ramps, ${stepS} s steps${afterLeadIn}`, generator: 'open-loop', rps: knee, p50: 0, p99: 0, max: 0, errors: 0, statuses: {}, cpuUsPerRequest: {}, extra: { knees } });
      }
    } finally {
      await cluster.stop();
    }
  }

  // 4a. Where the writes' tail goes (issue 20 item 2): the load scenario through the cluster
  // while pg_stat_activity is sampled (bench/wait-sampler.ts), three ways, alternating:
  // as deployed; the writes alone at the rate they have in the mix (do reads delay them?);
  // and, as a diagnosis only, synchronous_commit=off (how much is the commit's WAL flush?).
  // The diagnostic setting is reverted before anything else runs.
  if (runs('writes')) {
    const cluster = await startBenchCluster();
    const groups = processGroups(cluster.hosts.map((h) => h.process.pid!), true);
    const WRITES = [{ op: 'post', weight: 0.03 }, { op: 'helpful', weight: 0.04 }, { op: 'report', weight: 0.01 }];
    const setCommit = async (value: 'on' | 'off') => {
      await db.query(`ALTER SYSTEM SET synchronous_commit = '${value}'`);
      await db.query('SELECT pg_reload_conf()');
      await new Promise((r) => setTimeout(r, 500));
    };
    const phases: [string, () => Promise<void>, number, typeof WRITES | undefined][] = [
      ['as deployed', async () => undefined, 1000, undefined],
      ['writes alone (80 req/s)', async () => undefined, 80, WRITES],
      ['synchronous_commit=off (diagnosis)', () => setCommit('off'), 1000, undefined],
    ];
    try {
      // The floor of this section: the same generator at 1000 req/s against bare node:http.
      await withBareServer(async ({ url: bare, pid }) => {
        const floor = await withCpu(processGroups([pid]), () => runLoad({ ...browser, target: bare, stages: [{ rate: 1000, duration: a['load-duration'] }], products, mix: only('list'), seed: seed++ }));
        add(stageRow('writes\' tail: the floor, bare node:http at 1000 req/s (same generator)', floor.result.stages[0], floor.cpuMs));
      });
      // Warm both cache tiers first, as a cluster that has been serving is.
      await runLoad({ ...browser, target: cluster.url, stages: [{ rate: 1000, duration: a['load-duration'] }], products, distribution: 'zipf', seed: seed++ });
      for (const round of [1, 2]) {
        for (const [label, before, rate, mix] of phases) {
          await before();
          try {
            const hostsBefore = await hostStats(cluster.hosts);
            const { result: { result, cpuMs }, profile } = await sampleWaits(url, 2 * 4, () => withCpu(groups, () =>
              runLoad({ ...browser, target: cluster.url, stages: [{ rate, duration: a['load-duration'] }], products, distribution: 'zipf', mix, seed: seed++ })));
            const inHosts = diffHostStats(await hostStats(cluster.hosts), hostsBefore);
            const s = result.stages[0];
            const row = stageRow(`writes' tail (round ${round}): ${label}, ${rate} req/s, Zipf`, s, { ...cpuMs, postgres: cpuMs.postgres - profile.samplerCpuMs });
            row.extra = { ...row.extra, waits: profile, hostWrites: inHosts };
            add(row);
            log(`  writes inside the hosts (request in to response out): ${fmt(inHosts.count)}, over 10 ms ${fmt(inHosts.over10ms)} (${fmt((100 * inHosts.over10ms) / Math.max(1, inHosts.count), 1)} %), over 25 ms ${fmt(inHosts.over25ms)}; ` +
              `at the generator: over 10 ms ${fmt(s.writes.over10ms)} of ${fmt(s.writes.count)}; ` +
              `hosts' GC: ${Object.entries(inHosts.gcSeconds).filter(([, v]) => v > 0).map(([k, v]) => `${k} ${fmt(inHosts.gcPauses[k])} pauses, ${fmt(v * 1000)} ms`).join(', ')}; longest event-loop delay ${fmt(inHosts.loopMaxMs, 1)} ms`);
            log(`  writes p99 ${fmt(s.writes.p99, 1)} ms (${Object.entries(s.byOp).filter(([k]) => k !== 'list' && k !== 'meta').map(([k, g]) => `${k} ${fmt(g.p99, 1)}`).join(', ')}); ` +
              `PostgreSQL, writes: ${describeWaits(profile.byClass.write)} (${fmt(profile.activeSessions.write ?? 0, 2)} active); ` +
              `reads: ${describeWaits(profile.byClass.read)} (${fmt(profile.activeSessions.read ?? 0, 2)} active); all 8 connections busy in ${fmt((100 * profile.saturatedSamples) / Math.max(1, profile.samples), 1)} % of ${fmt(profile.samples)} samples`);
          } finally {
            if (label.startsWith('synchronous_commit')) await setCommit('on');
          }
        }
      }
    } finally {
      await db.query('ALTER SYSTEM RESET synchronous_commit').then(() => db.query('SELECT pg_reload_conf()')).catch(() => undefined);
      await cluster.stop();
    }
    // CPU per write (issue 20's targets: POST ≤ 350 µs host and ≤ 400 µs PostgreSQL; helpful
    // and report ≤ 150 µs each): one host as deployed, each write alone at max rate (wrk, 16
    // connections), so fixed per-second costs do not weigh on it. Report hides reviews: its
    // row is short (3 s).
    const host = await startBenchHost({});
    try {
      const target = `http://${host.address}`;
      const hostGroups = processGroups([host.process.pid!]);
      for (const [op, seconds] of [['post', d], ['helpful', d], ['report', 3]] as const) {
        await wrkRow('warm-up', target, await list('zipf', only(op), 5_000), { seconds: 2, connections: 16, groups: hostGroups });
        add(await wrkRow(`one host, ${op === 'post' ? 'POST /reviews' : `PUT /reviews/:id/${op}`} only, max rate (Zipf products)`, target, await list('zipf', only(op), 100_000), { seconds, connections: 16, groups: hostGroups }));
      }
    } finally {
      await host.stop();
    }
  }

  // 4b. Fairness (issue 19 #12, issue 28 #6): the cluster as deployed (nginx's per-client
  // limits, its per-client read concurrency and the hosts' render budget at their defaults).
  // A shopper (127.0.0.2, Zipf reads, 100 req/s, open loop) alone; beside one heavy client
  // (127.0.0.1, wrk, 16 connections) asking for count=1000 pages of every sort and page; and
  // beside a CPU hog burning what the heavy client's generator burned (wrk's CPU, measured
  // in that phase): on this box the generator shares the two cores, so the hog row is the
  // part of the harm that is the generator's, and the rest is the service's.
  if (runs('fairness')) {
    const cluster = await startCluster({
      databaseUrl: url, port: await freePort(), hostPorts: [await freePort(), await freePort()], prefix: fromRoot('.data', 'bench', 'nginx-fair'), ...asDeployed('nginx-fair'),
    });
    const groups = processGroups(cluster.hosts.map((h) => h.process.pid!), true);
    try {
      const seconds = a['load-duration'];
      const shopper = () => runLoad({ ...browser, target: cluster.url, stages: [{ rate: 100, duration: seconds }], products, distribution: 'zipf', mix: READS, seed: seed++, localAddress: '127.0.0.2' });
      const alone = await withCpu(groups, shopper);
      add({ ...stageRow('fairness: a shopper alone (127.0.0.2, 100 req/s Zipf reads)', alone.result.stages[0], alone.cpuMs) });
      const heavy = (await list('zipf', only('list'), 50_000)).map((r, i) => ({ ...r, path: r.path.replace(/count=\d+/, `count=${1000 - (i % 40)}`) }));
      const generator = sampleCpuOf('wrk');
      const [beside] = await Promise.all([
        withCpu(groups, shopper),
        wrkRow('fairness: the heavy client (127.0.0.1, count=1000 pages, wrk, 16 connections)', cluster.url, heavy, { seconds, connections: 16, groups }).then(add),
      ]);
      const generatorCores = generator.stop() / 1000 / seconds;
      const besideRow = stageRow('fairness: the shopper beside the heavy client', beside.result.stages[0], beside.cpuMs);
      add({ ...besideRow, extra: { ...besideRow.extra, generatorCores } });
      const hog = cpuHog(generatorCores);
      let besideHog: Awaited<ReturnType<typeof withCpu<RunResult>>>;
      try {
        besideHog = await withCpu(groups, shopper);
      } finally {
        hog.stop();
      }
      add({ ...stageRow(`fairness: the shopper beside a CPU hog of the heavy generator's ${fmt(generatorCores, 2)} cores`, besideHog.result.stages[0], besideHog.cpuMs) });
      const [p0, p1, p2] = [alone, beside, besideHog].map((x) => x.result.stages[0].latencyMs.p99);
      log(`fairness: shopper p99 ${fmt(p0, 1)} ms alone, ${fmt(p1, 1)} ms beside the heavy client (${fmt(p1 / p0, 2)}x; target at most 2x), ` +
        `${fmt(p2, 1)} ms beside a hog of its generator's ${fmt(generatorCores, 2)} cores: the generator's share of the harm ${fmt(Math.max(0, p2 - p0), 1)} ms, the service's ${fmt(Math.max(0, p1 - p2), 1)} ms`);
    } finally {
      await cluster.stop();
    }
  }

  // 4c. A paired A/B of two host configurations (--a, --b): two clusters side by side on one
  // database, the mix at --rate sent to one then the other in --step-seconds runs, --rounds
  // times, the order swapped every round. This box's speed drifts by tens of per cent within
  // minutes, which swamps a 10 % effect between runs minutes apart; runs seconds apart, in
  // pairs, share the drift. Idle, a cluster burns 1-2 % of a core; its hosts also hear the
  // loaded side's writes (one database), both ways alike. Each side's CPU per request per
  // process group (PostgreSQL is shared: only the loaded side uses it; "nginx" is every nginx
  // process, the idle side's included; the total includes the generator, the same for both
  // sides, which pulls B/A towards 1), p99, writes p99, errors, the hosts' cache counters and
  // cold reads per statement per run; the medians and the per-round ratio B/A of total CPU.
  if (runs('ab')) {
    const sides = [parseEnvList(a.a), parseEnvList(a.b)];
    const directives = [a['a-nginx'], a['b-nginx']].map((d) => d.trim());
    const scheds = [a['a-sched'], a['b-sched']];
    for (const s of scheds) if (s !== 'other' && s !== 'batch') throw new UsageError(`--a-sched/--b-sched take other or batch (got ${s})`);
    const labels = [0, 1].map((i) => [[a.a, a.b][i], directives[i] && `nginx: ${directives[i]}`, scheds[i] !== 'other' && `hosts and nginx SCHED_${scheds[i].toUpperCase()}`].filter(Boolean).join('; ') || 'as deployed');
    const clusters: Awaited<ReturnType<typeof startCluster>>[] = [];
    try {
      for (const [i, env] of sides.entries()) {
        const c = await startBenchCluster(`nginx-ab-${i}`, env);
        clusters.push(c);
        if (directives[i]) await addReadDirectives(c.nginx, directives[i]);
        if (scheds[i] !== 'other') setSchedPolicy(scheds[i], [...c.hosts.map((h) => h.process.pid!), c.nginx.process.pid!, ...childrenOf(c.nginx.process.pid!)]);
      }
      // Warm both, then one unrecorded run each at the rate: the very first run at the rate was
      // the slowest of the whole A/B in 3 of 4 trials, and side A would always have taken it.
      for (const c of clusters) await runLoad({ ...browser, target: c.url, stages: [{ rate: 500, duration: 10 }], products, distribution: 'zipf', seed: seed++ });
      for (const c of clusters) await runLoad({ ...browser, target: c.url, stages: [{ rate: a.rate, duration: a['step-seconds'] }], products, distribution: 'zipf', seed: seed++ });
      const totals: number[][] = [[], []];
      for (let round = 0; round < a.rounds; round++) {
        for (const i of round % 2 ? [1, 0] : [0, 1]) {
          const c = clusters[i];
          const groups = { ...processGroups(c.hosts.map((h) => h.process.pid!), true), generator: () => [process.pid] };
          const before = await hostStats(c.hosts);
          const { result, cpuMs } = await withCpu(groups, () => runLoad({ ...browser, target: c.url, stages: [{ rate: a.rate, duration: a['step-seconds'] }], products, distribution: 'zipf', seed: seed++ }));
          const hosts = diffHostStats(await hostStats(c.hosts), before);
          const row = stageRow(`ab: ${i ? 'B' : 'A'} (${labels[i]}), round ${round + 1}, the mix at ${fmt(a.rate)} req/s`, result.stages[0], cpuMs, { hostCacheHits: (hosts.cacheEvents.hits ?? 0) + (hosts.metaMemory.served ?? 0) + (hosts.reviewMemory.served ?? 0) });
          const meanBatch = (hosts.batched.requests ?? 0) / Math.max(1, hosts.batched.statements ?? 0);
          add({ ...row, extra: { ...row.extra, hostCache: hosts.cacheEvents, metaMemory: hosts.metaMemory, reviewMemory: hosts.reviewMemory, batched: hosts.batched, meanBatch, gcSeconds: hosts.gcSeconds } });
          totals[i].push(Object.values(row.cpuUsPerRequest).reduce((x, y) => x + y, 0));
        }
      }
      const abRows = rows.filter((r) => r.name.startsWith('ab: '));
      for (const [i, label] of ['A', 'B'].entries()) {
        const mine = abRows.filter((r) => r.name.startsWith(`ab: ${label} `));
        log(`ab ${label} (${labels[i]}): median CPU µs/request ${fmt(median(totals[i]))}, p99 ${fmt(median(mine.map((r) => r.p99)), 1)} ms, ` +
          `writes p99 ${fmt(median(mine.map((r) => (r.extra?.writes as { p99: number }).p99)), 1)} ms, max ${fmt(median(mine.map((r) => r.max)))} ms, errors ${fmt(mine.reduce((n, r) => n + r.errors, 0))}, ` +
          `cold reads per statement ${fmt(median(mine.map((r) => r.extra?.meanBatch as number)), 2)}`);
      }
      log(`ab: CPU per request B/A by round ${totals[1].map((b, k) => fmt(b / totals[0][k], 2)).join(' ')}`);
    } finally {
      for (const c of clusters) await c.stop();
    }
  }

  // 5. Overload: the host's capacity (32 connections) vs 1000 connections, cold GET /reviews.
  const overload = async (name: string, target: string, groups: ReturnType<typeof processGroups>) => {
    const normal = await wrkRow(`${name}, 32 connections`, target, await list('uniform-last-10pct', only('list')), { seconds: 12, connections: 32, groups });
    const over = await wrkRow(`${name}, 1000 connections`, target, await list('uniform-last-10pct', only('list')), { seconds: 12, connections: 1000, groups });
    over.goodputRatio = (over.okPerSecond ?? 0) / Math.max(1, normal.okPerSecond ?? 0);
    add(normal);
    add(over);
  };
  if (runs('overload')) {
    const host = await startBenchHost({});
    try {
      await overload('overload, one host (as deployed), cold GET /reviews', `http://${host.address}`, processGroups([host.process.pid!]));
    } finally {
      await host.stop();
    }
    const cluster = await startBenchCluster();
    try {
      await overload('overload, nginx + 2 hosts, cold GET /reviews', cluster.url, processGroups(cluster.hosts.map((h) => h.process.pid!), true));
    } finally {
      await cluster.stop();
    }
  }
  await db.close();
  await stop();

  for (const r of rows) if (r.generator === 'wrk' && !r.name.startsWith('baseline')) r.vsBaseline = r.rps / ceiling;
  const lines = [
    `Scale ${a.scale} (${fmt(products)} products, ${fmt(reviews)} reviews), ${d} s per max-rate row, everything on this 2-core box (load generator included).`,
    '',
    ...apiTable(rows),
  ];
  const scenario = rows.find((r) => r.name.startsWith('nginx + 2 hosts, load scenario'));
  if (scenario?.extra) {
    const e = scenario.extra as { reads: { p99: number; max: number }; writes: { p99: number; max: number }; byOp: Record<string, { p99: number }>; byCache: Record<string, { count: number; p50: number; p99: number }> };
    lines.push('', `Load scenario: reads p99 ${fmt(e.reads.p99, 1)} ms (max ${fmt(e.reads.max, 1)}), writes p99 ${fmt(e.writes.p99, 1)} ms (max ${fmt(e.writes.max, 1)}); ` +
      `by operation p99: ${Object.entries(e.byOp).map(([k, g]) => `${k} ${fmt(g.p99, 1)}`).join(', ')}; ` +
      `reads by cache path (nginx/host): ${Object.entries(e.byCache).map(([k, g]) => `${k} ${fmt(g.count)} (p50 ${fmt(g.p50, 1)}, p99 ${fmt(g.p99, 1)})`).join('; ')}`);
  }
  console.log('\n' + lines.join('\n'));
  const out = fromRoot('bench', 'results', `api-scale-${a.scale}${a.only === 'all' ? '' : `-${sections.join('-')}`}.json`);
  fs.mkdirSync(path.dirname(out), { recursive: true });
  fs.writeFileSync(out, JSON.stringify({ date: new Date().toISOString(), commit: currentCommit(), scale: a.scale, products, reviews, database: { server: embedded ? 'embedded' : 'DATABASE_URL', plan: { import: 'imported at the start of the run', restore: 'made again from the dataset as imported', 'as-is': 'as earlier runs left it' }[plan] }, diskBytes, durationSeconds: d, rows: rows.map(({ ...r }) => ({ ...r, raw: undefined })) }, null, 2) + '\n');
  log(`written to ${path.relative(process.cwd(), out)}`);
}

/**
 * An A/B side's nginx change: `directives` in the rendered read locations' include
 * (reviews-read.conf), each replacing every line of that directive there (nginx refuses a
 * second proxy_cache_min_uses, and of two proxy_cache_valid lines uses the first), checked
 * with nginx -t, and nginx reloaded (SIGHUP: new workers with the new config; the old ones
 * finish their requests and exit). Directives that, set in a location, drop every one of the
 * server's (add_header, proxy_set_header, proxy_hide_header) are refused: the side would lose
 * X-Cache-Status, the request id and upstream keep-alive besides what it changes.
 */
export function withReadDirectives(conf: string, directives: string): string {
  // Simple directives only: a quoted ';' or a block would be split wrongly, silently.
  if (/["'{}]/.test(directives)) throw new UsageError('--a-nginx/--b-nginx take simple directives (name and arguments, each ending in ;), without quotes or blocks');
  const given = directives.split(';').map((d) => d.trim()).filter(Boolean);
  const names = given.map((d) => d.split(/\s+/)[0]);
  const inherited = names.filter((n) => ['add_header', 'add_trailer', 'proxy_set_header', 'proxy_hide_header', 'error_page'].includes(n));
  if (inherited.length) throw new UsageError(`--a-nginx/--b-nginx cannot set ${inherited.join(', ')}: in a location it drops every one the server sets`);
  // Lists the template fills with conditions that keep answers exact: replacing them would drop those.
  const lists = names.filter((n) => ['proxy_cache_bypass', 'proxy_no_cache'].includes(n));
  if (lists.length) throw new UsageError(`--a-nginx/--b-nginx cannot set ${lists.join(', ')}: it would replace the read locations' own conditions`);
  const kept = conf.split('\n').map((line) => (names.includes(line.trim().split(/\s+/)[0]) ? `# (replaced by the A/B side) ${line}` : line));
  return `${kept.join('\n')}\n# --a-nginx / --b-nginx (an A/B side)\n${given.map((d) => `${d};`).join('\n')}\n`;
}

/**
 * Puts each process (all its threads) under scheduling policy `policy` with chrt, and reads it
 * back; one that exited meanwhile (nginx's cache loader exits on its own) is skipped.
 */
function setSchedPolicy(policy: string, pids: number[]): void {
  for (const pid of pids) {
    const r = spawnSync('chrt', [`--${policy}`, '--all-tasks', '--pid', '0', String(pid)], { encoding: 'utf8' });
    if (!fs.existsSync(`/proc/${pid}`)) continue;
    if (r.status !== 0) throw new Error(`chrt --${policy} on ${pid} failed: ${r.stderr || r.error}`);
    const now = spawnSync('chrt', ['--pid', String(pid)], { encoding: 'utf8' }).stdout;
    if (!now.includes(`SCHED_${policy.toUpperCase()}`)) throw new Error(`process ${pid} is not under SCHED_${policy.toUpperCase()} after chrt: ${now}`);
  }
}

async function addReadDirectives(nginx: NginxHandle, directives: string): Promise<void> {
  const prefix = path.dirname(nginx.configFile);
  const file = path.join(prefix, 'reviews-read.conf');
  fs.writeFileSync(file, withReadDirectives(fs.readFileSync(file, 'utf8'), directives));
  testNginxConfig(nginx.configFile, prefix);
  const pid = nginx.process.pid!;
  const workers = () => childrenOf(pid).join(' ');
  const before = workers();
  nginx.process.kill('SIGHUP');
  // Reloaded once none of the old workers is left (bounded: 10 s).
  for (let i = 0; i < 100; i++) {
    const now = workers().split(/\s+/);
    if (now[0] && !before.split(/\s+/).some((w) => now.includes(w))) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  const errors = fs.readFileSync(path.join(prefix, 'logs', 'error.log'), 'utf8').slice(-2000);
  throw new Error(`nginx did not reload within 10 s after the A/B side's directives were added; its error log ends:\n${errors}`);
}

/**
 * From the hosts' /metrics: write requests (POST /reviews, PUT helpful/report) by duration
 * inside the host, the time spent in a host by every request but the scrapes (sum and
 * count), garbage-collection pause seconds by kind, and the event loop's p99 and longest
 * delay since the last scrape (prom-client resets them at each collect; they include its
 * sampling interval).
 */
interface HostStats {
  count: number; over10ms: number; over25ms: number; durationSum: number; durationCount: number;
  gcSeconds: Record<string, number>; gcPauses: Record<string, number>; loopP99Ms: number; loopMaxMs: number;
  /** The response caches' own counters (hits, misses, coalesced, bypassed, invalidations, …), both hosts summed. */
  cacheEvents: Record<string, number>;
  /** Cold reads batched into shared statements: statements run and the requests they answered, both hosts summed. */
  batched: Record<string, number>;
  /** Meta from memory (served, dirty_reads, loads, failed_loads), both hosts summed. */
  metaMemory: Record<string, number>;
  /** Review lists from memory, the same counters. */
  reviewMemory: Record<string, number>;
}
/** The hosts' counters by label, summed over hosts: which HostStats field each metric goes to. */
const COUNTERS: ['batched' | 'cacheEvents' | 'metaMemory' | 'reviewMemory', RegExp][] = [
  ['batched', /^atelier_db_batched_total\{what="(\w+)"\} ([\d.e+-]+)$/],
  ['cacheEvents', /^atelier_response_cache_events_total\{event="(\w+)"\} ([\d.e+-]+)$/],
  ['metaMemory', /^atelier_meta_memory_events_total\{event="(\w+)"\} ([\d.e+-]+)$/],
  ['reviewMemory', /^atelier_review_memory_events_total\{event="(\w+)"\} ([\d.e+-]+)$/],
];
async function hostStats(hosts: { address: string }[]): Promise<HostStats> {
  const t: HostStats = { count: 0, over10ms: 0, over25ms: 0, durationSum: 0, durationCount: 0, gcSeconds: {}, gcPauses: {}, loopP99Ms: 0, loopMaxMs: 0, cacheEvents: {}, batched: {}, metaMemory: {}, reviewMemory: {} };
  for (const h of hosts) {
    const text = await (await fetch(`http://${h.address}/metrics`)).text();
    for (const line of text.split('\n')) {
      const gc = /^nodejs_gc_duration_seconds_(sum|count)\{kind="(\w+)"\} ([\d.e+-]+)$/.exec(line);
      if (gc) {
        const into = gc[1] === 'sum' ? t.gcSeconds : t.gcPauses;
        into[gc[2]] = (into[gc[2]] ?? 0) + Number(gc[3]);
        continue;
      }
      const counted = COUNTERS.find(([, re]) => re.test(line));
      if (counted) {
        const [, label, n] = counted[1].exec(line)!;
        const into = t[counted[0]];
        into[label] = (into[label] ?? 0) + Number(n);
        continue;
      }
      const loop = /^nodejs_eventloop_lag_(p99|max)_seconds ([\d.e+-]+)$/.exec(line);
      if (loop?.[1] === 'max') t.loopMaxMs = Math.max(t.loopMaxMs, Number(loop[2]) * 1000);
      if (loop?.[1] === 'p99') t.loopP99Ms = Math.max(t.loopP99Ms, Number(loop[2]) * 1000);
      const spent = /^http_request_duration_seconds_(sum|count)\{(.*)\} ([\d.e+-]+)$/.exec(line);
      if (spent && !spent[2].includes('route="/metrics"')) {
        if (spent[1] === 'sum') t.durationSum += Number(spent[3]);
        else t.durationCount += Number(spent[3]);
      }
      const m = /^http_request_duration_seconds_bucket\{(.*)\} (\d+)$/.exec(line);
      if (!m || !/method="(POST|PUT)"/.test(m[1])) continue;
      const le = /le="([^"]+)"/.exec(m[1])![1];
      const n = Number(m[2]);
      if (le === '+Inf') t.count += n;
      if (le === '0.01') t.over10ms -= n;
      if (le === '0.025') t.over25ms -= n;
    }
  }
  // Bucket counts are "at most le": over = all - at most.
  t.over10ms += t.count;
  t.over25ms += t.count;
  return t;
}
/**
 * Waits until every host holds its tables (meta and reviews, META_MEMORY_MB and
 * REVIEW_MEMORY_MB: the gauges of products held are above 0) or has none configured (no
 * gauge); false after `ms`. (Exported for the ad hoc scripts in bench/results/.)
 */
export async function tablesLoaded(hosts: { address: string }[], ms: number): Promise<boolean> {
  const end = performance.now() + ms;
  for (;;) {
    let loaded = true;
    for (const h of hosts) {
      // A host that does not answer now is asked again (until `ms`), not a failed benchmark.
      const text = await fetch(`http://${h.address}/metrics`).then((r) => r.text(), () => '');
      const empty = /^atelier_(meta|review)_memory_size\{measure="max_product"\} 0$/m.test(text);
      if (!text || empty) loaded = false;
    }
    if (loaded) return true;
    if (performance.now() > end) return false;
    await new Promise((r) => setTimeout(r, 250));
  }
}
const minus = (a: Record<string, number>, b: Record<string, number>) => Object.fromEntries(Object.entries(a).map(([k, v]) => [k, v - (b[k] ?? 0)]));
const diffHostStats = (a: HostStats, b: HostStats): HostStats => ({
  count: a.count - b.count, over10ms: a.over10ms - b.over10ms, over25ms: a.over25ms - b.over25ms,
  durationSum: a.durationSum - b.durationSum, durationCount: a.durationCount - b.durationCount,
  gcSeconds: minus(a.gcSeconds, b.gcSeconds), gcPauses: minus(a.gcPauses, b.gcPauses), loopP99Ms: a.loopP99Ms, loopMaxMs: a.loopMaxMs,
  cacheEvents: minus(a.cacheEvents, b.cacheEvents), batched: minus(a.batched, b.batched), metaMemory: minus(a.metaMemory, b.metaMemory),
  reviewMemory: minus(a.reviewMemory, b.reviewMemory),
});

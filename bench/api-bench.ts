// The API benchmark's pieces (scripts/bench.ts runs them in order): request lists drawn
// from the shared traffic model for wrk, max-rate and overload rows with CPU per request
// per process, and the load scenario at a fixed rate through the cluster.
import fs from 'node:fs';
import type { Db } from '../src/db';
import { fromRoot } from '../src/lib/paths';
import type { StageResult } from '../loadtest/node/runner';
import { pidsNamed, withCpu, type ProcessGroups } from './cpu';
import { runWrk, type WrkRequest, type WrkResult } from './wrk';
// eslint-disable-next-line @typescript-eslint/no-require-imports
const traffic = require('../loadtest/lib/traffic.js') as typeof import('../loadtest/lib/traffic.js');

/** The deployed example's settings that say where a host is: each benchmark host gets its own. */
const PLACE = new Set(['DATABASE_URL', 'PORT', 'HOST']);

/** Every NAME=VALUE line of deploy/atelier-reviews.env.example, the settings of a deployed host. */
export function deployedExample(): Record<string, string> {
  return Object.fromEntries(fs.readFileSync(fromRoot('deploy', 'atelier-reviews.env.example'), 'utf8').split('\n')
    .map((line) => /^([A-Z_][A-Z0-9_]*)=(.*)$/.exec(line.trim()))
    .filter((m): m is RegExpExecArray => m !== null)
    .map((m) => [m[1], m[2]]));
}

/**
 * Every setting of the deployed example but the host's address and database: the benchmark
 * hosts run as deployed (the JSON request log, written to a file as the journal receives it:
 * the clusters' `hostLogDir`; the response cache's size; the pool; CORS). They override what
 * the benchmark's own environment (a .env, say) says of the same settings; an A/B's sides
 * override them. tests/unit/host-flags.test.ts checks a host gets them.
 */
export const DEPLOYED_HOST_ENV = Object.fromEntries(Object.entries(deployedExample()).filter(([k]) => !PLACE.has(k)));
/** The deployed hosts' page origins, for nginx's cache key (ClusterOptions.corsOrigins). */
export const DEPLOYED_ORIGINS = (DEPLOYED_HOST_ENV.CORS_ORIGINS ?? '').split(',').map((x) => x.trim()).filter(Boolean);

/**
 * A benchmark cluster's hosts as deployed: the deployed settings (then `env`), their request
 * logs in a fresh benchLogDir(name), nginx keyed on the deployed origins.
 */
export function asDeployed(name: string, env: Record<string, string> = {}): { hostEnv: Record<string, string>; hostLogDir: string; corsOrigins: string[] } {
  return { hostEnv: { ...DEPLOYED_HOST_ENV, ...env }, hostLogDir: benchLogDir(name), corsOrigins: DEPLOYED_ORIGINS };
}

/** A fresh folder for the request logs of a benchmark's hosts (emptied: one run's logs at a time). */
export function benchLogDir(name: string): string {
  const dir = fromRoot('.data', 'bench', 'host-logs', name);
  fs.rmSync(dir, { recursive: true, force: true });
  fs.mkdirSync(dir, { recursive: true });
  return dir;
}

export type Mix = { op: string; weight: number }[];
export const READS: Mix = [{ op: 'list', weight: 0.62 }, { op: 'meta', weight: 0.3 }];
export const only = (op: string): Mix => [{ op, weight: 1 }];

/**
 * `n` requests of the model. POSTs carry valid bodies (the product's characteristic ids
 * are read from `db`) and an Idempotency-Key, as the storefront sends them.
 */
export async function requestList(o: { n: number; products: number; distribution: string; mix?: Mix; seed: number; db?: Db }): Promise<WrkRequest[]> {
  const rand = traffic.createRandom(o.seed);
  const model = { pickProduct: traffic.productPicker(o.distribution, o.products), mix: o.mix ?? traffic.ENDPOINT_MIX };
  const drawn = Array.from({ length: o.n }, () => traffic.nextRequest(model, rand));
  const posted = [...new Set(drawn.filter((r) => r.op === 'post').map((r) => r.productId))];
  const characteristics = new Map<number, number[]>();
  if (posted.length && o.db) {
    const { rows } = await o.db.query<{ product_id: number; ids: number[] }>(
      'SELECT product_id, array_agg(id ORDER BY id) AS ids FROM atelier.characteristics WHERE product_id = ANY($1::int[]) GROUP BY product_id', [posted]);
    for (const r of rows) characteristics.set(r.product_id, r.ids);
  }
  // Keys unique to this list (wrk replays it: a repeat is a retry of the same request).
  const nextKey = traffic.idempotencyKeys(`list${Date.now().toString(36)}${o.seed}`);
  return drawn.map((r) => {
    if (r.op !== 'post') return { method: r.method, path: r.path };
    const body = traffic.reviewBody(r.productId, characteristics.get(r.productId) ?? [], rand);
    return { method: 'POST', path: '/reviews', body: JSON.stringify(body), headers: { 'Content-Type': 'application/json', 'Idempotency-Key': nextKey() } };
  });
}

export interface Row {
  name: string;
  /** What drove the load. */
  generator: 'wrk' | 'open-loop';
  rps: number;
  okPerSecond?: number;
  p50: number;
  p99: number;
  max: number;
  errors: number;
  statuses: Record<string, number>;
  /** CPU µs per request, per group of processes (host, nginx, postgres). */
  cpuUsPerRequest: Record<string, number>;
  /** Share of answered requests that were nginx HITs / host response-cache HITs. */
  edgeHitRatio?: number;
  hostHitRatio?: number;
  vsBaseline?: number;
  goodputRatio?: number;
  extra?: Record<string, unknown>;
}

export function processGroups(hostPids: number[], withNginx = false): ProcessGroups {
  const groups: ProcessGroups = { host: () => hostPids, postgres: () => pidsNamed('postgres') };
  if (withNginx) groups.nginx = () => pidsNamed('nginx');
  return groups;
}

const ratio = (counts: Record<string, number>, key: string, total: number) => (total ? (counts[key] ?? 0) / total : 0);

/** One wrk run as a row, with CPU per request of each process group. */
export async function wrkRow(name: string, target: string, requests: WrkRequest[], o: { seconds: number; connections: number; groups: ProcessGroups }): Promise<Row & { raw: WrkResult }> {
  const { result: r, cpuMs } = await withCpu(o.groups, () => runWrk({ target, requests, seconds: o.seconds, connections: o.connections }));
  const answered = Object.values(r.statuses).reduce((a, b) => a + b, 0);
  const errors = r.connectionErrors + r.timeouts + Object.entries(r.statuses).filter(([s]) => Number(s) === 429 || Number(s) >= 500).reduce((a, [, v]) => a + v, 0);
  return {
    name, generator: 'wrk', rps: r.rps, okPerSecond: r.okPerSecond, p50: r.latencyMs.p50, p99: r.latencyMs.p99, max: r.latencyMs.max,
    errors, statuses: { ...r.statuses, ...(r.timeouts ? { timeout: r.timeouts } : {}), ...(r.connectionErrors ? { 'socket-error': r.connectionErrors } : {}) },
    cpuUsPerRequest: Object.fromEntries(Object.entries(cpuMs).map(([k, v]) => [k, (v * 1000) / Math.max(1, r.requests)])),
    edgeHitRatio: Object.keys(r.edge).length ? ratio(r.edge, 'HIT', answered) : undefined,
    hostHitRatio: Object.keys(r.host).length ? ratio(r.host, 'HIT', answered) : undefined,
    raw: r,
  };
}

/**
 * A fixed-rate stage of the Node load generator as a row (latency split kept in `extra`).
 * `hostCacheHits`: the hosts' own count of cache hits over the stage; without it the host hit
 * ratio is the generator's count of `X-Response-Cache: HIT`, which behind nginx is the header
 * nginx stored with its entry (a revalidation the host answered from memory reads MISS).
 */
export function stageRow(name: string, s: StageResult, cpuMs: Record<string, number>, more: { systemMs?: Record<string, number>; switches?: Record<string, number>; hostCacheHits?: number } = {}): Row {
  const answered = s.requests - (s.statuses['connection-error'] ?? 0);
  const perRequest = (by: Record<string, number>, scale: number) => Object.fromEntries(Object.entries(by).map(([k, v]) => [k, (v * scale) / Math.max(1, s.requests)]));
  return {
    name, generator: 'open-loop', rps: s.rps, p50: s.latencyMs.p50, p99: s.latencyMs.p99, max: s.latencyMs.max, errors: s.errors, statuses: s.statuses,
    cpuUsPerRequest: perRequest(cpuMs, 1000),
    edgeHitRatio: s.cacheHits / Math.max(1, answered),
    hostHitRatio: (more.hostCacheHits ?? s.hostCacheHits) / Math.max(1, answered),
    extra: {
      reads: s.reads,
      writes: s.writes,
      byOp: s.byOp,
      byCache: s.byCache,
      ...(more.systemMs ? { systemUsPerRequest: perRequest(more.systemMs, 1000) } : {}),
      ...(more.switches ? { switchesPerRequest: perRequest(more.switches, 1) } : {}),
    },
  };
}

/**
 * What one knee or steady step cost, µs of CPU per request: the cluster's process groups
 * (host, postgres, nginx, generator) and the floor's run before it at the same rate (bare
 * node:http and the same generator).
 */
export interface StepCost {
  cluster: Record<string, number>;
  floor: { serverUsPerRequest: number; generatorUsPerRequest: number };
}

/**
 * Issue 29's ratio, CPU per request at a low rate against the knee, for the cluster and for
 * its floor measured beside each step: how much a request costs more when requests do not
 * arrive together is partly this box's (a process doing the same work per request pays it
 * too), and the floor's ratio says how much.
 */
export function costRatios(low: StepCost, knee: StepCost): { box: number; service: number; floor: number; floorServer: number } {
  const sum = (by: Record<string, number>, without?: string) => Object.entries(by).reduce((t, [k, v]) => (k === without ? t : t + v), 0);
  const div = (x: number, y: number) => (y > 0 ? x / y : NaN);
  return {
    box: div(sum(low.cluster), sum(knee.cluster)),
    service: div(sum(low.cluster, 'generator'), sum(knee.cluster, 'generator')),
    floor: div(low.floor.serverUsPerRequest + low.floor.generatorUsPerRequest, knee.floor.serverUsPerRequest + knee.floor.generatorUsPerRequest),
    floorServer: div(low.floor.serverUsPerRequest, knee.floor.serverUsPerRequest),
  };
}

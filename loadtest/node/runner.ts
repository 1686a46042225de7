// The Node load generator: drives the shared traffic model (loadtest/lib/traffic.js) stage
// by stage and measures what the service did: achieved rps, errors by status, latency
// percentiles by operation and cache path, a per-second timeline.
//
// Open loop, like k6's constant-arrival-rate: a stage of R req/s is a schedule of send
// times, R a second, fixed before the run. Each request goes out at its time whatever the
// server is doing (a pool of up to `connections` keep-alive sockets, 1024 by default, so a
// send is not held back by answers still outstanding; the generator's own lean client,
// ./http-client.ts, which costs ~40 % less CPU per request than undici's: the generator
// shares the box it measures, docs/benchmarks.md), and its
// latency is counted from its scheduled time, not from when it went out: a server that
// stalls for 200 ms shows 200 ms in every request scheduled during the stall, whatever the
// connection setting (coordinated omission is not hidden). Sends that left more than LATE_MS after their time
// (the generator itself was busy, or every socket was in use) are counted as late.
// A stage with rate 0 is closed loop: `connections` loops, each sending its next request
// when the previous one is answered (as fast as the server allows).
import zlib from 'node:zlib';
import { HttpClient } from './http-client';
// eslint-disable-next-line @typescript-eslint/no-require-imports
const traffic = require('../lib/traffic.js') as typeof import('../lib/traffic.js');

/** A body as sent with `encoding` (what acceptEncoding may ask for: gzip, deflate, br), decoded. */
function decode(body: Buffer, encoding: string | undefined): Buffer {
  if (encoding === 'gzip') return zlib.gunzipSync(body);
  if (encoding === 'deflate') return zlib.inflateSync(body);
  if (encoding === 'br') return zlib.brotliDecompressSync(body);
  return body;
}

export interface Stage {
  /** Requests per second to offer; 0 = as fast as the connections allow. */
  rate: number;
  duration: number;
  /**
   * Open loop: seconds at the rate before the stage is measured, on the same schedule and
   * sockets (no pause between them); their requests are summed up apart, in `leadIn`.
   */
  leadIn?: number;
}

export interface Thresholds {
  errorRate: number;
  p99Ms: number;
  /** Longest single response allowed. */
  maxMs?: number;
  /** p99 of the reads alone. */
  readP99Ms?: number;
}

export interface RunOptions {
  target: string;
  stages: Stage[];
  thresholds?: Thresholds;
  stopOnFailure?: boolean;
  distribution?: string;
  products: number;
  /** Open loop: most sockets in use at once (default 1024). Closed loop (rate 0): the number of loops (default 64). */
  connections?: number;
  seed?: number;
  /** The source address to send from (a loopback alias such as 127.0.0.2 is another client to nginx). */
  localAddress?: string;
  /** Accept-Encoding sent with every request, as browsers send it (e.g. 'gzip, deflate, br'); none when absent. */
  acceptEncoding?: string;
  /** Override the request mix (e.g. only GET /reviews for a benchmark row). */
  mix?: { op: string; weight: number }[];
  onStage?: (s: StageResult) => void;
  /** Called (synchronously) as each stage's measured part starts: after its lead-in, if any. */
  onMeasureStart?: () => void;
}

export interface Percentiles {
  p50: number;
  p90: number;
  p99: number;
  max: number;
  mean: number;
}

/** Latency of one class of responses (an operation, or a cache path). */
export interface ClassLatency {
  count: number;
  p50: number;
  p99: number;
  max: number;
  /** Responses slower than 10 ms (the writes' p99 target of issue 20). */
  over10ms: number;
}

export interface StageResult {
  offeredRate: number;
  duration: number;
  requests: number;
  rps: number;
  errors: number;
  errorRate: number;
  statuses: Record<string, number>;
  latencyMs: Percentiles;
  cacheHits: number;
  /** Answers a host gave from its memory (X-Response-Cache: HIT: its response cache or its tables) among answered requests. */
  hostCacheHits: number;
  /** Latency by operation (list, meta, post, helpful, report). */
  byOp: Record<string, ClassLatency>;
  /**
   * Latency of reads by cache path: nginx's X-Cache-Status, then the host's
   * X-Response-Cache when a host answered (e.g. "HIT", "MISS/HIT", "MISS/MISS").
   */
  byCache: Record<string, ClassLatency>;
  /** All reads (GET /reviews, /reviews/meta) together, and all writes together. */
  reads: ClassLatency;
  writes: ClassLatency;
  /** Open loop: sends that left more than LATE_MS after their scheduled time. */
  lateSends: number;
  /** Open loop: the latest a send left after its scheduled time (ms). */
  maxSendLagMs: number;
  /** The stage's lead-in (Stage.leadIn), not counted above. */
  leadIn?: { seconds: number; requests: number; errors: number; latencyMs: Percentiles; lateSends: number; maxSendLagMs: number };
  passed: boolean;
}

export interface TimelinePoint {
  second: number;
  requests: number;
  errors: number;
  p50: number;
  p99: number;
}

export interface RunResult {
  target: string;
  distribution: string;
  products: number;
  startedAt: string;
  stages: StageResult[];
  timeline: TimelinePoint[];
  passed: boolean;
}

function classLatency(groups: Map<string, number[]>): Record<string, ClassLatency> {
  const out: Record<string, ClassLatency> = {};
  for (const [k, v] of [...groups.entries()].sort((x, y) => y[1].length - x[1].length)) {
    const p = percentiles(v);
    out[k] = { count: v.length, p50: p.p50, p99: p.p99, max: p.max, over10ms: v.filter((x) => x > 10).length };
  }
  return out;
}

function percentiles(values: number[]): Percentiles {
  if (values.length === 0) return { p50: 0, p90: 0, p99: 0, max: 0, mean: 0 };
  const v = Float64Array.from(values).sort();
  const at = (q: number) => v[Math.min(v.length - 1, Math.floor(q * v.length))];
  let sum = 0;
  for (const x of v) sum += x;
  return { p50: at(0.5), p90: at(0.9), p99: at(0.99), max: v[v.length - 1], mean: sum / v.length };
}

/** A send later than this after its scheduled time counts as late (the generator could not keep up). */
export const LATE_MS = 10;
/**
 * The V8 heap flags the npm scripts that run the generator start it with (package.json's
 * loadtest, bench, bench:scale and chaos; tests/unit/host-flags.test.ts checks them; the
 * test runner's workers, which run it for the generator's own tests, do not). A
 * fresh heap's old generation is sized small, and a stage keeps every outcome until it ends,
 * so at 3,000 req/s the generator ran a mark-compact every ~5 s (`--trace-gc`), each a pause
 * of 2–11 ms on its own thread plus marking beside it: every such moment showed as a
 * per-second p99 spike in whatever it measured, the floor included (docs/benchmarks.md,
 * fourteenth session). The hosts start with the same flag for the same reason
 * (src/cluster/host.ts).
 */
export const GENERATOR_NODE_FLAGS = ['--initial-old-space-size=256'];
const REQUEST_TIMEOUT_MS = 10_000;

interface Outcome {
  op: string;
  status: number | 'connection-error';
  latency: number;
  scheduled: number;
  /** Reads: nginx's X-Cache-Status and the host's X-Response-Cache, joined (e.g. "MISS/HIT"). */
  cache?: string;
  edgeHit?: boolean;
  hostHit?: boolean;
}

/** An outcome that counts as an error: no answer, or an error status. */
const failed = (x: Outcome) => x.status === 'connection-error' || traffic.isError(x.status);

export async function runLoad(o: RunOptions): Promise<RunResult> {
  const rand = traffic.createRandom(o.seed ?? 1);
  const distribution = o.distribution ?? 'zipf';
  const pickProduct = traffic.productPicker(distribution, o.products);
  const model = { pickProduct, mix: o.mix ?? traffic.ENDPOINT_MIX };
  // Characteristic ids learned from meta responses, so POST bodies rate the right ones.
  const characteristics = new Map<number, number[]>();
  // POSTs waiting for their product's characteristics (a meta was sent in their place).
  const postNext: number[] = [];
  const target = new URL(o.target);
  // Keys unique to this run (traffic.idempotencyKeys): the seeded draws repeat between runs.
  const nextKey = traffic.idempotencyKeys(`run${Date.now().toString(36)}`);
  const result: RunResult = { target: o.target, distribution, products: o.products, startedAt: new Date().toISOString(), stages: [], timeline: [], passed: true };
  const started = performance.now();

  const nextRequest = () => {
    let r = traffic.nextRequest(model, rand);
    const waiting = postNext.find((p) => characteristics.has(p));
    if (waiting !== undefined) {
      postNext.splice(postNext.indexOf(waiting), 1);
      r = { op: 'post', method: 'POST', path: '/reviews', productId: waiting };
    }
    let body: string | undefined;
    let headers: Record<string, string> = {};
    if (r.op === 'post') {
      const ids = characteristics.get(r.productId);
      if (ids === undefined) {
        if (postNext.length < 1000) postNext.push(r.productId);
        r = { op: 'meta', method: 'GET', path: `/reviews/meta?product_id=${r.productId}`, productId: r.productId };
      } else {
        const review = traffic.reviewBody(r.productId, ids, rand);
        body = JSON.stringify(review);
        headers = { 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(body)), 'idempotency-key': nextKey() };
      }
    }
    if (o.acceptEncoding) headers['accept-encoding'] = o.acceptEncoding;
    return { ...r, body, headers };
  };

  /** Sends one request; `done` gets what happened, latency counted from `scheduled`. */
  const send = (client: HttpClient, scheduled: number, done: (x: Outcome) => void): void => {
    const r = nextRequest();
    const learn = r.op === 'meta' && characteristics.size < 100_000 && !characteristics.has(r.productId);
    client.request({ path: r.path, method: r.method, headers: r.headers, body: r.body, keepBody: learn }, (err, res) => {
      if (err || !res) return done({ op: r.op, status: 'connection-error', latency: performance.now() - scheduled, scheduled });
      if (learn && res.status === 200 && res.body) {
        try {
          characteristics.set(r.productId, traffic.characteristicIdsFromMeta(decode(res.body, res.headers['content-encoding']).toString()));
        } catch {
          // not JSON: counted by its status
        }
      }
      const edge = res.headers['x-cache-status'];
      const host = res.headers['x-response-cache'];
      const cache = r.op === 'list' || r.op === 'meta' ? [edge, host].filter(Boolean).join('/') || 'none' : undefined;
      done({ op: r.op, status: res.status, latency: performance.now() - scheduled, scheduled, cache, edgeHit: edge === 'HIT', hostHit: host === 'HIT' });
    });
  };
  const sendAsync = (client: HttpClient, scheduled: number) => new Promise<Outcome>((resolve) => send(client, scheduled, resolve));

  for (const stage of o.stages) {
    const outcomes: Outcome[] = [];
    const leadOutcomes: Outcome[] = [];
    // Sends that left late, and the latest, for the measured part and for the lead-in apart.
    const sends = { lateSends: 0, maxSendLagMs: 0 };
    const leadSends = { lateSends: 0, maxSendLagMs: 0 };
    const open = stage.rate > 0;
    if (stage.leadIn && !open) throw new Error('a lead-in needs an open-loop stage (rate > 0)');
    if (stage.leadIn !== undefined && !(stage.leadIn >= 0)) throw new Error(`a lead-in is 0 or more seconds, not ${stage.leadIn}`);
    const leadN = open ? Math.round(stage.rate * (stage.leadIn ?? 0)) : 0;
    const connections = o.connections ?? (open ? 1024 : 64);
    // Requests beyond `connections` wait in the client's queue, first in first out.
    const client = new HttpClient(target.origin, { connections, timeoutMs: REQUEST_TIMEOUT_MS, idleTimeoutMs: 60_000, ...(o.localAddress ? { localAddress: o.localAddress } : {}) });
    const stageStart = performance.now() + 5;
    // The measured part starts after the lead-in's requests (none without one): the time the
    // schedule below gives request leadN, computed the same way.
    const measuredStart = open ? stageStart + leadN * (1000 / stage.rate) : stageStart;
    const end = measuredStart + stage.duration * 1000;
    // Requests sent and not yet answered: at `connections`, the next one waits for a socket.
    let inFlight = 0;
    let allSent = false;
    let drained: () => void = () => undefined;
    const answered = new Promise<void>((r) => (drained = r));
    const done = (x: Outcome) => {
      inFlight--;
      (x.scheduled < measuredStart ? leadOutcomes : outcomes).push(x);
      if (allSent && inFlight === 0) drained();
    };

    try {
      if (open) {
        const interval = 1000 / stage.rate;
        const total = leadN + Math.round(stage.rate * stage.duration);
        let i = 0;
        await new Promise<void>((resolve, reject) => {
          const tick = () => {
            // A throw here (the traffic model, a request the client refuses) ends the run with it.
            try { sendDue(); } catch (e) { reject(e); }
          };
          const sendDue = () => {
            let now = performance.now();
            while (i < total && stageStart + i * interval <= now) {
              const scheduled = stageStart + i * interval;
              if (i === leadN && o.onMeasureStart) {
                o.onMeasureStart();
                // Its time (a few ms of /proc reads in the benchmark) counts as this send's lag.
                now = performance.now();
              }
              const lag = now - scheduled;
              // Late: the generator itself fell behind, or every socket is busy (the request
              // then waits in the client's queue, and that wait counts in its latency too).
              const busy = inFlight >= connections;
              const counted = i < leadN ? leadSends : sends;
              if (lag > LATE_MS || busy) counted.lateSends++;
              if (lag > counted.maxSendLagMs) counted.maxSendLagMs = lag;
              inFlight++;
              send(client, scheduled, done);
              i++;
            }
            if (i >= total) resolve();
            else setTimeout(tick, Math.max(0, stageStart + i * interval - performance.now()));
          };
          setTimeout(tick, Math.max(0, stageStart - performance.now()));
        });
      } else {
        // Each loop stops at the stage's end, or when another loop's throw ended the stage.
        let stopped = false;
        o.onMeasureStart?.();
        const loop = async () => {
          while (!stopped && performance.now() < end) outcomes.push(await sendAsync(client, performance.now()));
        };
        await Promise.all(Array.from({ length: connections }, loop)).finally(() => (stopped = true));
      }
      // Every request sent is answered (or times out) before the stage is counted.
      allSent = true;
      if (inFlight > 0) await answered;
    } finally {
      client.destroy();
    }
    const seconds = Math.max(stage.duration, (performance.now() - measuredStart) / 1000);

    const statuses: Record<string, number> = {};
    const byOp = new Map<string, number[]>();
    const byCache = new Map<string, number[]>();
    const byKind = new Map<string, number[]>([['reads', []], ['writes', []]]);
    const buckets = new Map<number, { n: number; errors: number; lat: number[] }>();
    const push = (m: Map<string, number[]>, k: string, v: number) => {
      let g = m.get(k);
      if (!g) m.set(k, (g = []));
      g.push(v);
    };
    let errors = 0;
    let cacheHits = 0;
    let hostCacheHits = 0;
    for (const x of outcomes) {
      statuses[x.status] = (statuses[x.status] ?? 0) + 1;
      const bad = failed(x);
      if (bad) errors++;
      push(byOp, x.op, x.latency);
      push(byKind, x.op === 'list' || x.op === 'meta' ? 'reads' : 'writes', x.latency);
      if (x.cache) push(byCache, x.cache, x.latency);
      if (x.edgeHit) cacheHits++;
      if (x.hostHit) hostCacheHits++;
      // The timeline is by scheduled second: a stall shows where it happened.
      const second = Math.floor((x.scheduled - started) / 1000);
      let b = buckets.get(second);
      if (!b) buckets.set(second, (b = { n: 0, errors: 0, lat: [] }));
      b.n++;
      if (bad) b.errors++;
      b.lat.push(x.latency);
    }
    const requests = outcomes.length;
    const kinds = classLatency(byKind);
    const s: StageResult = {
      offeredRate: stage.rate,
      duration: stage.duration,
      requests,
      rps: requests / seconds,
      errors,
      errorRate: requests ? errors / requests : 0,
      statuses,
      latencyMs: percentiles(outcomes.map((x) => x.latency)),
      cacheHits,
      hostCacheHits,
      byOp: classLatency(byOp),
      byCache: classLatency(byCache),
      reads: kinds.reads ?? { count: 0, p50: 0, p99: 0, max: 0, over10ms: 0 },
      writes: kinds.writes ?? { count: 0, p50: 0, p99: 0, max: 0, over10ms: 0 },
      ...sends,
      ...(leadN > 0 ? {
        leadIn: {
          seconds: leadN / stage.rate, requests: leadOutcomes.length, errors: leadOutcomes.filter(failed).length,
          latencyMs: percentiles(leadOutcomes.map((x) => x.latency)), ...leadSends,
        },
      } : {}),
      passed: true,
    };
    const t = o.thresholds;
    if (t) {
      s.passed = s.errorRate <= t.errorRate && s.latencyMs.p99 <= t.p99Ms &&
        (t.maxMs === undefined || s.latencyMs.max <= t.maxMs) && (t.readP99Ms === undefined || s.reads.p99 <= t.readP99Ms);
    }
    result.stages.push(s);
    for (const [second, b] of [...buckets.entries()].sort((x, y) => x[0] - y[0])) {
      const p = percentiles(b.lat);
      result.timeline.push({ second, requests: b.n, errors: b.errors, p50: p.p50, p99: p.p99 });
    }
    o.onStage?.(s);
    if (!s.passed) {
      result.passed = false;
      if (o.stopOnFailure) break;
    }
  }
  return result;
}

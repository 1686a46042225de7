// Max-rate load with wrk (Debian's package), replaying a list of requests drawn from the
// shared traffic model: wrk spends a fraction of autocannon's CPU per request, so on this
// 2-core box it leaves the cores to the service being measured. A Lua script cycles
// through the requests and counts statuses and cache headers per thread; `done` prints
// one JSON line this module reads back.
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

export interface WrkRequest {
  method: string;
  path: string;
  body?: string;
  headers?: Record<string, string>;
}

export interface WrkResult {
  requests: number;
  seconds: number;
  rps: number;
  /** Responses with a 2xx status, per second. */
  okPerSecond: number;
  statuses: Record<string, number>;
  /** Socket errors and timeouts as wrk counts them. */
  connectionErrors: number;
  timeouts: number;
  latencyMs: { p50: number; p90: number; p99: number; max: number; mean: number };
  /** X-Cache-Status (nginx) values seen. */
  edge: Record<string, number>;
  /** X-Response-Cache (host) values seen. */
  host: Record<string, number>;
}

export function findWrk(): string | undefined {
  const r = spawnSync('sh', ['-c', 'command -v wrk'], { encoding: 'utf8' });
  return r.status === 0 ? r.stdout.trim() : undefined;
}

const LUA = String.raw`
local lines = {}
local idx = 0
counts = {}

local function split(s)
  local t, i = {}, 1
  for field in string.gmatch(s .. "\t", "([^\t]*)\t") do t[i] = field; i = i + 1 end
  return t
end

function init(args)
  local f = assert(io.open(args[1], "r"))
  local n = 0
  for line in f:lines() do
    local p = split(line)
    local headers = {}
    if p[4] ~= nil and p[4] ~= "" then
      for k, v in string.gmatch(p[4], "([^:;]+):([^;]*)") do headers[k] = v end
    end
    n = n + 1
    lines[n] = wrk.format(p[1], p[2], headers, (p[3] ~= "" and p[3] or nil))
  end
  f:close()
  -- Each thread starts at its own offset (id is set by setup() below).
  idx = ((id or 0) * 7919) % n
  counts = {}
end

local threads = {}
function setup(thread)
  thread:set("id", #threads)
  table.insert(threads, thread)
end

function request()
  idx = idx + 1
  if idx > #lines then idx = 1 end
  return lines[idx]
end

local function bump(k)
  counts[k] = (counts[k] or 0) + 1
end

function response(status, headers, body)
  bump("s" .. status)
  local e = headers["X-Cache-Status"]
  if e then bump("e" .. e) end
  local h = headers["X-Response-Cache"]
  if h then bump("h" .. h) end
end

function done(summary, latency, requests)
  local merged = {}
  for _, t in ipairs(threads) do
    local c = t:get("counts")
    for k, v in pairs(c) do merged[k] = (merged[k] or 0) + v end
  end
  local parts = {}
  for k, v in pairs(merged) do table.insert(parts, string.format('"%s":%d', k, v)) end
  io.write(string.format('WRK_RESULT {"requests":%d,"us":%d,"connect":%d,"read":%d,"write":%d,"timeout":%d,"p50":%d,"p90":%d,"p99":%d,"max":%d,"mean":%f,"counts":{%s}}\n',
    summary.requests, summary.duration, summary.errors.connect, summary.errors.read, summary.errors.write, summary.errors.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max, latency.mean, table.concat(parts, ",")))
end
`;

export interface WrkOptions {
  target: string;
  requests: WrkRequest[];
  seconds: number;
  connections: number;
  threads?: number;
  timeoutSeconds?: number;
}

/** Runs wrk against `target` replaying `requests`; rejects when wrk is missing or fails. */
export async function runWrk(o: WrkOptions): Promise<WrkResult> {
  const wrk = findWrk();
  if (!wrk) throw new Error('wrk not found (apt-get install wrk)');
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'atelier-wrk-'));
  try {
    const script = path.join(dir, 'replay.lua');
    const list = path.join(dir, 'requests.tsv');
    fs.writeFileSync(script, LUA);
    fs.writeFileSync(list, o.requests.map((r) => [r.method, r.path, r.body ?? '', Object.entries(r.headers ?? {}).map(([k, v]) => `${k}:${v}`).join(';')].join('\t')).join('\n') + '\n');
    const threads = o.threads ?? 1;
    const args = ['-t', String(threads), '-c', String(Math.max(threads, o.connections)), '-d', `${o.seconds}s`, '--timeout', `${o.timeoutSeconds ?? 10}s`, '-s', script, o.target, '--', list];
    const out = await new Promise<string>((resolve, reject) => {
      const child = spawn(wrk, args, { stdio: ['ignore', 'pipe', 'pipe'] });
      let text = '';
      child.stdout.on('data', (d) => (text += d));
      child.stderr.on('data', (d) => (text += d));
      child.once('error', reject);
      child.once('exit', (code) => (code === 0 ? resolve(text) : reject(new Error(`wrk exited ${code}: ${text}`))));
    });
    const line = out.split('\n').find((l) => l.startsWith('WRK_RESULT '));
    if (!line) throw new Error(`wrk printed no result: ${out}`);
    const r = JSON.parse(line.slice('WRK_RESULT '.length)) as Record<string, number> & { counts: Record<string, number> };
    const pick = (prefix: string) => Object.fromEntries(Object.entries(r.counts).filter(([k]) => k.startsWith(prefix)).map(([k, v]) => [k.slice(1), v]));
    const statuses = pick('s');
    const seconds = r.us / 1e6;
    const ok = Object.entries(statuses).filter(([s]) => s.startsWith('2')).reduce((n, [, v]) => n + v, 0);
    return {
      requests: r.requests,
      seconds,
      rps: r.requests / seconds,
      okPerSecond: ok / seconds,
      statuses,
      connectionErrors: r.connect + r.read + r.write,
      timeouts: r.timeout,
      latencyMs: { p50: r.p50 / 1000, p90: r.p90 / 1000, p99: r.p99 / 1000, max: r.max / 1000, mean: r.mean / 1000 },
      edge: pick('e'),
      host: pick('h'),
    };
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

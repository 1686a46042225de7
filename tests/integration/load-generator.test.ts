// The traffic model shared by k6 and the Node generator, the k6 scripts' validity, and a
// short real run of the Node generator against a real server (functional, not a timing).
import fs from 'node:fs';
import path from 'node:path';
import http from 'node:http';
import { spawn, type ChildProcess } from 'node:child_process';
import { createApp } from '../src/app';
import { htmlReport } from '../src/loadtest/report';
import { runLoad } from '../src/loadtest/runner';
import * as traffic from '../loadtest/lib/traffic.js';
import { finishArrange, insertCharacteristics, insertReviews } from './helpers/fixtures';
import { createTestDatabase, type TestDatabase } from './helpers/test-db';

test('the endpoint mix is drawn in its proportions, mostly reads', () => {
  const rand = traffic.createRandom(3);
  const model = { pickProduct: traffic.productPicker('zipf', 1000) };
  const counts: Record<string, number> = {};
  const N = 100_000;
  const bad: string[] = [];
  for (let i = 0; i < N; i++) {
    const r = traffic.nextRequest(model, rand);
    counts[r.op] = (counts[r.op] ?? 0) + 1;
    if (r.productId < 1 || r.productId > 1000) bad.push(`product ${r.productId}`);
    if (r.op === 'list' && !/^\/reviews\?product_id=\d+&sort=(relevant|newest|helpful)&page=[123]&count=\d+$/.test(r.path)) bad.push(r.path);
  }
  expect(bad).toEqual([]);
  for (const { op, weight } of traffic.ENDPOINT_MIX) expect(Math.abs(counts[op] / N - weight)).toBeLessThan(0.01);
});

test('uniform ids come from the last 10 % only', () => {
  const rand = traffic.createRandom(1);
  const ids = Array.from({ length: 20_000 }, () => traffic.uniformLastTenth(1_000_011, rand));
  const [min, max] = [Math.min(...ids), Math.max(...ids)];
  expect(min).toBeGreaterThanOrEqual(900_010);
  expect(min).toBeLessThan(900_010 + 100);
  expect(max).toBeLessThanOrEqual(1_000_011);
  expect(max).toBeGreaterThan(1_000_011 - 100);
});

test('Zipf ids follow 1/k: rank 1 gets 1/H(n) of the draws, rank 2 half as many', () => {
  const rand = traffic.createRandom(2);
  const n = 1000;
  const zipf = traffic.zipfSampler(n);
  const counts = new Array(n + 1).fill(0);
  const N = 200_000;
  for (let i = 0; i < N; i++) counts[zipf(rand)]++;
  let harmonic = 0;
  for (let k = 1; k <= n; k++) harmonic += 1 / k;
  expect(counts[1] / N).toBeCloseTo(1 / harmonic, 2);
  expect(counts[2] / counts[1]).toBeCloseTo(0.5, 1);
  expect(counts[0]).toBe(0);
});

test('POST bodies are valid reviews rating the characteristics they were given', () => {
  const body = traffic.reviewBody(7, [11, 12], traffic.createRandom(1));
  expect(Object.keys(body.characteristics).sort()).toEqual(['11', '12']);
  expect(body.body.length).toBeGreaterThanOrEqual(50);
  expect(body.email).toMatch(/@/);
});

test('the k6 scripts are ES modules that import only k6 APIs and the shared model', () => {
  const dir = path.join(__dirname, '..', 'loadtest', 'k6');
  const files = fs.readdirSync(dir);
  expect(files.sort()).toEqual(['config.js', 'flow.js', 'load.js', 'smoke.js', 'soak.js', 'spike.js', 'stress.js']);
  for (const f of files) {
    const src = fs.readFileSync(path.join(dir, f), 'utf8');
    expect(src).not.toMatch(/\brequire\(|\bprocess\.|module\.exports/);
    for (const m of src.matchAll(/^import .* from '([^']+)';$/gm)) expect(m[1]).toMatch(/^(k6|k6\/http|\.\/[\w-]+\.js|\.\.\/lib\/traffic\.js)$/);
    if (!['config.js', 'flow.js'].includes(f)) {
      expect(src).toMatch(/export const options/);
      expect(src).toMatch(/export default function/);
      expect(src).toContain(`settings('${f.replace('.js', '')}')`);
      expect(Object.keys(traffic.SCENARIOS)).toContain(f.replace('.js', ''));
    }
  }
  const shared = fs.readFileSync(path.join(__dirname, '..', 'loadtest', 'lib', 'traffic.js'), 'utf8');
  for (const m of shared.matchAll(/^import .* from '([^']+)';$/gm)) expect(m[1]).toBe('../../src/random.js');
  const random = fs.readFileSync(path.join(__dirname, '..', 'src', 'random.js'), 'utf8');
  expect(random).not.toMatch(/^import |\brequire\(|\bprocess\./m);
  expect(shared).not.toMatch(/\brequire\(|\bprocess\.|__ENV/);
});

describe('the Node load generator against a real server', () => {
  let t: TestDatabase;
  let server: http.Server;
  let url: string;
  beforeAll(async () => {
    t = await createTestDatabase();
    await insertCharacteristics(t.db, Array.from({ length: 20 }, (_, i) => ({ id: i + 1, product_id: i + 1, name: 'Fit' })));
    await insertReviews(t.db, Array.from({ length: 100 }, (_, i) => ({ id: i + 1, product_id: 1 + (i % 20), rating: 3, date: '2021-01-01T00:00:00.000Z' })));
    await finishArrange(t.db);
    server = createApp(t.db, { log: () => undefined }).listen(0, '127.0.0.1');
    await new Promise((r) => server.once('listening', r));
    url = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
  });
  afterAll(async () => {
    server.closeAllConnections();
    server.close();
    await t.drop();
  });

  test('a short run offers the model, posts valid reviews, and reports what it saw', async () => {
    const before = (await t.db.query('SELECT count(*)::int AS n FROM atelier.reviews')).rows[0].n;
    const result = await runLoad({
      target: url, stages: [{ rate: 200, duration: 3 }], products: 20, distribution: 'zipf', connections: 4,
      thresholds: { errorRate: 0.001, p99Ms: 10_000 },
      mix: [{ op: 'list', weight: 0.5 }, { op: 'meta', weight: 0.2 }, { op: 'post', weight: 0.3 }],
    });
    const s = result.stages[0];
    expect(s.requests).toBeGreaterThan(300);
    expect(s.errors).toBe(0);
    expect(s.statuses['200']).toBeGreaterThan(0);
    expect(s.statuses['201']).toBeGreaterThan(0);
    expect(Object.keys(s.statuses).every((k) => ['200', '201'].includes(k))).toBe(true);
    const after = (await t.db.query('SELECT count(*)::int AS n FROM atelier.reviews')).rows[0].n;
    // Every request sent is answered before the stage is counted: stored = 201s.
    expect(after - before).toBe(s.statuses['201']);
    expect(s.lateSends).toBe(0);
    expect(result.timeline.length).toBeGreaterThanOrEqual(2);
    expect(result.passed).toBe(true);
    const html = htmlReport(result, 'test');
    expect(html).toContain('<svg');
    expect(html).toContain('PASS');
  });
});

describe('the Node load generator is open loop', () => {
  let server: ChildProcess;
  let url: string;
  beforeAll(async () => {
    // Its own process (a stall in this one would stall the generator too): answers at once,
    // except that every second its event loop is blocked for 200 ms.
    server = spawn(process.execPath, ['-e', `
      const http = require('node:http');
      const s = http.createServer((req, res) => { res.writeHead(200, { 'content-type': 'application/json' }); res.end('{}'); });
      s.listen(0, '127.0.0.1', () => {
        console.log(s.address().port);
        setInterval(() => { const until = Date.now() + 200; while (Date.now() < until); }, 1000);
      });
    `], { stdio: ['ignore', 'pipe', 'inherit'] });
    const port = await new Promise<string>((r) => server.stdout!.once('data', (d) => r(String(d).trim())));
    url = `http://127.0.0.1:${port}`;
  });
  afterAll(() => {
    server.kill('SIGKILL');
  });

  test('a server that stalls for 200 ms shows ~200 ms in the p99 of the requests scheduled during the stall, whatever the connection setting', async () => {
    const p99s: Record<number, number> = {};
    for (const connections of [4, 256]) {
      const { stages: [s] } = await runLoad({ target: url, stages: [{ rate: 400, duration: 3 }], products: 10, connections, mix: [{ op: 'list', weight: 1 }] });
      expect(s.errors).toBe(0);
      // A fifth of the schedule falls in a stall: those requests waited up to 200 ms from
      // their scheduled time, whether or not a socket was free to send them.
      expect(s.latencyMs.p99).toBeGreaterThan(150);
      expect(s.latencyMs.p50).toBeLessThan(100);
      p99s[connections] = s.latencyMs.p99;
    }
    console.log(`[loadtest] p99 with 4 connections ${p99s[4].toFixed(1)} ms, with 256 ${p99s[256].toFixed(1)} ms`);
    expect(Math.abs(p99s[4] - p99s[256])).toBeLessThan(60);
  }, 30_000);
});

// The traffic model shared by k6 and the Node generator, and the k6 scripts' validity.
import fs from 'node:fs';
import path from 'node:path';
import * as traffic from '../../loadtest/lib/traffic.js';
import { fromRoot } from '../../src/lib/paths';

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

test('each generated review of a run gets its own Idempotency-Key', () => {
  // Names are drawn from 1e9 values: a knee step's ~4,000 posts share one about once in a
  // hundred steps, and a key made from the name was then the same key with another body (a 422).
  // Keys are numbered in the run instead, whatever the bodies.
  const nextKey = traffic.idempotencyKeys('run1');
  const keys = Array.from({ length: 10_000 }, () => nextKey());
  expect(new Set(keys).size).toBe(keys.length);
  // Another run's keys are its own, and all are valid header values (1–200 visible ASCII).
  expect(traffic.idempotencyKeys('run2')()).not.toBe(keys[0]);
  for (const k of keys) expect(k).toMatch(/^[\x21-\x7e]{1,200}$/);
});

test('the k6 scripts are ES modules that import only k6 APIs and the shared model', () => {
  const dir = fromRoot('loadtest', 'k6');
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
  const shared = fs.readFileSync(fromRoot('loadtest', 'lib', 'traffic.js'), 'utf8');
  for (const m of shared.matchAll(/^import .* from '([^']+)';$/gm)) expect(m[1]).toBe('../../src/lib/random.js');
  const random = fs.readFileSync(fromRoot('src', 'lib', 'random.js'), 'utf8');
  expect(random).not.toMatch(/^import |\brequire\(|\bprocess\./m);
  expect(shared).not.toMatch(/\brequire\(|\bprocess\.|__ENV/);
});

// docs/benchmarks.md's tables come from the JSON results: each with its date, its commit and
// the floor of its own run; the hand-written prose around them is kept.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { BEGIN, END, regenerate } from '../../bench/report';

test('the generated part is rebuilt from the results, with date, commit and floor; the rest of the doc stays', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'atelier-results-'));
  const row = (name: string, rps: number) => ({ name, generator: 'wrk', rps, p50: 1, p99: 2, max: 3, errors: 0, statuses: {}, cpuUsPerRequest: { host: 30 } });
  fs.writeFileSync(path.join(dir, 'api-scale-1.json'), JSON.stringify({ date: '2026-12-01T10:00:00Z', commit: 'abc1234', scale: 1, rows: [row('baseline: bare node:http', 90000), { ...row('one host, cold', 9000), vsBaseline: 0.1 }] }));
  fs.writeFileSync(path.join(dir, 'etl-scale-1.json'), JSON.stringify({ scale: 1, baseline: { seconds: 30 }, etl: { seconds: 60, peakRssMB: 200 }, ratio: 2 }));
  const doc = `# Benchmarks\n\nProse.\n\n${BEGIN}\nold tables\n${END}\n\nMore prose.\n`;
  const out = regenerate(doc, dir);
  expect(out).toMatch(/^# Benchmarks\n\nProse\.\n\n/);
  expect(out).toMatch(/More prose\.\n$/);
  expect(out).not.toContain('old tables');
  expect(out).toContain('`api-scale-1.json` (`npm run bench -- --scale 1`; 2026-12-01, commit abc1234)');
  expect(out).toContain('| baseline: bare node:http | 90,000 |');
  expect(out).toMatch(/\| one host, cold \| 9,000 \|.*\| 0\.10 \|/);
  expect(out).toContain('`etl-scale-1.json` (`npm run bench:etl -- --scale 1`; date not recorded, commit not recorded)');
  expect(out).toContain('| full import | 60.0 | 2.00 | 200 MB |');
  // Idempotent: a second run changes nothing.
  expect(regenerate(out, dir)).toBe(out);
});

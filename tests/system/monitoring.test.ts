// The alert and recording rules checked and unit-tested with Prometheus's own promtool, and
// the dashboard's queries run against a real Prometheus that scrapes a real host: a renamed
// metric breaks the build instead of a panel.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { AddressInfo } from 'node:net';
import type http from 'node:http';
import { createApp } from '../../src/app';
import { freePort } from '../../src/cluster/processes';
import { createMetrics } from '../../src/http/metrics';
import { fromRoot } from '../../src/lib/paths';
import { ResponseCache } from '../../src/response-cache/response-cache';
import { finishArrange, insertReviews } from '../helpers/fixtures';
import { available } from '../helpers/requirements';
import { createTestDatabase, type TestDatabase } from '../helpers/test-db';

const maybe = available(__filename, 'the monitoring tests (promtool, Prometheus)', 'prometheus') ? describe : describe.skip;
const RULES = fromRoot('deploy', 'prometheus', 'atelier-reviews.rules.yml');

maybe('monitoring', () => {
  test('promtool accepts the rules, and their unit tests pass (each alert fires on its condition, none on healthy series)', () => {
    const check = spawnSync('promtool', ['check', 'rules', RULES], { encoding: 'utf8' });
    expect({ status: check.status, out: `${check.stdout}${check.stderr}` }).toMatchObject({ status: 0 });
    const unit = spawnSync('promtool', ['test', 'rules', 'atelier-reviews.rules.test.yml'], { cwd: path.dirname(RULES), encoding: 'utf8' });
    expect({ status: unit.status, out: `${unit.stdout}${unit.stderr}` }).toMatchObject({ status: 0 });
    expect(unit.stdout).toContain('SUCCESS');
  });

  describe('a real Prometheus scraping a host', () => {
    let t: TestDatabase;
    let server: http.Server;
    let prometheus: ChildProcess;
    let promUrl: string;
    let tmp: string;

    beforeAll(async () => {
      t = await createTestDatabase();
      await insertReviews(t.db, [{ id: 1, product_id: 1, rating: 5, date: '2021-01-01T00:00:00.000Z' }]);
      await finishArrange(t.db);
      const cache = new ResponseCache({ maxBytes: 1 << 20, ttlMs: 60_000 });
      server = createApp(t.db, { log: () => undefined, cache, metrics: createMetrics({ db: t.db, cache }) }).listen(0, '127.0.0.1');
      await new Promise((r) => server.once('listening', r));
      const target = `127.0.0.1:${(server.address() as AddressInfo).port}`;
      tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'atelier-prom-'));
      fs.writeFileSync(path.join(tmp, 'prometheus.yml'), [
        'global: { scrape_interval: 1s, evaluation_interval: 1s }',
        `rule_files: ['${RULES}']`,
        'scrape_configs:',
        `  - { job_name: atelier-reviews, static_configs: [{ targets: ['${target}'] }] }`,
      ].join('\n'));
      const port = await freePort();
      promUrl = `http://127.0.0.1:${port}`;
      prometheus = spawn('prometheus', [`--config.file=${path.join(tmp, 'prometheus.yml')}`, `--storage.tsdb.path=${path.join(tmp, 'data')}`,
        `--web.listen-address=127.0.0.1:${port}`], { stdio: 'ignore' });
      // Traffic of every kind the panels chart: reads (cached and not), a miss, a 404, a 400.
      for (let i = 0; i < 30; i++) {
        await fetch(`http://${target}/reviews?product_id=1&count=${1 + (i % 5)}`);
        await fetch(`http://${target}/reviews/meta?product_id=1`);
      }
      await fetch(`http://${target}/reviews?product_id=abc`);
      await fetch(`http://${target}/reviews/99999/helpful`, { method: 'PUT' });
    }, 60_000);

    afterAll(async () => {
      prometheus?.kill('SIGTERM');
      await new Promise((r) => server?.close(r));
      await t?.drop();
      fs.rmSync(tmp, { recursive: true, force: true });
    });

    const query = async (expr: string) => {
      const res = await fetch(`${promUrl}/api/v1/query?query=${encodeURIComponent(expr)}`);
      return (await res.json()) as { status: string; error?: string; data?: { result: unknown[] } };
    };

    test('every dashboard query returns a series, and the recording rules are evaluated', async () => {
      // Until a few scrapes have landed (rate() needs two samples).
      const deadline = Date.now() + 30_000;
      for (;;) {
        const r = await query('count_over_time(up{job="atelier-reviews"}[1m])').catch(() => undefined);
        const n = Number((r?.data?.result[0] as { value?: [number, string] } | undefined)?.value?.[1] ?? 0);
        if (n >= 3) break;
        if (Date.now() > deadline) throw new Error('Prometheus did not scrape the host three times in 30 s');
        await new Promise((r2) => setTimeout(r2, 500));
      }
      const dashboard = JSON.parse(fs.readFileSync(fromRoot('deploy', 'grafana', 'atelier-reviews.json'), 'utf8')) as { panels: { title: string; targets: { expr: string }[] }[] };
      const empty: string[] = [];
      for (const panel of dashboard.panels) {
        for (const { expr } of panel.targets) {
          const r = await query(expr);
          if (r.status !== 'success' || !r.data?.result.length) empty.push(`${panel.title}: ${r.error ?? 'no series'} (${expr})`);
        }
      }
      expect(empty).toEqual([]);
      const recorded = await query('atelier:http_requests:rate5m');
      expect(recorded.data?.result.length).toBeGreaterThan(0);
    }, 60_000);
  });
});

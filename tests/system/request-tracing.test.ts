// Issue 23: one request id from nginx to the host's log and the error body, with nginx's
// JSON access log and the hosts' JSON log lines; a hostile X-Request-Id is replaced and
// never reaches a log line.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { freePort, startCluster, type Cluster } from '../../src/cluster/cluster';
import { finishArrange, insertReviews } from '../helpers/fixtures';
import { rawHttp } from '../helpers/raw-http';
import { available } from '../helpers/requirements';
import { createTestDatabase, type TestDatabase } from '../helpers/test-db';

const maybe = available(__filename, 'the request tracing tests', 'nginx') ? describe : describe.skip;

const until = async (fn: () => boolean, ms = 5000) => {
  const end = Date.now() + ms;
  while (!fn() && Date.now() < end) await new Promise((r) => setTimeout(r, 50));
  return fn();
};

maybe('request tracing', () => {
  let t: TestDatabase;
  let cluster: Cluster;
  let tmp: string;
  let accessLog: string;
  const hostLines = () => cluster.hosts.flatMap((h) => h.output().split('\n')).filter((l) => l.startsWith('{'));
  const nginxLines = () => (fs.existsSync(accessLog) ? fs.readFileSync(accessLog, 'utf8').split('\n').filter(Boolean) : []);

  beforeAll(async () => {
    t = await createTestDatabase();
    await insertReviews(t.db, [{ id: 1, product_id: 1, rating: 5, date: '2021-01-01T00:00:00.000Z' }]);
    await finishArrange(t.db);
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'atelier-trace-'));
    accessLog = path.join(tmp, 'logs', 'access.log');
    cluster = await startCluster({
      databaseUrl: t.url, port: await freePort(), hostPorts: [await freePort(), await freePort()], prefix: tmp, workerProcesses: '1',
      accessLog, hostEnv: { LOG_FORMAT: 'json' },
    });
  }, 60_000);

  afterAll(async () => {
    await cluster?.stop();
    await t.drop();
    fs.rmSync(tmp, { recursive: true, force: true });
  });

  test('an error answered through nginx carries the same id in nginx\'s JSON log line, the host\'s JSON line and the body', async () => {
    const id = 'shopper-report-1402';
    const res = await fetch(`${cluster.url}/reviews?product_id=abc`, { headers: { 'x-request-id': id } });
    expect(res.status).toBe(400);
    expect(res.headers.get('x-request-id')).toBe(id);
    expect(((await res.json()) as { request_id: string }).request_id).toBe(id);
    expect(await until(() => nginxLines().some((l) => l.includes(id)) && hostLines().some((l) => l.includes(id)))).toBe(true);
    const edge = JSON.parse(nginxLines().find((l) => l.includes(id))!);
    expect(edge).toMatchObject({ request_id: id, method: 'GET', status: 400, upstream_status: '400' });
    expect(edge.upstream).toMatch(/^127\.0\.0\.1:\d+$/);
    const host = JSON.parse(hostLines().find((l) => l.includes(id))!);
    expect(host).toMatchObject({ request_id: id, method: 'GET', route: '/reviews', status: 400, client: '127.0.0.1' });
    expect(typeof host.duration_ms).toBe('number');
  });

  test('a read without an id gets nginx\'s, the same on both sides; the host logs its cache outcome', async () => {
    const res = await fetch(`${cluster.url}/reviews/meta?product_id=1`);
    const id = res.headers.get('x-request-id')!;
    expect(id).toMatch(/^[0-9a-f]{32}$/);
    expect(await until(() => hostLines().some((l) => l.includes(id)))).toBe(true);
    expect(JSON.parse(hostLines().find((l) => l.includes(id))!)).toMatchObject({ route: '/reviews/meta', status: 200, cache: expect.any(String) });
  });

  test('a hostile X-Request-Id (too long, quotes, non-ASCII, a log-line forgery) is replaced and never reaches a log line', async () => {
    const port = Number(new URL(cluster.url).port);
    const hostile = ['x'.repeat(100), 'abc"de", "status":200', 'ïd-ünicode-1234', 'id with spaces 123', 'short'];
    for (const value of hostile) {
      // Proxied to a host (a read nginx has not stored), so the socket stays open for the answer.
      const answer = await rawHttp(port, `GET /reviews/meta?product_id=1 HTTP/1.1\r\nHost: x\r\nX-Request-Id: ${value}\r\nConnection: close\r\n\r\n`, { halfClose: false });
      const given = /^x-request-id: (.*)$/im.exec(answer.headers)?.[1]?.trim();
      expect(given).toMatch(/^[0-9a-f]{32}$/);
    }
    await new Promise((r) => setTimeout(r, 300));
    const logs = [...nginxLines(), ...hostLines()].join('\n');
    for (const value of hostile) expect(logs).not.toContain(value);
    for (const line of [...nginxLines(), ...hostLines()]) expect(() => JSON.parse(line)).not.toThrow();
  });
});

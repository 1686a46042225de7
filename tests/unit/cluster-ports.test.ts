// A host or nginx started on a port something else already answers on (an earlier cluster
// still running) must fail, naming the port: its readiness probe would otherwise be answered
// by the stale process, and the new cluster would run with a dead host or share nginx's
// port with the old nginx (nginx listens with reuseport). Found by hand: a second
// `npm run cluster` on the ports of a running one "started", and half its load went to the old one.
import http from 'node:http';
import os from 'node:os';
import fs from 'node:fs';
import path from 'node:path';
import type { AddressInfo } from 'node:net';
import { startHost, startNginx } from '../../src/cluster/cluster';
import { freePort, listenAddress, outgoingPortRange } from '../../src/cluster/processes';

let stale: http.Server;
let port: number;

beforeAll(async () => {
  stale = http.createServer((_req, res) => res.end('ok'));
  await new Promise<void>((r) => stale.listen(0, '127.0.0.1', r));
  port = (stale.address() as AddressInfo).port;
});
afterAll(() => new Promise((r) => stale.close(r)));

test('a host refuses to start on a port another process answers on', async () => {
  const started = startHost({ port, databaseUrl: 'postgres://nobody:x@127.0.0.1:1/none' });
  // Without the check this resolved (the stale server answered /readyz): stop what it spawned.
  const proc = await started.catch((err: Error) => err);
  if (!(proc instanceof Error)) await proc.stop('SIGKILL', 1000);
  expect(proc).toBeInstanceOf(Error);
  expect((proc as Error).message).toContain(`127.0.0.1:${port} is already in use`);
});

test.each([
  ['the address', (p: number) => `127.0.0.1:${p}`, '127.0.0.1'],
  ['every address, as a port alone', (p: number) => `${p}`, '0.0.0.0'],
  ['every address, as *:port', (p: number) => `*:${p}`, '0.0.0.0'],
])('nginx refuses to start on a port another process answers on (%s)', async (_what, listen, reported) => {
  const prefix = fs.mkdtempSync(path.join(os.tmpdir(), 'atelier-ports-'));
  try {
    const started = await startNginx({ prefix, listen: listen(port), upstreams: ['127.0.0.1:1'] }).catch((err: Error) => err);
    if (!(started instanceof Error)) await started.stop('SIGKILL', 1000);
    expect(started).toBeInstanceOf(Error);
    expect((started as Error).message).toContain(`${reported}:${port} is already in use`);
  } finally {
    fs.rmSync(prefix, { recursive: true, force: true });
  }
});

test("nginx's listen values are read as nginx reads them", () => {
  expect(listenAddress('8080')).toEqual({ host: '0.0.0.0', port: 8080 });
  expect(listenAddress('127.0.0.1:8080')).toEqual({ host: '127.0.0.1', port: 8080 });
  expect(listenAddress('*:8080')).toEqual({ host: '0.0.0.0', port: 8080 });
  expect(listenAddress('[::1]:8443')).toEqual({ host: '::1', port: 8443 });
  expect(listenAddress('[::]:80 ipv6only=on')).toEqual({ host: '::', port: 80 });
  expect(listenAddress('127.0.0.1:8080 reuseport backlog=4096')).toEqual({ host: '127.0.0.1', port: 8080 });
  expect(listenAddress('unix:/run/atelier.sock')).toBeUndefined();
  expect(listenAddress('localhost:8080')).toBeUndefined();
});

test("free ports are chosen outside the kernel's range for outgoing connections, so none is taken before its server binds it", async () => {
  // A test run's embedded PostgreSQL (bound seconds after its port was chosen, after initdb)
  // once found its port taken by another suite's outgoing connection.
  const range = outgoingPortRange();
  if (!range || range[0] - 10_000 < 1000) return; // no room below the range here: any free port
  for (let i = 0; i < 20; i++) {
    const p = await freePort();
    expect(p).toBeGreaterThanOrEqual(10_000);
    expect(p).toBeLessThan(range[0]);
  }
});

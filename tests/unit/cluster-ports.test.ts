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

test('nginx refuses to start on a port another process answers on', async () => {
  const prefix = fs.mkdtempSync(path.join(os.tmpdir(), 'atelier-ports-'));
  try {
    const started = await startNginx({ prefix, listen: `127.0.0.1:${port}`, upstreams: ['127.0.0.1:1'] }).catch((err: Error) => err);
    if (!(started instanceof Error)) await started.stop('SIGKILL', 1000);
    expect(started).toBeInstanceOf(Error);
    expect((started as Error).message).toContain(`127.0.0.1:${port} is already in use`);
  } finally {
    fs.rmSync(prefix, { recursive: true, force: true });
  }
});

// nginx's cap on connections to each host (max_conns), with real nginx (two workers) in front
// of two stand-in hosts that each take 300 ms to answer: a burst the hosts can hold is
// passed to them whole, and the cap is per host across nginx's workers.
import os from 'node:os';
import path from 'node:path';
import fs from 'node:fs';
import http from 'node:http';
import { freePort, startNginx } from '../../src/cluster/cluster';
import { available } from '../helpers/requirements';

const maybe = available(__filename, 'the nginx host-cap tests', 'nginx') ? describe : describe.skip;

maybe('nginx caps its connections to each host', () => {
  let tmp: string;
  const hosts: { server: http.Server; address: string; open: number; most: number }[] = [];

  beforeAll(async () => {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'atelier-cap-'));
    for (let i = 0; i < 2; i++) {
      const h = { server: http.createServer(), address: '', open: 0, most: 0 };
      h.server.on('request', (req, res) => {
        h.open++;
        h.most = Math.max(h.most, h.open);
        // A host whose answers are held up (its database stalled) for 300 ms.
        setTimeout(() => {
          h.open--;
          res.writeHead(200, { 'content-type': 'application/json' });
          res.end('{"results":[]}');
        }, 300);
      });
      const port = await freePort();
      await new Promise<void>((r) => h.server.listen(port, '127.0.0.1', r));
      h.address = `127.0.0.1:${port}`;
      hosts.push(h);
    }
  });
  afterAll(async () => {
    for (const h of hosts) {
      h.server.closeAllConnections();
      await new Promise((r) => h.server.close(r));
    }
    fs.rmSync(tmp, { recursive: true, force: true });
  });

  /** `n` reads at once, each of a page no other asks for (each reaches a host); their statuses. */
  async function burst(url: string, n: number): Promise<number[]> {
    const agent = new http.Agent({ keepAlive: false, maxSockets: Infinity });
    try {
      return await Promise.all(Array.from({ length: n }, (_, i) => new Promise<number>((resolve, reject) => {
        http.get(`${url}/reviews?product_id=${1 + (i % 50)}&count=${10 + i}`, { agent }, (res) => {
          res.resume();
          res.on('end', () => resolve(res.statusCode!));
        }).on('error', reject);
      })));
    } finally {
      agent.destroy();
    }
  }

  const withNginx = async (name: string, hostMaxConns: number | undefined, fn: (url: string) => Promise<void>) => {
    const nginx = await startNginx({
      prefix: path.join(tmp, name), listen: `127.0.0.1:${await freePort()}`, upstreams: hosts.map((h) => h.address),
      workerProcesses: '2', readRate: '1000000r/s', ...(hostMaxConns === undefined ? {} : { hostMaxConns }),
    });
    try {
      for (const h of hosts) h.most = 0;
      await fn(nginx.url);
    } finally {
      await nginx.stop();
    }
  };

  test('as deployed, a burst of 300 reads held up 300 ms by the hosts is passed to them whole, none refused', async () => {
    await withNginx('deployed', undefined, async (url) => {
      const statuses = await burst(url, 300);
      expect(statuses.filter((s) => s !== 200)).toEqual([]);
      // Both hosts held their share of the burst at once.
      expect(hosts[0].most + hosts[1].most).toBeGreaterThan(200);
    });
  }, 30_000);

  test('the cap is per host across nginx\'s workers: above it the excess gets 503 at once', async () => {
    await withNginx('capped', 40, async (url) => {
      const statuses = await burst(url, 300);
      expect(new Set(statuses)).toEqual(new Set([200, 503]));
      // Two workers, and still at most 40 at once on each host (per worker it would be 80).
      expect(Math.max(hosts[0].most, hosts[1].most)).toBeLessThanOrEqual(40);
      expect(hosts[0].most).toBeGreaterThan(20);
    });
  }, 30_000);
});

// Issue 21 item 5: failover by the engine made for it. Patroni (Debian's) over two Debian
// PostgreSQL nodes with one etcd, from deploy/patroni/patroni.yml (synchronous_mode: a
// commit returns once the standby has flushed it). Two hosts point at the nodes as
// production would (DATABASE_URL = node1, DATABASE_REPLICA_URLS = node2). Under steady reads
// and writes node1's machine dies (Patroni and PostgreSQL killed); Patroni promotes node2
// once the leader key expires; the hosts follow it on their own probes. 0 failed reads,
// nothing acknowledged lost, writes back within a measured bound.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { freePort } from '../../src/cluster/processes';
import { withClient } from '../../src/db';
import { migrate } from '../../src/db/migrate';
import { startEtcd, startPatroniNode, ownedDir, type Etcd, type PatroniNode } from '../helpers/patroni';
import { available } from '../helpers/requirements';
import { expectHostsEqual, PATHS, seedThreeProducts, sleep, startHost, steadyTraffic, storedNames, text, truthOf, until, type Host } from '../helpers/replica-hosts';

jest.setTimeout(240_000);

const suite = available(__filename, 'Patroni failover (two PostgreSQL nodes, etcd)', 'patroni') ? describe : describe.skip;

suite('failover by Patroni: the primary machine dies', () => {
  let tmp: string;
  let etcd: Etcd | undefined;
  const nodes: PatroniNode[] = [];
  let hosts: Host[] = [];

  beforeAll(async () => {
    tmp = ownedDir(fs.mkdtempSync(path.join(os.tmpdir(), 'atelier-patroni-')));
    etcd = await startEtcd(tmp, await freePort(), await freePort());
    const node = async (name: string) => startPatroniNode({ name, dir: tmp, pgPort: await freePort(), restPort: await freePort(), etcd: etcd! });
    nodes.push(await node('node1'));
    await until('node1 to lead', async () => (await nodes[0].status('/primary')) === 200, 90_000);
    await withClient(nodes[0].url('postgres'), (c) => c.query('CREATE DATABASE atelier'));
    await migrate(nodes[0].url('atelier'));
    await seedThreeProducts(nodes[0].url('atelier'));
    nodes.push(await node('node2'));
    // node2 cloned by pg_basebackup, streaming, and the synchronous standby.
    await until('node2 as the synchronous standby', async () => (await nodes[1].status('/sync')) === 200, 90_000)
      .catch((err) => {
        throw new Error(`${err.message}\nnode2's output:\n${String(nodes[1])}\nnode1's output:\n${String(nodes[0])}`);
      });
    hosts = [await startHost(nodes[0].url('atelier'), [nodes[1].url('atelier')]), await startHost(nodes[0].url('atelier'), [nodes[1].url('atelier')])];
  });

  afterAll(async () => {
    for (const h of hosts) await h.close().catch(() => undefined);
    for (const n of nodes.reverse()) await n.stop().catch(() => undefined);
    await etcd?.stop().catch(() => undefined);
    fs.rmSync(tmp, { recursive: true, force: true });
  });

  test('reads never fail, writes come back on the node Patroni promotes, nothing acknowledged is lost', async () => {
    for (const h of hosts) for (const p of PATHS) await text(`${h.base}${p}`);
    const traffic = steadyTraffic(hosts, 'patroni');
    try {
      // Writes before the crash, counted rather than timed (a slow box commits fewer a second).
      await until('writes acknowledged before the crash', () => traffic.acknowledged.length > 50, 60_000);
      const killedAt = Date.now();
      nodes[0].crash();
      await until('node2 promoted by Patroni', async () => (await nodes[1].status('/primary')) === 200, 60_000);
      const promotedAt = Date.now();
      await until('writes accepted again on both hosts', () => traffic.resumedAt(killedAt) !== undefined, 30_000);
      const resumedAt = traffic.resumedAt(killedAt)!;
      console.log(`patroni failover: node2 leader ${promotedAt - killedAt} ms after node1 died (ttl 10 s, loop_wait 2 s); ` +
        `writes back on both hosts ${resumedAt - killedAt} ms after (${resumedAt - promotedAt} ms after Patroni's /primary said 200)`);
      expect(resumedAt - promotedAt).toBeLessThan(10_000);
      await sleep(500);
      await traffic.stop();

      expect(traffic.reads.filter((r) => r.status !== 200).map((r) => ({ ...r, sinceKill: r.at - killedAt, sincePromoted: r.at - promotedAt }))).toEqual([]);
      expect(traffic.reads.filter((r) => r.at > killedAt && r.at < promotedAt).length).toBeGreaterThan(50);
      const refused = traffic.writes.filter((w) => w.at > killedAt && w.at < promotedAt && w.status !== 201);
      expect(refused.length).toBeGreaterThan(0);
      expect(refused.filter((w) => w.status !== 503)).toEqual([]);
      const stored = await storedNames(nodes[1].url('atelier'), 'patroni');
      expect(traffic.acknowledged.length).toBeGreaterThan(50);
      expect(traffic.acknowledged.filter((name) => !stored.has(name))).toEqual([]);
      const truth = await truthOf(nodes[1].url('atelier'));
      try {
        await expectHostsEqual(hosts, truth.base);
      } finally {
        await truth.close();
      }
    } finally {
      await traffic.stop();
    }
  });
});

// Issue 27: the exactness oracle with a nemesis. Two hosts read from a real synchronous hot
// standby that applies WAL 800 ms late; three clients run a seeded interleaving of reads
// (some with the writer's cookie) and writes (POSTs with idempotency keys, retried as a
// client would; helpful votes) while the nemesis (src/cluster/nemesis.ts) makes, in a seeded
// order, each fault twice: the hosts' read connections terminated, writes in flight
// terminated, the change feeds dropped, the primary's pools backed up behind a table lock
// (so the fence read is refused), the standby's replay paused; and last, the primary stops
// and the standby is promoted. Each fault carries an operator's change. Once quiet for the
// stated bound (QUIET_MS: a probe, a feed reconnect, a margin), every view on both hosts
// equals a fresh render, every acknowledged POST is present exactly once, every review's
// helpfulness lies between its acknowledged and attempted votes, and the audit of
// `npm run verify` finds no drift. NEMESIS_SEED and NEMESIS_FAULTS (kinds, comma-separated)
// replay or narrow a run.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { freePort } from '../../src/cluster/processes';
import { differingViews, FAULT_KINDS, helpfulnessOf, Nemesis, WriteLedger, type FaultKind } from '../../src/cluster/nemesis';
import { Db } from '../../src/db';
import { createRandom } from '../../src/lib/random.js';
import { auditAggregates } from '../../src/reviews/aggregates';
import { crash, startServer, startStandby, type Server } from '../helpers/pg-servers';
import { finishArrange, insertCharacteristics, insertReviews } from '../helpers/fixtures';
import { makeSynchronous, sleep, startHost, truthOf, until, type Host } from '../helpers/replica-hosts';

jest.setTimeout(240_000);

const SEED = Number(process.env.NEMESIS_SEED ?? 27);
const ONLY = process.env.NEMESIS_FAULTS?.split(',') as FaultKind[] | undefined;
// The stated bound: a probe (100 ms), a change feed's reconnect (250 ms), the standby's
// 800 ms apply delay, with a wide margin for a slow machine.
const QUIET_MS = 3000;
// The clients write products 1-3; only the operator (the nemesis) changes 4-15, one product
// a fault, so a stale answer is never overwritten by a later change: only the path that
// the fault struck can make it right.
const PRODUCTS = [1, 2, 3];
const OPERATED = Array.from({ length: 12 }, (_, i) => 4 + i);
const VIEWS = [...PRODUCTS, ...OPERATED].flatMap((p) => [
  `/reviews/meta?product_id=${p}`, `/reviews?product_id=${p}&sort=newest&count=50`,
  `/reviews?product_id=${p}&sort=helpful&count=5`, `/reviews?product_id=${p}&sort=relevant&page=2&count=2`,
]);

describe('exactness oracle with a nemesis (a synchronous standby 800 ms late)', () => {
  let tmp: string;
  let primary: Server;
  let standby: Server;
  let hosts: Host[] = [];

  beforeAll(async () => {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'atelier-nemesis-'));
    fs.chmodSync(tmp, 0o755);
    primary = await startServer(['--dir', path.join(tmp, 'primary'), '--port', String(await freePort()), '--replication']);
    const seed = new Db({ connectionString: primary.url, poolSize: 1 });
    const all = [...PRODUCTS, ...OPERATED];
    await insertCharacteristics(seed, all.map((p) => ({ id: p, product_id: p, name: 'Fit' })));
    await insertReviews(seed, Array.from({ length: 4 * all.length }, (_, i) => ({ id: i + 1, product_id: all[i % all.length], rating: 1 + (i % 5), date: `2021-01-${String(1 + (i % 28)).padStart(2, '0')}T00:00:00.000Z`, ratings: { [all[i % all.length]]: 3 } })));
    await finishArrange(seed);
    await seed.close();
    standby = await startStandby(primary, path.join(tmp, 'standby'), 'nemesis', await freePort(), 800);
    await makeSynchronous(primary.url, 'nemesis');
    // Small pools and a short queue, so a backed-up primary refuses queries within the run.
    for (let i = 0; i < 2; i++) hosts.push(await startHost(primary.url, [standby.url], { poolSize: 2, queueTimeoutMs: 200 }));
  });

  afterAll(async () => {
    for (const h of hosts) await h.close().catch(() => undefined);
    await standby?.stop().catch(() => undefined);
    await primary?.stop().catch(() => undefined);
    fs.rmSync(tmp, { recursive: true, force: true });
  });

  test(`after faults interleaved with reads and writes (seed ${SEED}), every view equals a fresh render and every acknowledged write is there once`, async () => {
    const random = createRandom(SEED);
    // Votes on products 1-3's reviews only.
    const reviewIds = Array.from({ length: 60 }, (_, i) => i + 1).filter((id) => (id - 1) % 15 < 3);
    const before = await helpfulnessOf(primary.url, reviewIds);
    const ledger = new WriteLedger('nemesis', PRODUCTS, reviewIds);
    let current = primary.url;
    const nemesis = new Nemesis({
      primaryUrl: primary.url, standbyUrls: [standby.url], readBase: hosts[0].base, shopBases: hosts.map((h) => h.base), products: OPERATED, holdMs: 800, random,
      promote: async () => {
        crash(primary);
        // Not waiting inside pg_promote: a statement held open that long conflicts with the
        // standby's own replay (cancelled after max_standby_streaming_delay).
        const db = new Db({ connectionString: standby.url, poolSize: 1 });
        await db.query('SELECT pg_promote(false)');
        await until('the promotion', async () => !(await db.query<{ r: boolean }>('SELECT pg_is_in_recovery() AS r')).rows[0].r, 60_000);
        await db.close();
        current = standby.url;
        await nemesis.retarget(standby.url);
      },
    });
    const kinds = (ONLY ?? [...FAULT_KINDS]).filter((k) => k !== 'promote');
    const plan: FaultKind[] = [...kinds, ...kinds].sort(() => random() - 0.5);
    if (!ONLY || ONLY.includes('promote')) plan.push('promote');

    const statuses: Record<string, number> = {};
    // Writes come in bursts: a fault strikes after a quiet second, when the standby has
    // caught up and serves reads (under constant writes the fence keeps reads on the primary).
    let writing = true;
    /** Three clients' seeded reads and writes through the hosts, until stop() is called. */
    const traffic = () => {
      let running = true;
      const client = async (c: number) => {
        for (let i = 0; running; i++) {
          const r = random();
          const host = hosts[(c + i) % hosts.length];
          let status: number;
          if (r < 0.65 || !writing) {
            // A third of the reads on the product the operator changed last (shoppers read
            // what changed), the rest on any.
            const p = nemesis.lastProduct;
            const view = p !== undefined && random() < 0.33 ? VIEWS[(p - 1) * 4 + Math.floor(random() * 4)] : VIEWS[Math.floor(random() * VIEWS.length)];
            const cookie = random() < 0.15 ? { cookie: `atelier_wrote=${PRODUCTS[Math.floor(random() * 3)]}` } : undefined;
            const res = await fetch(`${host.base}${view}`, { headers: cookie, signal: AbortSignal.timeout(15_000) }).catch(() => undefined);
            await res?.arrayBuffer().catch(() => undefined);
            status = res?.status ?? 0;
          } else if (r < 0.85) {
            status = await ledger.post(host.base, random);
          } else {
            status = await ledger.helpful(host.base, random);
          }
          statuses[status] = (statuses[status] ?? 0) + 1;
          await sleep(5);
        }
      };
      const clients = [0, 1, 2].map(client);
      return async () => {
        running = false;
        await Promise.all(clients);
      };
    };
    /** Quiet for the bound, then every check; `phase` names them in the output. */
    const check = async (phase: string) => {
      await sleep(QUIET_MS);
      const truth = await truthOf(current);
      try {
        const wrong: string[] = [];
        for (const [i, h] of hosts.entries()) for (const w of await differingViews(h.base, truth.base, VIEWS)) wrong.push(`host ${i}: ${w}`);
        if (wrong.length) console.log(`[nemesis] ${phase}: ${wrong.length} views differ from a fresh render, e.g.\n  ${wrong.slice(0, 10).join('\n  ')}`);
        const ledgerCheck = await ledger.check(current, before);
        console.log(`[nemesis] ${phase}: answers by status ${JSON.stringify(statuses)}; ledger ${JSON.stringify(ledgerCheck)}`);
        const audit = await auditAggregates(truth.db);
        expect({ phase, wrong, missing: ledgerCheck.posts.missing, duplicated: ledgerCheck.posts.duplicated, votes: ledgerCheck.votes.outside, drift: audit.examples })
          .toEqual({ phase, wrong: [], missing: [], duplicated: [], votes: [], drift: [] });
        // The run did write through the faults.
        expect(ledgerCheck.posts.acknowledged).toBeGreaterThan(10);
      } finally {
        await truth.close();
      }
    };

    try {
      // Phase 1: every fault but the promotion, then the checks.
      let stop = traffic();
      try {
        for (const kind of plan.filter((k) => k !== 'promote')) {
          writing = true;
          await sleep(300 + random() * 400);
          writing = false;
          await sleep(1200);
          const f = await nemesis.inject(kind);
          console.log(`[nemesis] ${f.kind} (${f.endedAt - f.startedAt} ms): ${f.detail}`);
        }
        await sleep(1000);
      } finally {
        await stop();
      }
      await check(`seed ${SEED}, after ${plan.filter((k) => k !== 'promote').length} faults`);
      // Phase 2: the promotion under traffic (it empties the caches: checked apart, so it cannot hide phase 1).
      if (plan.includes('promote')) {
        writing = true;
        stop = traffic();
        try {
          await sleep(500);
          const f = await nemesis.inject('promote');
          console.log(`[nemesis] ${f.kind} (${f.endedAt - f.startedAt} ms): ${f.detail}`);
          await sleep(1000);
        } finally {
          await stop();
        }
        await check(`seed ${SEED}, after the promotion`);
      }
    } finally {
      await nemesis.close();
    }
  });
});

// The nemesis: faults on the paths that decide whether an answer is fresh, made from outside
// the hosts the way they happen in production (an operator's pg_terminate_backend, a table
// lock that backs up the hosts' pools, a standby that stops replaying, a lost LISTEN
// connection, a promotion), each with an operator's change in the middle so a host has
// something to get wrong. Plus the two checks that say whether it did: every view equals a
// fresh render, and every acknowledged write is present exactly once (the write ledger).
// Used by tests/system/exactness-nemesis.test.ts and `npm run chaos`.
import { Db } from '../db';

export const FAULT_KINDS = ['kill-reads', 'kill-writes', 'kill-listener', 'hold-primary', 'pause-replay', 'promote'] as const;
export type FaultKind = (typeof FAULT_KINDS)[number];

export interface NemesisOptions {
  primaryUrl: string;
  standbyUrls: string[];
  /** Where to send the writer's-cookie reads that fill the hosts' primary pools (a host or nginx). */
  readBase: string;
  /**
   * Where shoppers read: after each operator change the nemesis reads the changed product's
   * views there every 100 ms for holdMs (what a shopper does; what a host may get wrong).
   */
  shopBases?: string[];
  /** The products the operator's changes touch, in turn (they must exist, with characteristics). */
  products: number[];
  /** How long a held primary or a paused standby stays so (default 1000 ms). */
  holdMs?: number;
  /** Promotes a standby (the caller owns the servers): stop the primary, then pg_promote. */
  promote?: () => Promise<void>;
  random: () => number;
}

export interface FaultRecord {
  kind: FaultKind;
  /** ms since the epoch. */
  startedAt: number;
  endedAt: number;
  /** What it did, for people. */
  detail: string;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
/** The nemesis's own connections (named, so its pg_terminate_backend never hits them). */
const adminDb = (url: string, poolSize: number) => new Db({ connectionString: url, poolSize, application: 'atelier-nemesis', connectTimeoutMs: 1000 });

export class Nemesis {
  private primary: Db;
  private readonly standbys: Db[];
  private changes = 0;
  /** The product of the latest operator change (shoppers read what changed). */
  lastProduct?: number;
  readonly log: FaultRecord[] = [];

  constructor(private readonly o: NemesisOptions) {
    this.primary = adminDb(o.primaryUrl, 3);
    this.standbys = o.standbyUrls.map((url) => adminDb(url, 1));
  }

  private get holdMs(): number {
    return this.o.holdMs ?? 1000;
  }

  /** The kinds this set-up can make (promotion only with a promote callback and a standby). */
  get kinds(): FaultKind[] {
    return FAULT_KINDS.filter((k) => (k === 'promote' ? !!this.o.promote && this.standbys.length > 0 : k !== 'pause-replay' || this.standbys.length > 0));
  }

  private pick<T>(xs: readonly T[]): T {
    return xs[Math.floor(this.o.random() * xs.length)];
  }

  private readonly shopping: Promise<unknown>[] = [];

  /** Shoppers reading `product`'s views on every shop base, every 100 ms for holdMs. */
  private shop(product: number): void {
    const holdMs = this.holdMs;
    const views = [`/reviews/meta?product_id=${product}`, `/reviews?product_id=${product}&count=5`];
    this.shopping.push((async () => {
      for (let t = 0; t < holdMs; t += 100) {
        await Promise.all((this.o.shopBases ?? []).flatMap((base) => views.map((v) => fetch(`${base}${v}`, { signal: AbortSignal.timeout(15_000) })
          .then((r) => r.arrayBuffer(), () => undefined))));
        await sleep(100);
      }
    })());
  }

  /** An operator's change outside the API (a notification the hosts must hear and fence), then shoppers read it. */
  private async operatorChange(renameOnly = false): Promise<string> {
    // In turn: a later change to the same product would hide what an earlier fault left.
    const product = this.o.products[this.changes % this.o.products.length];
    const n = ++this.changes;
    this.lastProduct = product;
    let what: string;
    if (renameOnly || this.o.random() < 0.5) {
      await this.primary.query("UPDATE atelier.characteristics SET name = regexp_replace(name, ' #[0-9]+$', '') || ' #' || $2 WHERE product_id = $1", [product, n]);
      what = `renamed product ${product}'s characteristics (#${n})`;
    } else {
      await this.primary.query("UPDATE atelier.reviews SET response = 'Operator note #' || $2 WHERE id = (SELECT id FROM atelier.reviews WHERE product_id = $1 ORDER BY id LIMIT 1)", [product, n]);
      what = `responded to product ${product}'s first review (#${n})`;
    }
    this.shop(product);
    return what;
  }

  private terminate(db: Db, where: string): Promise<number> {
    return db.query(`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE pid <> pg_backend_pid() AND (${where})`)
      .then((r) => r.rowCount ?? 0, () => 0);
  }

  /** Makes one fault of `kind` and undoes it; resolves when it is over. */
  async inject(kind: FaultKind): Promise<FaultRecord> {
    const startedAt = Date.now();
    const holdMs = this.holdMs;
    let detail = '';
    switch (kind) {
      case 'kill-reads': {
        // The hosts' pooled connections (reads, probes) on every server, a few times while a change lands.
        let killed = 0;
        const change = this.operatorChange();
        for (let i = 0; i < 4; i++) {
          for (const db of [this.primary, ...this.standbys]) killed += await this.terminate(db, "application_name = 'atelier-reviews'");
          await sleep(50);
        }
        detail = `${await change}; ${killed} read connections terminated`;
        break;
      }
      case 'kill-writes': {
        // Writes in flight (each names its request: "atelier-reviews <id>") and the write lane.
        let killed = 0;
        for (let i = 0; i < 10; i++) {
          killed += await this.terminate(this.primary, "application_name LIKE 'atelier-reviews %' OR application_name = 'atelier-reviews-writes'");
          await sleep(20);
        }
        detail = `${killed} write connections terminated`;
        break;
      }
      case 'kill-listener': {
        const killed = await this.terminate(this.primary, "application_name LIKE '%-listener'");
        detail = `${await this.operatorChange()} with ${killed} change feeds dropped`;
        break;
      }
      case 'hold-primary': {
        // The issue's reproduction: a table lock backs the hosts' primary pools up with the
        // writer's reads (which go to the primary), so the fence read after a change is refused.
        const locker = await this.primary.connect();
        try {
          await locker.query('BEGIN');
          await locker.query('LOCK TABLE atelier.reviews IN ACCESS EXCLUSIVE MODE');
          // Waves of the writer's reads (each blocks on the lock) keep the pools and their
          // queues full for the whole hold, so every statement queued meanwhile is refused.
          const fill: Promise<unknown>[] = [];
          const wave = (i: number) => {
            for (const p of this.o.products) {
              fill.push(fetch(`${this.o.readBase}/reviews?product_id=${p}&count=${100 + i}`, { headers: { cookie: `atelier_wrote=${p}` }, signal: AbortSignal.timeout(15_000) })
                .then((r) => r.arrayBuffer(), () => undefined));
            }
          };
          const waves = Math.max(1, Math.floor(holdMs / 100));
          for (let i = 0; i < 3; i++) {
            wave(i);
            await sleep(100);
          }
          // (A rename: the reviews table is locked.)
          detail = `${await this.operatorChange(true)} with the reviews table locked for ${holdMs} ms`;
          for (let i = 3; i < waves; i++) {
            wave(i);
            await sleep(100);
          }
          await locker.query('ROLLBACK');
          await Promise.all(fill);
        } finally {
          await locker.query('ROLLBACK').catch(() => undefined);
          locker.release();
        }
        break;
      }
      case 'pause-replay': {
        const standby = this.pick(this.standbys);
        await standby.query('SELECT pg_wal_replay_pause()').catch(() => undefined);
        detail = `${await this.operatorChange()} with a standby's replay paused for ${holdMs} ms`;
        await sleep(holdMs);
        await standby.query('SELECT pg_wal_replay_resume()').catch(() => undefined);
        break;
      }
      case 'promote': {
        await this.o.promote!();
        detail = 'the primary stopped and a standby promoted';
        break;
      }
    }
    await Promise.all(this.shopping.splice(0));
    const record = { kind, startedAt, endedAt: Date.now(), detail };
    this.log.push(record);
    return record;
  }

  /** After a promotion: the operator's changes go to the new primary. */
  async retarget(primaryUrl: string): Promise<void> {
    await this.primary.close().catch(() => undefined);
    this.primary = adminDb(primaryUrl, 3);
  }

  async close(): Promise<void> {
    for (const db of [this.primary, ...this.standbys]) await db.close().catch(() => undefined);
  }
}

/** Every view at `paths` through `base` against a fresh render at `truthBase`: the ones that differ (asked twice each). */
export async function differingViews(base: string, truthBase: string, paths: string[]): Promise<string[]> {
  const wrong: string[] = [];
  for (const p of paths) {
    const want = await (await fetch(`${truthBase}${p}`, { signal: AbortSignal.timeout(15_000) })).text();
    for (const pass of [1, 2]) {
      const res = await fetch(`${base}${p}`, { signal: AbortSignal.timeout(15_000) });
      const got = await res.text();
      if (got !== want) wrong.push(`${p} (pass ${pass}, ${res.status} ${res.headers.get('x-cache-status') ?? '-'}/${res.headers.get('x-response-cache') ?? '-'}): ${got.slice(0, 160)} | fresh ${want.slice(0, 160)}`);
    }
  }
  return wrong;
}

export interface LedgerCheck {
  posts: { acknowledged: number; present: number; missing: string[]; duplicated: string[] };
  votes: { reviews: number; outside: string[] };
}

/**
 * The write ledger: POSTs with unique reviewer names and idempotency keys (a failed one is
 * retried with the same key, as a client should), helpful votes counted per review. Checked
 * against the database: every acknowledged POST present exactly once (and no unacknowledged
 * one twice), every review's helpfulness between its acknowledged and attempted votes.
 */
export class WriteLedger {
  private readonly acknowledged = new Set<string>();
  private readonly attempted = new Set<string>();
  private readonly votes = new Map<number, { acked: number; tried: number }>();
  private n = 0;

  constructor(private readonly prefix: string, private readonly products: number[], private readonly reviewIds: number[]) {}

  /** One POST (retried with its key up to `retries` times after a 5xx or a lost answer). */
  async post(base: string, random: () => number, retries = 3): Promise<number> {
    const name = `${this.prefix}-${++this.n}`;
    const product = this.products[Math.floor(random() * this.products.length)];
    this.attempted.add(name);
    const body = JSON.stringify({
      product_id: product, rating: 1 + Math.floor(random() * 5), recommend: random() < 0.5, name, email: 'ledger@example.com',
      body: 'A ledger review, comfortably longer than the fifty characters the contract asks for.', characteristics: {},
    });
    let status = 0;
    for (let attempt = 0; attempt <= retries; attempt++) {
      const res = await fetch(`${base}/reviews`, { method: 'POST', headers: { 'content-type': 'application/json', 'idempotency-key': name }, body, signal: AbortSignal.timeout(15_000) })
        .catch(() => undefined);
      status = res?.status ?? 0;
      await res?.arrayBuffer().catch(() => undefined);
      if (status === 201 || status === 200) {
        this.acknowledged.add(name);
        return status;
      }
      if (status >= 400 && status < 500 && status !== 429) return status;
      await sleep(200 + random() * 300);
    }
    return status;
  }

  async helpful(base: string, random: () => number): Promise<number> {
    const id = this.reviewIds[Math.floor(random() * this.reviewIds.length)];
    const v = this.votes.get(id) ?? { acked: 0, tried: 0 };
    this.votes.set(id, v);
    v.tried++;
    const res = await fetch(`${base}/reviews/${id}/helpful`, { method: 'PUT', signal: AbortSignal.timeout(15_000) }).catch(() => undefined);
    await res?.arrayBuffer().catch(() => undefined);
    if (res?.status === 204) v.acked++;
    return res?.status ?? 0;
  }

  /** Compares with the database at `url`; `before` maps review id to its helpfulness before the run. */
  async check(url: string, before: Map<number, number>): Promise<LedgerCheck> {
    const db = new Db({ connectionString: url, poolSize: 1, application: 'atelier-ledger' });
    try {
      const { rows } = await db.query<{ name: string; n: number }>('SELECT reviewer_name AS name, count(*)::int AS n FROM atelier.reviews WHERE reviewer_name LIKE $1 GROUP BY 1', [`${this.prefix}-%`]);
      const present = new Map(rows.map((r) => [r.name, r.n]));
      const ids = [...this.votes.keys()];
      const helpful = new Map((await db.query<{ id: number; h: number }>('SELECT id, helpfulness AS h FROM atelier.reviews WHERE id = ANY($1::int[])', [ids])).rows.map((r) => [r.id, r.h]));
      const outside: string[] = [];
      for (const [id, v] of this.votes) {
        const delta = (helpful.get(id) ?? 0) - (before.get(id) ?? 0);
        if (delta < v.acked || delta > v.tried) outside.push(`review ${id}: +${delta}, ${v.acked} acknowledged of ${v.tried} sent`);
      }
      return {
        posts: {
          acknowledged: this.acknowledged.size,
          present: present.size,
          missing: [...this.acknowledged].filter((n) => !present.has(n)),
          duplicated: [...present].filter(([, n]) => n > 1).map(([name, n]) => `${name} ×${n}`),
        },
        votes: { reviews: ids.length, outside },
      };
    } finally {
      await db.close();
    }
  }
}

/** Each review's helpfulness now (the ledger's starting point). */
export async function helpfulnessOf(url: string, ids: number[]): Promise<Map<number, number>> {
  const db = new Db({ connectionString: url, poolSize: 1, application: 'atelier-ledger' });
  try {
    return new Map((await db.query<{ id: number; h: number }>('SELECT id, helpfulness AS h FROM atelier.reviews WHERE id = ANY($1::int[])', [ids])).rows.map((r) => [r.id, r.h]));
  } finally {
    await db.close();
  }
}

// The host's response cache: rendered JSON bodies of the read endpoints, bounded by
// memory (LRU), grouped by product so a write drops exactly that product's entries.
// Concurrent misses for one key share one render (single-flight). A render that was in
// flight when its product was invalidated, or when the cache stopped trusting its
// invalidation feed, is answered but never stored, so a stale body cannot outlive the
// write that made it stale.
//
// The freshness rule, its store side, is `keep()`: a render is stored only when its read
// is proven to reflect every change this host had heard when it was sent (its ReadStamp,
// src/db/read-stamp.ts), no change to its product was heard while it was in flight, no
// flush happened meanwhile, and the change feed listens. A render that fails any of these
// is answered once and marked not `proven`, so the HTTP edge tells nginx not to cache it.
import { createHash } from 'node:crypto';
import { LRUCache } from 'lru-cache';
import type { ReadStamp } from '../db';

export interface CachedBody {
  body: Buffer;
  /** Strong validator of the body and its headers, for If-None-Match. */
  etag: string;
  /** Headers that belong to this answer (e.g. X-Total-Count). */
  headers?: Record<string, string>;
}

/** What a render returns: the body text, its own headers, and the stamp of the read behind it (required: no read path can skip the rule). */
export interface Rendered {
  text: string;
  headers?: Record<string, string>;
  stamp: ReadStamp;
}

/** An answer, where it came from, and whether it is proven fresh (a HIT, or a render the rule let the cache keep). */
export interface CacheAnswer {
  entry: CachedBody;
  outcome: CacheOutcome;
  /** False: served once and forgotten (a read not proven, or one a change overtook); nobody downstream may keep it either. */
  proven: boolean;
}

/** HIT: served from memory; MISS: rendered now (or joined a render in flight); BYPASS: rendered past the cache (a writer's refresh, or the cache off or untrusted). */
export type CacheOutcome = 'HIT' | 'MISS' | 'BYPASS';

export interface ResponseCacheOptions {
  /** Memory bound for bodies and keys; 0 turns the cache off. */
  maxBytes: number;
  /** Longest life of an entry, a backstop behind the exact invalidation. */
  ttlMs: number;
  /**
   * Whether entries may be stored from the start. A host whose invalidation feed is not
   * listening yet starts untrusted and is trusted once it listens.
   */
  trusted?: boolean;
}

export interface ResponseCacheStats {
  hits: number;
  misses: number;
  /** Misses that joined a render already in flight instead of querying again. */
  coalesced: number;
  bypassed: number;
  evictions: number;
  /** Products (or '*') invalidated. */
  invalidations: number;
  entries: number;
  bytes: number;
  /** Keys in the per-product index (equal to entries: a key is indexed only while stored). */
  indexedKeys: number;
}

interface Flight {
  promise: Promise<{ entry: CachedBody; proven: boolean }>;
  key: string;
  product: number;
  /** Set when the product was invalidated while this render was in flight. */
  poisoned: boolean;
}

const ENTRY_OVERHEAD = 200;

/**
 * Strong validator of an answer: its body and the headers that belong to it (X-Total-Count).
 * A header outside the tag would survive every 304 (nginx keeps a revalidated entry's stored
 * headers), so a write that changes the count but not the page must change the tag.
 */
export function entityTag(body: Buffer, headers?: Record<string, string>): string {
  const h = createHash('sha1').update(body);
  if (headers) for (const k of Object.keys(headers).sort()) h.update(`\0${k}:${headers[k]}`);
  return `"${h.digest('base64url').slice(0, 22)}"`;
}

export class ResponseCache {
  private readonly lru?: LRUCache<string, CachedBody & { product: number }>;
  private readonly keysByProduct = new Map<number, Set<string>>();
  private readonly flights = new Map<string, Flight>();
  private readonly flightsByProduct = new Map<number, Set<Flight>>();
  private trusted: boolean;
  /** Moves on every change of trust and every flush: a render started in an older epoch is not stored. */
  private epoch = 0;
  private readonly counters = { hits: 0, misses: 0, coalesced: 0, bypassed: 0, evictions: 0, invalidations: 0 };
  /** Every invalidation heard (a product's or all), for renders that no flight tracks. */
  private changesHeard = 0;
  /** Told of every invalidation, synchronously: a product's, or all (undefined) on a flush or a change of trust. */
  private readonly changeListeners: ((product: number | undefined) => void)[] = [];

  constructor(opts: ResponseCacheOptions) {
    this.trusted = opts.trusted ?? true;
    if (opts.maxBytes <= 0) return;
    this.lru = new LRUCache({
      maxSize: opts.maxBytes,
      sizeCalculation: (v, k) => v.body.length + k.length + ENTRY_OVERHEAD,
      ttl: opts.ttlMs,
      // Expired entries are dropped when read, not by a timer per entry.
      ttlAutopurge: false,
      dispose: (v, k, reason) => {
        if (reason === 'evict') this.counters.evictions++;
        const keys = this.keysByProduct.get(v.product);
        keys?.delete(k);
        if (keys?.size === 0) this.keysByProduct.delete(v.product);
      },
    });
  }

  /**
   * Hears what this cache hears, as it hears it: `product` when that product changed,
   * undefined when everything must be forgotten (an import's swap, a change of trust, a
   * promotion). Other stores of this host's reads that follow the same rule use it.
   */
  onChange(listener: (product: number | undefined) => void): void {
    this.changeListeners.push(listener);
  }

  get enabled(): boolean {
    return this.lru !== undefined;
  }

  get isTrusted(): boolean {
    return this.trusted;
  }

  /** Whether `key` would be answered from memory now (no render, no change to recency). */
  holds(key: string): boolean {
    return this.trusted && this.lru !== undefined && this.lru.has(key);
  }

  /**
   * The body for `key` (a response of `product`): from memory, from a render already in
   * flight, or rendered now by `render` (JSON text).
   */
  async get(product: number, key: string, render: () => Promise<Rendered>): Promise<CacheAnswer> {
    const lru = this.lru;
    if (!lru || !this.trusted) {
      this.counters.bypassed++;
      return this.unstored(render);
    }
    const hit = lru.get(key);
    if (hit) {
      this.counters.hits++;
      return { entry: hit, outcome: 'HIT', proven: true };
    }
    this.counters.misses++;
    const inFlight = this.flights.get(key);
    if (inFlight) {
      this.counters.coalesced++;
      return { ...(await inFlight.promise), outcome: 'MISS' };
    }
    return { ...(await this.fill(product, key, render)), outcome: 'MISS' };
  }

  /**
   * A render with the cache off or untrusted: never stored; proven when its read is and no
   * change was heard while it ran (any product's: no flight tracks it here, so this fails
   * closed more often; found by review: nginx could keep an overtaken render).
   */
  private async unstored(render: () => Promise<Rendered>): Promise<CacheAnswer> {
    const heard = this.changesHeard;
    const r = await render();
    return { entry: toEntry(r), outcome: 'BYPASS', proven: r.stamp.exact && heard === this.changesHeard };
  }

  /**
   * For a reader who has just written `product` (its cookie says so): rendered now from the
   * database, never from memory nor from a render that began earlier, since this host may
   * not have heard that write's notification yet. The fresh body is stored for everyone.
   */
  async refresh(product: number, key: string, render: () => Promise<Rendered>): Promise<CacheAnswer> {
    this.counters.bypassed++;
    if (!this.lru || !this.trusted) return this.unstored(render);
    return { ...(await this.fill(product, key, render)), outcome: 'BYPASS' };
  }

  /**
   * The freshness rule, store side (see the opening comment): whether a render begun in
   * `epoch` for `flight` may be kept, and whether it is proven at all.
   */
  private keep(r: Rendered, flight: Flight, epoch: number): { proven: boolean; store: boolean } {
    const proven = r.stamp.exact && !flight.poisoned && epoch === this.epoch;
    return { proven, store: proven && this.trusted };
  }

  private fill(product: number, key: string, render: () => Promise<Rendered>): Promise<{ entry: CachedBody; proven: boolean }> {
    const lru = this.lru!;
    const epoch = this.epoch;
    const flight: Flight = { key, product, poisoned: false, promise: undefined as unknown as Flight['promise'] };
    flight.promise = (async () => {
      try {
        const rendered = await render();
        const entry = toEntry(rendered);
        const { proven, store } = this.keep(rendered, flight, epoch);
        if (store) {
          lru.set(key, { ...entry, product });
          // A body larger than the whole cache is not stored by lru-cache (and no dispose
          // follows): indexing its key anyway would leak one index entry per such key.
          if (!lru.has(key)) return { entry, proven };
          let keys = this.keysByProduct.get(product);
          if (!keys) this.keysByProduct.set(product, (keys = new Set()));
          keys.add(key);
        }
        return { entry, proven };
      } finally {
        this.endFlight(flight);
      }
    })();
    this.flights.set(key, flight);
    let forProduct = this.flightsByProduct.get(product);
    if (!forProduct) this.flightsByProduct.set(product, (forProduct = new Set()));
    forProduct.add(flight);
    return flight.promise;
  }

  private endFlight(flight: Flight): void {
    if (this.flights.get(flight.key) === flight) this.flights.delete(flight.key);
    const forProduct = this.flightsByProduct.get(flight.product);
    forProduct?.delete(flight);
    if (forProduct?.size === 0) this.flightsByProduct.delete(flight.product);
  }

  /** Drops every entry of `product`; renders in flight for it are answered but not stored. */
  invalidate(product: number): void {
    this.counters.invalidations++;
    this.changesHeard++;
    const keys = this.keysByProduct.get(product);
    if (keys) for (const key of [...keys]) this.lru?.delete(key);
    const flights = this.flightsByProduct.get(product);
    if (flights) {
      for (const f of flights) {
        f.poisoned = true;
        // Later readers must not join a render that may predate the write.
        if (this.flights.get(f.key) === f) this.flights.delete(f.key);
      }
    }
    for (const l of this.changeListeners) l(product);
  }

  /** Drops everything (an import swapped the data in); renders in flight are not stored. */
  invalidateAll(): void {
    this.counters.invalidations++;
    this.changesHeard++;
    this.epoch++;
    this.flights.clear();
    this.lru?.clear();
    this.keysByProduct.clear();
    for (const l of this.changeListeners) l(undefined);
  }

  /**
   * Untrusted (the invalidation feed may have missed messages): everything is dropped and
   * every read goes to the database until trusted again, which drops everything once more.
   */
  setTrusted(trusted: boolean): void {
    if (trusted === this.trusted) return;
    this.trusted = trusted;
    // After the flag moves, so listeners see the trust that follows the flush.
    this.invalidateAll();
  }

  stats(): ResponseCacheStats {
    let indexedKeys = 0;
    for (const keys of this.keysByProduct.values()) indexedKeys += keys.size;
    return { ...this.counters, entries: this.lru?.size ?? 0, bytes: this.lru?.calculatedSize ?? 0, indexedKeys };
  }
}

function toEntry(r: Rendered): CachedBody {
  const body = Buffer.from(r.text);
  return { body, etag: entityTag(body, r.headers), headers: r.headers };
}

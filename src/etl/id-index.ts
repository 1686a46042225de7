// Memory-bounded lookups by integer id for the import's cross-file checks: which
// reviews and characteristics loaded (and their product), which ids were seen, and the
// meta aggregates counted as the rows stream past. Pages of ids are allocated on demand,
// so memory follows the ids present, not the largest id; and they live in a PageStore,
// which keeps them in memory up to a budget and the least recently used beyond it in a
// temporary file, so the import's memory does not grow with the export (the export's
// files are in id order, and so are its references: each page is written out and read
// back a few times per import, not per row).
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

export const DEFAULT_INDEX_MEMORY_BYTES = 64 * 1048576;

export interface PageStoreOptions {
  /** Pages kept in memory, in bytes (default 64 MiB); the rest go to the temporary file. */
  memoryBytes?: number;
  /** Ids per page as a power of two (default 16); smaller only to exercise the file in tests. */
  pageBits?: number;
  /** Folder of the temporary file (default the OS's temp folder; the file is unlinked at once). */
  dir?: string;
}

export interface PageStoreStats {
  /** The memory budget for pages. */
  memoryBytes: number;
  /** Bytes the temporary file reached. */
  fileBytes: number;
  /** Pages written to the file (only when changed since they were last there) and read back. */
  writes: number;
  reloads: number;
  /** The budget was lifted because the files' references were not in id order (see bring). */
  lifted: boolean;
}

interface Page {
  owner: Paged;
  index: number;
  /** Undefined while the page is in the file. */
  data: Int32Array | Uint8Array | undefined;
  /** Offset in the file, once written there. */
  slot: number;
  /** Changed since it was last written to the file. */
  dirty: boolean;
  lastUse: number;
  /** Times read back from the file. */
  reloads: number;
  /** Position in the store's resident list. */
  at: number;
}

/** A Page's typed array as one structure's element type. */
type Data<T> = T extends Int32Array ? Int32Array : Uint8Array;

export class PageStore {
  readonly pageBits: number;
  private budget: number;
  private used = 0;
  private resident: Page[] = [];
  private tick = 0;
  private readonly dir: string;
  private fd = -1;
  private fileEnd = 0;
  private thrash = 0;
  private readonly counts = { writes: 0, reloads: 0, lifted: false };

  constructor(opts: PageStoreOptions = {}) {
    this.budget = Math.max(1, opts.memoryBytes ?? DEFAULT_INDEX_MEMORY_BYTES);
    this.pageBits = opts.pageBits ?? 16;
    if (!Number.isInteger(this.pageBits) || this.pageBits < 3 || this.pageBits > 20) throw new RangeError(`pageBits must be 3..20, not ${opts.pageBits}`);
    this.dir = opts.dir ?? os.tmpdir();
  }

  stats(): PageStoreStats {
    return { memoryBytes: this.budget, fileBytes: this.fileEnd, ...this.counts };
  }

  /** Bytes of pages in memory now. */
  get residentBytes(): number {
    return this.used;
  }

  close(): void {
    if (this.fd >= 0) fs.closeSync(this.fd);
    this.fd = -1;
  }

  /** A new page (zeros) or one read back from the file, made resident. */
  bring(page: Page, fresh: Int32Array | Uint8Array): void {
    if (page.slot >= 0) {
      const got = fs.readSync(this.fd, fresh, 0, fresh.byteLength, page.slot);
      if (got !== fresh.byteLength) throw new Error(`import index: read ${got} of ${fresh.byteLength} bytes of a page back from its temporary file`);
      this.counts.reloads++;
      // In id order a page is read back a few times an import (once per later file or pass
      // that refers to it). A page read back more often means references out of id order,
      // where every row could cost a page's write and read: then keep every page in memory,
      // as the import did before it had a budget, rather than crawl.
      if (++page.reloads > 8 && ++this.thrash >= 64 && !this.counts.lifted) {
        this.budget = Infinity;
        this.counts.lifted = true;
      }
    }
    page.data = fresh;
    page.at = this.resident.push(page) - 1;
    this.used += fresh.byteLength;
    this.use(page);
    this.shrink();
  }

  use(page: Page): void {
    page.lastUse = ++this.tick;
  }

  private shrink(): void {
    while (this.used > this.budget) {
      let victim: Page | undefined;
      for (const p of this.resident) {
        if (p.owner.isCurrent(p)) continue;
        if (victim === undefined || p.lastUse < victim.lastUse) victim = p;
      }
      if (victim === undefined) return;
      this.evict(victim);
    }
  }

  private evict(page: Page): void {
    const data = page.data!;
    if (page.dirty) {
      if (this.fd < 0) this.open();
      if (page.slot < 0) {
        page.slot = this.fileEnd;
        this.fileEnd += data.byteLength;
      }
      fs.writeSync(this.fd, data, 0, data.byteLength, page.slot);
      page.dirty = false;
      this.counts.writes++;
    }
    page.data = undefined;
    const last = this.resident.pop()!;
    if (last !== page) {
      this.resident[page.at] = last;
      last.at = page.at;
    }
    this.used -= data.byteLength;
    page.owner.recycle(data);
  }

  private open(): void {
    const file = path.join(this.dir, `atelier-import-index-${process.pid}-${Date.now().toString(36)}-${Math.random().toString(36).slice(2)}`);
    this.fd = fs.openSync(file, 'wx+', 0o600);
    // Unlinked at once: the file lives as long as the descriptor, and a killed import leaves nothing.
    fs.unlinkSync(file);
  }
}

/** Pages of one structure: `width` elements per id. */
abstract class Paged<T extends Int32Array | Uint8Array = Int32Array | Uint8Array> {
  private readonly pages: (Page | undefined)[] = [];
  /** The page touched last: never written out (the caller may be using it). */
  private current: Page | undefined;
  private spare: T | undefined;
  protected readonly bits: number;
  protected readonly mask: number;
  protected readonly pageLength: number;

  protected constructor(protected readonly store: PageStore, elementsPerId: number, private readonly make: (n: number) => T) {
    this.bits = store.pageBits;
    this.mask = (1 << this.bits) - 1;
    this.pageLength = (1 << this.bits) * elementsPerId;
  }

  isCurrent(page: Page): boolean {
    return this.current === page;
  }

  recycle(data: Int32Array | Uint8Array): void {
    this.spare = data as T;
  }

  /** The page holding `id`, or undefined when it has none and `create` is false. */
  protected page(id: number, create: boolean): Data<T> | undefined {
    const c = this.current;
    if (c !== undefined && c.index === id >>> this.bits) {
      if (create) c.dirty = true;
      return c.data as Data<T>;
    }
    return this.turn(id >>> this.bits, create);
  }

  private turn(p: number, create: boolean): Data<T> | undefined {
    let page = this.pages[p];
    if (page === undefined) {
      if (!create) return undefined;
      page = this.pages[p] = { owner: this, index: p, data: undefined, slot: -1, dirty: true, lastUse: 0, reloads: 0, at: -1 };
    }
    if (this.current !== undefined) this.store.use(this.current);
    this.current = page;
    if (page.data === undefined) {
      let fresh = this.spare;
      this.spare = undefined;
      if (fresh === undefined) fresh = this.make(this.pageLength);
      else if (page.slot < 0) fresh.fill(0);
      this.store.bring(page, fresh);
    } else {
      this.store.use(page);
    }
    if (create) page.dirty = true;
    return page.data as Data<T>;
  }

  /** Page numbers that exist, ascending. */
  protected pageNumbers(): number[] {
    const out: number[] = [];
    for (let p = 0; p < this.pages.length; p++) if (this.pages[p] !== undefined) out.push(p);
    return out;
  }
}

/** id -> positive int32 value (a product id); 0 means absent. */
export class IdMap extends Paged<Int32Array> {
  size = 0;

  constructor(store: PageStore) {
    super(store, 1, (n) => new Int32Array(n));
  }

  get(id: number): number {
    const page = this.page(id, false);
    return page === undefined ? 0 : page[id & this.mask];
  }

  has(id: number): boolean {
    return this.get(id) !== 0;
  }

  set(id: number, value: number): void {
    const page = this.page(id, true)!;
    if (page[id & this.mask] === 0) this.size++;
    page[id & this.mask] = value;
  }

  /** [id, value] pairs in ascending id order. */
  *entries(): Generator<[number, number]> {
    const n = 1 << this.bits;
    for (const p of this.pageNumbers()) {
      for (let i = 0; i < n; i++) {
        const id = (p << this.bits) | i;
        // Looked up again each time: the caller may touch other structures between ids.
        const v = this.get(id);
        if (v !== 0) yield [id, v];
      }
    }
  }
}

/** `width` int32 counters per id, all starting at zero. */
export class IdCounters extends Paged<Int32Array> {
  constructor(store: PageStore, readonly width: number) {
    super(store, width, (n) => new Int32Array(n));
  }

  add(id: number, slot: number, delta = 1): void {
    this.page(id, true)![(id & this.mask) * this.width + slot] += delta;
  }

  /** The counters of one id (zeros when never touched). */
  get(id: number): number[] {
    const page = this.page(id, false);
    const at = (id & this.mask) * this.width;
    return Array.from({ length: this.width }, (_, k) => (page === undefined ? 0 : page[at + k]));
  }

  /** Ids with any non-zero counter, ascending, with a copy of their counters. */
  *entries(): Generator<[number, Int32Array]> {
    const n = 1 << this.bits;
    for (const p of this.pageNumbers()) {
      for (let i = 0; i < n; i++) {
        const id = (p << this.bits) | i;
        const page = this.page(id, false)!;
        const row = page.subarray(i * this.width, (i + 1) * this.width);
        if (row.some((v) => v !== 0)) yield [id, row.slice()];
      }
    }
  }
}

/** A set of ids as a paged bitmap. */
export class IdSet extends Paged<Uint8Array> {
  constructor(store: PageStore) {
    super(store, 1 / 8, (n) => new Uint8Array(n));
  }

  has(id: number): boolean {
    const page = this.page(id, false);
    return page !== undefined && (page[(id & this.mask) >>> 3] & (1 << (id & 7))) !== 0;
  }

  /** Adds the id; false when it was already there. */
  add(id: number): boolean {
    const page = this.page(id, true)!;
    const byte = (id & this.mask) >>> 3;
    const bit = 1 << (id & 7);
    if (page[byte] & bit) return false;
    page[byte] |= bit;
    return true;
  }
}

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
/** The smallest budget the command line takes: every structure's page in use fits well inside it. */
export const MIN_INDEX_MEMORY_MB = 16;

export interface PageStoreOptions {
  /** Pages kept in memory, in bytes (default 64 MiB); the rest go to the temporary file. */
  memoryBytes?: number;
  /**
   * A page is 2^(pageBits + 2) bytes (default 16: 256 KiB, 65,536 ids of an IdMap); smaller
   * only to exercise the file in tests.
   */
  pageBits?: number;
  /** Folder of the temporary file (default the OS's temp folder; the file is unlinked at once). */
  dir?: string;
}

export interface PageStoreStats {
  /** The memory budget for pages, as configured. */
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

/**
 * Pages of every structure of one import. All pages are the same size, so a page written
 * out gives its memory to the next page brought in, and the memory in use is the budget,
 * not the budget plus arrays waiting for the garbage collector.
 */
export class PageStore {
  readonly pageBits: number;
  readonly pageBytes: number;
  private readonly memoryBytes: number;
  private limit: number;
  private resident: Page[] = [];
  /** Memory of pages written out, for the next page brought in. */
  private free: ArrayBuffer[] = [];
  private tick = 0;
  private readonly dir: string;
  private fd = -1;
  private closed = false;
  private failed: Error | undefined;
  private fileEnd = 0;
  private thrash = 0;
  private readonly counts = { writes: 0, reloads: 0, lifted: false };

  constructor(opts: PageStoreOptions = {}) {
    this.memoryBytes = opts.memoryBytes ?? DEFAULT_INDEX_MEMORY_BYTES;
    if (!(this.memoryBytes > 0)) throw new RangeError(`the import index's memory must be above 0 bytes, not ${opts.memoryBytes}`);
    this.limit = this.memoryBytes;
    this.pageBits = opts.pageBits ?? 16;
    if (!Number.isInteger(this.pageBits) || this.pageBits < 3 || this.pageBits > 20) throw new RangeError(`pageBits must be 3..20, not ${opts.pageBits}`);
    this.pageBytes = 2 ** (this.pageBits + 2);
    this.dir = opts.dir ?? os.tmpdir();
    // Opened now, so a missing or unwritable folder fails the import before it starts.
    this.fd = this.guard('create', () => {
      const file = path.join(this.dir, `atelier-import-index-${process.pid}-${Date.now().toString(36)}-${Math.random().toString(36).slice(2)}`);
      const fd = fs.openSync(file, 'wx+', 0o600);
      // Unlinked at once: the file lives as long as the descriptor, and a killed import leaves nothing.
      fs.unlinkSync(file);
      return fd;
    });
  }

  stats(): PageStoreStats {
    return { memoryBytes: this.memoryBytes, fileBytes: this.fileEnd, ...this.counts };
  }

  /** Bytes of page memory held now: pages in memory and memory waiting for the next page. */
  get residentBytes(): number {
    return (this.resident.length + this.free.length) * this.pageBytes;
  }

  /** Ends the store: its file closes, and every later use of its structures throws. */
  close(): void {
    if (this.fd >= 0) fs.closeSync(this.fd);
    this.fd = -1;
    this.closed = true;
    this.disable();
  }

  /**
   * Memory for one more page: at the budget, that of the least recently used page not in
   * use, written out first; else new memory (also when every page is in use: the budget
   * is then exceeded by those pages, never by memory waiting for the garbage collector).
   */
  take(): ArrayBuffer {
    this.assertOpen();
    if (this.free.length === 0 && this.residentBytes + this.pageBytes > this.limit) this.evictOne();
    return this.free.pop() ?? new ArrayBuffer(this.pageBytes);
  }

  /** A new page (zeros) or one read back from the file, made resident in `memory`. */
  bring(page: Page, memory: Int32Array | Uint8Array): void {
    if (page.slot >= 0) {
      const got = this.guard('read', () => fs.readSync(this.fd, memory, 0, memory.byteLength, page.slot));
      if (got !== memory.byteLength) throw new Error(`import index: read ${got} of ${memory.byteLength} bytes of a page back from its temporary file`);
      this.counts.reloads++;
      // In id order a page is read back a few times an import (once per later file or pass
      // that refers to it). A page read back more often means references out of id order,
      // where every row could cost a page's write and read: then keep every page in memory,
      // as the import did before it had a budget, rather than crawl.
      if (++page.reloads > 8 && ++this.thrash >= 64 && !this.counts.lifted) {
        this.limit = Infinity;
        this.counts.lifted = true;
      }
    } else {
      memory.fill(0);
    }
    page.data = memory;
    page.at = this.resident.push(page) - 1;
  }

  /** Marks a page as used now (a structure leaving it: until then it was in use). */
  use(page: Page): void {
    page.lastUse = ++this.tick;
  }

  private evictOne(): void {
    let victim: Page | undefined;
    for (const p of this.resident) {
      if (p.owner.inUse(p)) continue;
      if (victim === undefined || p.lastUse < victim.lastUse) victim = p;
    }
    if (victim !== undefined) this.evict(victim);
  }

  private evict(page: Page): void {
    const data = page.data!;
    if (page.dirty) {
      if (page.slot < 0) {
        page.slot = this.fileEnd;
        this.fileEnd += this.pageBytes;
      }
      let done = 0;
      while (done < data.byteLength) {
        done += this.guard('write', () => {
          const n = fs.writeSync(this.fd, data, done, data.byteLength - done, page.slot + done);
          if (n <= 0) throw Object.assign(new Error('wrote 0 bytes'), { code: 'EIO' });
          return n;
        });
      }
      page.dirty = false;
      this.counts.writes++;
    }
    page.data = undefined;
    const last = this.resident.pop()!;
    if (last !== page) {
      this.resident[page.at] = last;
      last.at = page.at;
    }
    this.free.push(data.buffer as ArrayBuffer);
  }

  /** Throws once the store is closed or has failed: no structure answers from part of its pages. */
  assertOpen(): void {
    if (this.failed !== undefined) throw new Error(`import index: unusable after an earlier error (${this.failed.message})`, { cause: this.failed });
    if (this.closed) throw new Error('import index: used after it was closed (the import had already ended)');
  }

  /** Drops every page in memory and every structure's page in use: the next access reaches assertOpen. */
  private disable(): void {
    for (const p of this.resident) {
      p.data = undefined;
      p.owner.release();
    }
    this.resident = [];
    this.free = [];
  }

  /** Runs a file operation; its error names the file, the folder and the way out. */
  private guard<T>(what: string, op: () => T): T {
    this.assertOpen();
    try {
      return op();
    } catch (err) {
      const e = err as NodeJS.ErrnoException;
      this.failed = new Error(`import index: cannot ${what} its temporary file in ${this.dir} (${e.code ?? e.message}); ` +
        'set TMPDIR to a folder with room (about 100 MB per full-scale export), or raise --index-memory to keep the index in memory', { cause: err });
      this.disable();
      throw this.failed;
    }
  }
}

/** Pages of one structure: `bytesPerId` bytes per id, as many ids a page as fit a store's page. */
abstract class Paged<T extends Int32Array | Uint8Array = Int32Array | Uint8Array> {
  private readonly pages: (Page | undefined)[] = [];
  /** The page touched last: never written out (the caller may be using it). */
  private current: Page | undefined;
  protected readonly bits: number;
  protected readonly mask: number;

  protected constructor(protected readonly store: PageStore, bytesPerId: number, private readonly view: (b: ArrayBuffer) => T) {
    this.bits = store.pageBits + 2 - Math.ceil(Math.log2(bytesPerId));
    if (this.bits < 0) throw new RangeError(`${bytesPerId} bytes an id do not fit a page of ${store.pageBytes} bytes`);
    this.mask = 2 ** this.bits - 1;
  }

  inUse(page: Page): boolean {
    return this.current === page;
  }

  /** Forgets the page in use (the store dropped its pages). */
  release(): void {
    this.current = undefined;
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
    this.store.assertOpen();
    let page = this.pages[p];
    if (page === undefined) {
      if (!create) return undefined;
      page = this.pages[p] = { owner: this, index: p, data: undefined, slot: -1, dirty: true, lastUse: 0, reloads: 0, at: -1 };
    }
    // Brought in while the page left is still in use (it is not written out to make room).
    if (page.data === undefined) this.store.bring(page, this.view(this.store.take()));
    // The page left was in use until now, which is when it was last used: two files
    // streaming at once through one structure (photos and ratings both look up reviews)
    // then each keep their page in memory.
    if (this.current !== undefined) this.store.use(this.current);
    this.current = page;
    if (create) page.dirty = true;
    return page.data as Data<T>;
  }

  /** Ids that a page exists for, ascending, a page at a time. */
  protected *pageIds(): Generator<[start: number, count: number]> {
    for (let p = 0; p < this.pages.length; p++) if (this.pages[p] !== undefined) yield [p * 2 ** this.bits, 2 ** this.bits];
  }
}

/** id -> positive int32 value (a product id); 0 means absent. */
export class IdMap extends Paged<Int32Array> {
  size = 0;

  constructor(store: PageStore) {
    super(store, 4, (b) => new Int32Array(b));
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
    for (const [start, count] of this.pageIds()) {
      for (let id = start; id < start + count; id++) {
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
    super(store, 4 * width, (b) => new Int32Array(b));
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
    for (const [start, count] of this.pageIds()) {
      for (let id = start; id < start + count; id++) {
        const at = (id & this.mask) * this.width;
        const row = this.page(id, false)!.subarray(at, at + this.width);
        if (row.some((v) => v !== 0)) yield [id, row.slice()];
      }
    }
  }
}

/** A set of ids as a paged bitmap. */
export class IdSet extends Paged<Uint8Array> {
  constructor(store: PageStore) {
    super(store, 1 / 8, (b) => new Uint8Array(b));
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

// Memory-bounded lookups by integer id for the import's cross-file checks: which
// reviews and characteristics loaded (and their product), which ids were seen. Pages
// are allocated on demand, so memory follows the ids present, not the largest id.

const PAGE_BITS = 16;
const PAGE = 1 << PAGE_BITS;
const MASK = PAGE - 1;

/** id -> positive int32 value (a product id); 0 means absent. */
export class IdMap {
  private pages: (Int32Array | undefined)[] = [];
  size = 0;

  get(id: number): number {
    const page = this.pages[id >>> PAGE_BITS];
    return page === undefined ? 0 : page[id & MASK];
  }

  has(id: number): boolean {
    return this.get(id) !== 0;
  }

  set(id: number, value: number): void {
    const p = id >>> PAGE_BITS;
    let page = this.pages[p];
    if (page === undefined) page = this.pages[p] = new Int32Array(PAGE);
    if (page[id & MASK] === 0) this.size++;
    page[id & MASK] = value;
  }

  /** [id, value] pairs in ascending id order. */
  *entries(): Generator<[number, number]> {
    for (let p = 0; p < this.pages.length; p++) {
      const page = this.pages[p];
      if (page === undefined) continue;
      for (let i = 0; i < PAGE; i++) if (page[i] !== 0) yield [(p << PAGE_BITS) | i, page[i]];
    }
  }
}

/** `width` int32 counters per id, all starting at zero. */
export class IdCounters {
  private pages: (Int32Array | undefined)[] = [];
  constructor(readonly width: number) {}

  add(id: number, slot: number, delta = 1): void {
    const p = id >>> PAGE_BITS;
    let page = this.pages[p];
    if (page === undefined) page = this.pages[p] = new Int32Array(PAGE * this.width);
    page[(id & MASK) * this.width + slot] += delta;
  }

  /** The counters of one id (zeros when never touched). */
  get(id: number): number[] {
    const page = this.pages[id >>> PAGE_BITS];
    const at = (id & MASK) * this.width;
    return Array.from({ length: this.width }, (_, k) => (page === undefined ? 0 : page[at + k]));
  }

  /** Ids with any non-zero counter, ascending, with their counters. */
  *entries(): Generator<[number, Int32Array]> {
    for (let p = 0; p < this.pages.length; p++) {
      const page = this.pages[p];
      if (page === undefined) continue;
      for (let i = 0; i < PAGE; i++) {
        const row = page.subarray(i * this.width, (i + 1) * this.width);
        if (row.some((v) => v !== 0)) yield [(p << PAGE_BITS) | i, row];
      }
    }
  }
}

/** A set of ids as a paged bitmap. */
export class IdSet {
  private pages: (Uint8Array | undefined)[] = [];

  has(id: number): boolean {
    const page = this.pages[id >>> PAGE_BITS];
    return page !== undefined && (page[(id & MASK) >>> 3] & (1 << (id & 7))) !== 0;
  }

  /** Adds the id; false when it was already there. */
  add(id: number): boolean {
    const p = id >>> PAGE_BITS;
    let page = this.pages[p];
    if (page === undefined) page = this.pages[p] = new Uint8Array(PAGE >>> 3);
    const byte = (id & MASK) >>> 3;
    const bit = 1 << (id & 7);
    if (page[byte] & bit) return false;
    page[byte] |= bit;
    return true;
  }
}

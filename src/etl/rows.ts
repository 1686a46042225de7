// Validation of one CSV record of each export file, and its rendering as a line of
// PostgreSQL COPY text format. Pure functions over the record and the cross-file
// indexes, so every rule is unit-testable; a bad record yields the reason it is bad.
import { FILES, type FileKey } from './csv-format';
import { IdCounters, IdMap, IdSet, PageStore } from './id-index';

export const MAX_INT = 2147483647;

/**
 * What the files already read tell the later ones, and the meta aggregates, counted as
 * the rows stream past (cheaper than joining 19 M ratings with 5.8 M reviews in SQL;
 * the import's tests check the result against the SQL recomputation).
 */
export class LoadIndex {
  /** review id -> product id */
  readonly reviews: IdMap;
  readonly reportedReviews: IdSet;
  /** characteristic id -> product id */
  readonly characteristics: IdMap;
  /** characteristic id -> 1 + index in characteristicNames */
  readonly characteristicName: IdMap;
  readonly characteristicNames: string[] = [];
  private readonly nameIndex = new Map<string, number>();
  readonly photoIds: IdSet;
  readonly ratingIds: IdSet;
  /** product id -> visible reviews rated 1..5, recommended, not recommended */
  readonly productTotals: IdCounters;
  /** characteristic id -> sum and count of its ratings by visible reviews */
  readonly characteristicTotals: IdCounters;

  /** Every structure's pages share `store`'s memory budget (close it when done). */
  constructor(readonly store = new PageStore()) {
    this.reviews = new IdMap(store);
    this.reportedReviews = new IdSet(store);
    this.characteristics = new IdMap(store);
    this.characteristicName = new IdMap(store);
    this.photoIds = new IdSet(store);
    this.ratingIds = new IdSet(store);
    this.productTotals = new IdCounters(store, 7);
    this.characteristicTotals = new IdCounters(store, 2);
  }

  internName(name: string): number {
    let i = this.nameIndex.get(name);
    if (i === undefined) {
      i = this.characteristicNames.push(name) - 1;
      this.nameIndex.set(name, i);
    }
    return i + 1;
  }
}

/** Either a COPY line (ending in a newline) or the reason the record was rejected. */
export type RowResult = { copy: string } | { reject: string };

class Reject extends Error {}
const fail = (reason: string): never => {
  throw new Reject(reason);
};

/** A whole number in [min, max], written as plain digits. */
function int(v: string, name: string, min: number, max = MAX_INT): number {
  const n = v.length;
  if (n === 0 || n > 10) fail(n === 0 ? `${name} is empty` : `${name} "${v}" is out of range`);
  let x = 0;
  let i = 0;
  let neg = false;
  if (v.charCodeAt(0) === 45 && n > 1) {
    neg = true;
    i = 1;
  }
  for (; i < n; i++) {
    const c = v.charCodeAt(i) - 48;
    if (c < 0 || c > 9) fail(`${name} "${v}" is not an integer`);
    x = x * 10 + c;
  }
  if (neg) x = -x;
  if (x < min || x > max) fail(`${name} ${v} is out of range ${min}..${max}`);
  return x;
}

function bool(v: string, name: string): string {
  if (v === 'true') return 't';
  if (v === 'false') return 'f';
  return fail(`${name} "${v}" is not true or false`);
}

const YMD = /^(\d{4})-(\d{2})-(\d{2})(?:[T ](\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,3}))?)?)?(Z|[+-]\d{2}:?\d{2})?$/;
const LATEST = Date.UTC(2100, 0, 1);

const pad2 = (n: number) => (n < 10 ? '0' : '') + n;
const pad3 = (n: number) => (n < 10 ? '00' : n < 100 ? '0' : '') + n;
// 'YYYY-MM-DDT' of each day since 1970, filled on demand (Date formatting was a hot spot).
const dayPrefix: string[] = [];

/** Epoch milliseconds as ISO-8601 UTC with milliseconds, e.g. 2021-03-17T13:28:37.620Z. */
export function isoFromMs(ms: number): string {
  const day = Math.floor(ms / 86_400_000);
  let prefix = dayPrefix[day];
  if (prefix === undefined) prefix = dayPrefix[day] = new Date(day * 86_400_000).toISOString().slice(0, 11);
  let t = ms - day * 86_400_000;
  const milli = t % 1000;
  t = (t - milli) / 1000;
  const sec = t % 60;
  t = (t - sec) / 60;
  return `${prefix}${pad2((t - (t % 60)) / 60)}:${pad2(t % 60)}:${pad2(sec)}.${pad3(milli)}Z`;
}

function digitsOnly(v: string): boolean {
  if (v.length === 0 || v.length > 15) return false;
  for (let i = 0; i < v.length; i++) {
    const c = v.charCodeAt(i);
    if (c < 48 || c > 57) return false;
  }
  return true;
}

/** Epoch milliseconds (the export) or an ISO-like date string (older exports), as ISO-8601 UTC. */
export function parseDate(v: string): string {
  if (digitsOnly(v)) {
    const ms = Number(v);
    if (ms > LATEST) fail(`date ${v} is past the year 2100`);
    return isoFromMs(ms);
  }
  const m = YMD.exec(v);
  if (m) {
    const t = Date.parse(m[4] ? (m[8] ? v.replace(' ', 'T') : v.replace(' ', 'T') + 'Z') : `${m[1]}-${m[2]}-${m[3]}T00:00:00Z`);
    // Date.parse rolls 2021-02-30 over to March: require the calendar date to survive.
    if (Number.isFinite(t) && (m[8] || new Date(t).toISOString().slice(0, 10) === `${m[1]}-${m[2]}-${m[3]}`)) {
      return new Date(t).toISOString();
    }
  }
  return fail(`date "${v}" is neither epoch milliseconds nor a valid YYYY-MM-DD date`);
}

const NEEDS_ESCAPE = /[\\\t\n\r]/;
/** True when no field of the raw record needs COPY escaping (one test per row, not per field). */
const rawIsClean = (raw: string) => !NEEDS_ESCAPE.test(raw);

/** A text value in COPY text format. */
export function copyText(v: string): string {
  if (!NEEDS_ESCAPE.test(v)) return v;
  return v.replace(/[\\\t\n\r]/g, (c) => (c === '\\' ? '\\\\' : c === '\t' ? '\\t' : c === '\n' ? '\\n' : '\\r'));
}

function fieldCount(f: string[], key: FileKey): void {
  const want = FILES[key].header.length;
  if (f.length !== want) fail(`expected ${want} fields, found ${f.length}`);
}

function reviewsRow(f: string[], ix: LoadIndex, raw: string): string {
  const clean = rawIsClean(raw);
  fieldCount(f, 'reviews');
  const id = int(f[0], 'id', 1);
  const product = int(f[1], 'product_id', 1);
  const rating = int(f[2], 'rating', 1, 5);
  const date = parseDate(f[3]);
  const recommend = bool(f[6], 'recommend');
  const reported = bool(f[7], 'reported');
  const helpfulness = int(f[11], 'helpfulness', 0);
  if (ix.reviews.has(id)) fail(`duplicate id ${id}`);
  ix.reviews.set(id, product);
  if (reported === 't') {
    ix.reportedReviews.add(id);
  } else {
    ix.productTotals.add(product, rating - 1);
    ix.productTotals.add(product, recommend === 't' ? 5 : 6);
  }
  const response = f[10] === '' || f[10] === 'null' ? '\\N' : clean ? f[10] : copyText(f[10]);
  if (clean) return `${id}\t${product}\t${rating}\t${date}\t${f[4]}\t${f[5]}\t${recommend}\t${reported}\t${f[8]}\t${f[9]}\t${response}\t${helpfulness}\n`;
  return `${id}\t${product}\t${rating}\t${date}\t${copyText(f[4])}\t${copyText(f[5])}\t${recommend}\t${reported}\t${copyText(f[8])}\t${copyText(f[9])}\t${response}\t${helpfulness}\n`;
}

function characteristicsRow(f: string[], ix: LoadIndex, raw: string): string {
  fieldCount(f, 'characteristics');
  const id = int(f[0], 'id', 1);
  const product = int(f[1], 'product_id', 1);
  if (f[2] === '') fail('name is empty');
  if (ix.characteristics.has(id)) fail(`duplicate id ${id}`);
  ix.characteristics.set(id, product);
  ix.characteristicName.set(id, ix.internName(f[2]));
  // Written later, with its totals (characteristicsCopy), once the ratings are counted.
  return '';
}

function photosRow(f: string[], ix: LoadIndex, raw: string): string {
  fieldCount(f, 'photos');
  const id = int(f[0], 'id', 1);
  const review = int(f[1], 'review_id', 1);
  if (f[2] === '') fail('url is empty');
  if (!ix.reviews.has(review)) fail(`orphan: review ${review} is not in the loaded reviews`);
  if (!ix.photoIds.add(id)) fail(`duplicate id ${id}`);
  return raw + '\n';
}

function ratingsRow(f: string[], ix: LoadIndex, raw: string): string {
  fieldCount(f, 'ratings');
  const id = int(f[0], 'id', 1);
  const characteristic = int(f[1], 'characteristic_id', 1);
  const review = int(f[2], 'review_id', 1);
  const value = int(f[3], 'value', 1, 5);
  const reviewProduct = ix.reviews.get(review);
  if (reviewProduct === 0) fail(`orphan: review ${review} is not in the loaded reviews`);
  const charProduct = ix.characteristics.get(characteristic);
  if (charProduct === 0) fail(`orphan: characteristic ${characteristic} is not in the loaded characteristics`);
  if (charProduct !== reviewProduct) {
    fail(`characteristic ${characteristic} belongs to product ${charProduct} but review ${review} to product ${reviewProduct}`);
  }
  if (!ix.ratingIds.add(id)) fail(`duplicate id ${id}`);
  if (!ix.reportedReviews.has(review)) {
    ix.characteristicTotals.add(characteristic, 0, value);
    ix.characteristicTotals.add(characteristic, 1, 1);
  }
  return raw + '\n';
}

const ROW: Record<FileKey, (f: string[], ix: LoadIndex, raw: string) => string> = {
  reviews: reviewsRow,
  characteristics: characteristicsRow,
  photos: photosRow,
  ratings: ratingsRow,
};

/**
 * The staging table, COPY column list and COPY format for each file. Reviews are
 * rewritten (dates, null responses) into text format; the other files' records are
 * valid as they stand once checked, so their raw CSV line goes to COPY unchanged.
 */
export const TARGET: Record<Exclude<FileKey, 'characteristics'>, { table: string; columns: string; format: 'text' | 'csv' }> = {
  reviews: { table: 'reviews', columns: 'id, product_id, rating, date, summary, body, recommend, reported, reviewer_name, reviewer_email, response, helpfulness', format: 'text' },
  photos: { table: 'reviews_photos', columns: 'id, review_id, url', format: 'csv' },
  ratings: { table: 'characteristic_reviews', columns: 'id, characteristic_id, review_id, value', format: 'csv' },
};

/**
 * Validates one record of `key`'s file (after its header) and renders it as a line of
 * its COPY format (TARGET). `raw` is the record's text as it stands in the file.
 */
export function checkRow(key: FileKey, fields: string[], ix: LoadIndex, raw: string): RowResult {
  // PostgreSQL text cannot hold U+0000, and one such row would abort the whole file's COPY.
  if (raw.includes('\u0000')) return { reject: 'contains a NUL character, which PostgreSQL text cannot store' };
  try {
    return { copy: ROW[key](fields, ix, raw) };
  } catch (err) {
    if (err instanceof Reject) return { reject: err.message };
    throw err;
  }
}

/** COPY text of the characteristics with their totals, ascending id, in chunks. */
export function* characteristicsCopy(ix: LoadIndex, chunkRows = 4096): Generator<string> {
  let out: string[] = [];
  for (const [id, product] of ix.characteristics.entries()) {
    const [sum, count] = ix.characteristicTotals.get(id);
    out.push(`${id}\t${product}\t${copyText(ix.characteristicNames[ix.characteristicName.get(id) - 1])}\t${sum}\t${count}\n`);
    if (out.length >= chunkRows) {
      yield out.join('');
      out = [];
    }
  }
  if (out.length) yield out.join('');
}

/** COPY text of product_ratings (products with at least one visible review), in chunks. */
export function* productRatingsCopy(ix: LoadIndex, chunkRows = 4096): Generator<string> {
  let out: string[] = [];
  for (const [product, t] of ix.productTotals.entries()) {
    out.push(`${product}\t${t[0]}\t${t[1]}\t${t[2]}\t${t[3]}\t${t[4]}\t${t[5]}\t${t[6]}\n`);
    if (out.length >= chunkRows) {
      yield out.join('');
      out = [];
    }
  }
  if (out.length) yield out.join('');
}

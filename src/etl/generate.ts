// Synthetic Atelier export: the four CSV files in exactly the export's format, with
// the real export's shape (skewed reviews per product, ratings skewed high, a third
// with photos, 1–2 % reported, mostly null responses, quoted text with commas, quotes
// and newlines). Deterministic for a seed and scale; streams with bounded memory.
// `dirty` adds extra bad rows of every kind the loader must survive and lists them.
import fs from 'node:fs';
import path from 'node:path';
import { once } from 'node:events';
import { fromRoot } from '../lib/paths';
import { createRandom } from '../lib/random.js';
import { CHARACTERISTIC_NAMES, FILES, quote, type FileKey } from './csv-format';

export const FULL_SCALE_PRODUCTS = 1_000_011;

export interface GenerateOptions {
  out: string;
  scale?: number;
  seed?: number;
  /** Fraction of extra bad rows to inject per file (0 = clean). */
  dirty?: number;
  onProgress?: (productsDone: number, productsTotal: number) => void;
}

export interface Injection {
  file: string;
  line: number;
  kind: string;
}

export interface GenerateResult {
  products: number;
  rows: Record<FileKey, number>;
  injected: Injection[];
  manifest?: string;
}

/** Buffers rows and writes them in large chunks, honouring back-pressure; counts physical lines. */
class CsvWriter {
  private readonly stream: fs.WriteStream;
  private chunk: string[] = [];
  private size = 0;
  /** Physical line number of the last line written (header = 1). */
  line = 0;
  rows = 0;

  constructor(file: string, header: readonly string[], private readonly eol = '\n', bom = false) {
    this.stream = fs.createWriteStream(file, { highWaterMark: 1 << 20 });
    this.push((bom ? '\ufeff' : '') + header.join(','));
    this.rows = 0;
  }

  /** Appends one record; returns the physical line it starts on. */
  push(record: string): number {
    const start = this.line + 1;
    let newlines = 0;
    for (let i = record.indexOf('\n'); i !== -1; i = record.indexOf('\n', i + 1)) newlines++;
    this.line += 1 + newlines;
    this.rows++;
    const text = record + this.eol;
    this.chunk.push(text);
    this.size += text.length;
    return start;
  }

  get needsFlush(): boolean {
    return this.size > 1 << 20;
  }

  async flush(): Promise<void> {
    if (this.chunk.length === 0) return;
    const ok = this.stream.write(this.chunk.join(''));
    this.chunk = [];
    this.size = 0;
    if (!ok) await once(this.stream, 'drain');
  }

  async close(trailingBlankLine = false): Promise<void> {
    if (trailingBlankLine) this.chunk.push(this.eol);
    await this.flush();
    this.stream.end();
    await once(this.stream, 'finish');
  }
}

const WORDS = ('fabric fit comfortable stylish warm soft bright color colour size length sleeve waist stitching quality ' +
  'price value shipping ordered returned wear wore washed shrank perfect great okay awful lovely cheap sturdy loose tight ' +
  'cotton wool denim linen summer winter jacket shirt jeans dress sneakers shades belt scarf pocket zipper button').split(' ');
const OPENERS = ['I really liked this', 'Not what I expected', 'This product was great!', 'This product was ok!',
  'Honestly, worth it', 'Would buy again', 'Runs small', 'Runs large', 'Meh', 'Love it, love it, love it'];
const NAMES = ['funtime', 'mymainstreammother', 'shortandsweeet', 'bigbrother', 'jbilas', 'kimberly', 'dan', 'lisa',
  'coolkid', 'fashionista', 'mom_of_3', 'runner', 'traveler', 'quietbuyer'];
const DOMAINS = ['gmail.com', 'yahoo.com', 'example.com', 'hotmail.com', 'outlook.com'];
const RESPONSES = ['Thank you for your feedback!', 'We are sorry to hear that, please contact support.',
  'Glad you enjoyed it, "see you" soon', 'Thanks, we will pass this on to the design team.'];

const DATE_FROM = Date.UTC(2020, 0, 1);
const DATE_SPAN = Date.UTC(2022, 0, 1) - DATE_FROM;

export async function generate(opts: GenerateOptions): Promise<GenerateResult> {
  const scale = opts.scale ?? 1;
  if (!(scale > 0)) throw new Error('scale must be a positive number');
  const dirty = opts.dirty ?? 0;
  if (!(dirty >= 0 && dirty < 1)) throw new Error('dirty must be a fraction in [0, 1)');
  const products = Math.max(1, Math.round(FULL_SCALE_PRODUCTS * scale));
  const rand = createRandom(opts.seed ?? 1);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)];
  const int = (lo: number, hi: number) => lo + Math.floor(rand() * (hi - lo + 1));

  fs.mkdirSync(opts.out, { recursive: true });
  const file = (k: FileKey) => path.join(opts.out, FILES[k].name);
  // A dirty export also has the harmless quirks: a BOM, Windows line endings, a trailing blank line.
  const w: Record<FileKey, CsvWriter> = {
    reviews: new CsvWriter(file('reviews'), FILES.reviews.header, '\n', dirty > 0),
    photos: new CsvWriter(file('photos'), FILES.photos.header),
    characteristics: new CsvWriter(file('characteristics'), FILES.characteristics.header, dirty > 0 ? '\r\n' : '\n'),
    ratings: new CsvWriter(file('ratings'), FILES.ratings.header),
  };
  const injected: Injection[] = [];
  const inject = (k: FileKey, kind: string, record: string) => {
    injected.push({ file: FILES[k].name, line: w[k].push(record), kind });
  };
  const want = () => dirty > 0 && rand() < dirty;

  let reviewId = 0, photoId = 0, charId = 0, ratingId = 0;
  // For dirt that must point at rows already written: a photo id, another product's characteristic.
  let writtenPhotoId = 0, otherProductChar = 0;
  // Photos are not in id order in the export: emit each product's photos shuffled.
  const photoRows: [number, string][] = [];

  const text = (minWords: number, maxWords: number) => {
    const n = int(minWords, maxWords);
    const parts: string[] = [pick(OPENERS)];
    for (let i = 0; i < n; i++) parts.push(pick(WORDS));
    let s = parts.join(' ');
    const r = rand();
    if (r < 0.3) s += ', really';
    else if (r < 0.4) s += ' and it said "wow"';
    else if (r < 0.405) s += '\nSecond paragraph, after a newline.';
    return s;
  };

  for (let product = 1; product <= products; product++) {
    // Characteristics: a subset of one to six names, mean ≈ 3.35 per product.
    const nChars = pick([1, 1, 2, 2, 2, 3, 3, 3, 3, 3, 3, 4, 4, 4, 4, 4, 5, 5, 5, 6] as const);
    const start = int(0, CHARACTERISTIC_NAMES.length - 1);
    const chars: number[] = [];
    for (let i = 0; i < nChars; i++) {
      chars.push(++charId);
      w.characteristics.push(`${charId},${product},${quote(CHARACTERISTIC_NAMES[(start + i) % CHARACTERISTIC_NAMES.length])}`);
    }
    if (want()) inject('characteristics', 'duplicate_id', `${charId},${product},"Fit"`);
    if (want()) inject('characteristics', 'bad_product_id', `${++charId},-${product},"Size"`);
    if (want()) inject('characteristics', 'too_many_fields', `${++charId},${product},"Width",extra`);

    // Reviews per product: ~5 % none, most a handful, ~0.2 % hundreds (mean ≈ 5.77).
    const u = rand();
    const nReviews = u < 0.05 ? 0 : u < 0.052 ? int(100, 600) : 1 + Math.floor(-Math.log(1 - rand()) * 4.82);
    for (let i = 0; i < nReviews; i++) {
      const id = ++reviewId;
      const rating = pick([1, 2, 3, 3, 4, 4, 4, 5, 5, 5, 5, 5] as const);
      const date = DATE_FROM + Math.floor(rand() * DATE_SPAN);
      const name = pick(NAMES) + (rand() < 0.5 ? int(1, 9999) : '');
      const response = rand() < 0.1 ? quote(pick(RESPONSES)) : rand() < 0.5 ? 'null' : '';
      const helpfulness = Math.floor(-Math.log(1 - rand()) * 4);
      w.reviews.push(`${id},${product},${rating},${date},${quote(text(2, 6))},${quote(text(8, 40))},${rand() < 0.75},${rand() < 0.015},${quote(name)},${quote(`${name}@${pick(DOMAINS)}`)},${response},${helpfulness}`);

      if (rand() < 1 / 3) {
        // 1 photo 75 %, 2: 15 %, 3: 5 %, 4: 3 %, 5: 2 % (mean ≈ 1.42, as in the export)
        const x = rand();
        const nPhotos = x < 0.75 ? 1 : x < 0.9 ? 2 : x < 0.95 ? 3 : x < 0.98 ? 4 : 5;
        for (let p = 0; p < nPhotos; p++) {
          photoRows.push([++photoId, `${photoId},${id},${quote(`https://images.example.com/review_${id}_photo_${p + 1}.jpg?w=975&q=80`)}`]);
        }
      }
      for (const c of chars) {
        const v = Math.min(5, Math.max(1, rating + pick([-1, 0, 0, 0, 1] as const)));
        w.ratings.push(`${++ratingId},${c},${id},${v}`);
      }

      if (want()) {
        const kind = pick(['too_few_fields', 'too_many_fields', 'bad_rating', 'negative_helpfulness', 'bad_boolean', 'bad_date', 'non_integer', 'duplicate_id', 'broken_quoting'] as const);
        // Extra rows with fresh ids (nothing references them), or the id just written.
        const bad = kind === 'duplicate_id' ? id : ++reviewId;
        const ok = (f: Partial<Record<'rating' | 'date' | 'summary' | 'recommend' | 'helpfulness' | 'product', string>>) =>
          `${bad},${f.product ?? product},${f.rating ?? 4},${f.date ?? date},${f.summary ?? '"Fine, I guess"'},"${'Long enough body text. '.repeat(3)}",${f.recommend ?? 'true'},false,"x","x@example.com",null,${f.helpfulness ?? 0}`;
        inject('reviews', kind, {
          too_few_fields: `${bad},${product},4,${date}`,
          too_many_fields: ok({}) + ',surplus',
          bad_rating: ok({ rating: pick(['0', '7']) }),
          negative_helpfulness: ok({ helpfulness: '-3' }),
          bad_boolean: ok({ recommend: 'yes' }),
          bad_date: ok({ date: pick(['"2021-13-45"', 'yesterday']) }),
          non_integer: ok({ product: `p${product}` }),
          duplicate_id: ok({}),
          broken_quoting: ok({ summary: '"He said "hi" there"' }),
        }[kind]);
      }
      if (want()) {
        const kind = pick(['orphan_review', 'duplicate_id', 'non_integer', 'too_few_fields'] as const);
        const url = quote('https://images.example.com/extra.jpg');
        if (kind === 'duplicate_id' && writtenPhotoId > 0) inject('photos', kind, `${writtenPhotoId},${id},${url}`);
        else if (kind === 'orphan_review') inject('photos', kind, `${++photoId},${2_000_000_000 + product},${url}`);
        else if (kind === 'non_integer') inject('photos', kind, `${++photoId},r${id},${url}`);
        else inject('photos', 'too_few_fields', `${++photoId},${id}`);
      }
      if (want()) {
        const kind = pick(['bad_value', 'orphan_review', 'orphan_characteristic', 'other_product', 'duplicate_id'] as const);
        if (kind === 'duplicate_id') inject('ratings', kind, `${ratingId},${chars[0]},${id},3`);
        else if (kind === 'orphan_review') inject('ratings', kind, `${++ratingId},${chars[0]},${2_000_000_000 + product},3`);
        else if (kind === 'orphan_characteristic') inject('ratings', kind, `${++ratingId},${2_000_000_000 + product},${id},3`);
        else if (kind === 'other_product' && otherProductChar > 0) inject('ratings', kind, `${++ratingId},${otherProductChar},${id},3`);
        else inject('ratings', 'bad_value', `${++ratingId},${chars[0]},${id},${pick(['0', '9'])}`);
      }
    }
    for (let i = photoRows.length - 1; i > 0; i--) {
      const j = Math.floor(rand() * (i + 1));
      [photoRows[i], photoRows[j]] = [photoRows[j], photoRows[i]];
    }
    for (const [pid, row] of photoRows) {
      w.photos.push(row);
      writtenPhotoId = pid;
    }
    photoRows.length = 0;
    otherProductChar = chars[0];

    if (product % 2000 === 0 || product === products) {
      for (const k of Object.keys(w) as FileKey[]) if (w[k].needsFlush) await w[k].flush();
      if (product % 50_000 === 0 || product === products) opts.onProgress?.(product, products);
    }
  }
  await Promise.all([w.reviews.close(), w.photos.close(), w.characteristics.close(), w.ratings.close(dirty > 0)]);

  const rows = Object.fromEntries((Object.keys(w) as FileKey[]).map((k) => [k, w[k].rows])) as Record<FileKey, number>;
  const result: GenerateResult = { products, rows, injected };
  if (dirty > 0) {
    result.manifest = path.join(opts.out, 'dirty-manifest.csv');
    fs.writeFileSync(result.manifest, 'file,line,kind\n' + injected.map((i) => `${i.file},${i.line},${i.kind}`).join('\n') + '\n');
  }
  return result;
}

/** The benchmarks' export for a scale and seed under .data/bench/, generated on first use. */
export async function benchmarkExport(scale: number, seed: number, log: (line: string) => void): Promise<string> {
  const dir = fromRoot('.data', 'bench', `export-scale-${scale}-seed-${seed}`);
  if (fs.existsSync(path.join(dir, FILES.ratings.name))) {
    log(`reusing ${dir}`);
  } else {
    log(`generating scale ${scale} into ${dir}`);
    await generate({ out: dir, scale, seed });
  }
  return dir;
}

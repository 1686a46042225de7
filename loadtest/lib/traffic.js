// The traffic model shared by the k6 scenarios (loadtest/k6/*.js) and the Node load
// generator (src/loadtest/): which requests, in which proportions, for which products,
// at which rates, and what counts as passing. Plain ES modules: no k6 or Node APIs, so
// both runtimes (and the jest tests) import this same file.
import { createRandom } from '../../src/lib/random.js';

/** Seeded randomness for reproducible runs (k6 passes Math.random instead). */
export { createRandom };

/** Share of each kind of request. POST, helpful and report are the small write share. */
export const ENDPOINT_MIX = [
  { op: 'list', weight: 0.62 },
  { op: 'meta', weight: 0.3 },
  { op: 'post', weight: 0.03 },
  { op: 'helpful', weight: 0.04 },
  { op: 'report', weight: 0.01 },
];

export const SORTS = ['relevant', 'newest', 'helpful'];

/**
 * What shoppers' browsers send with every request: nginx gzips JSON answers of 1 KB or more
 * for them (its cache hits included), a cost a generator that sends none leaves out.
 */
export const ACCEPT_ENCODING = 'gzip, deflate, br';
/**
 * What a product page asks for: mostly the default view (first page of the relevant
 * sort), sometimes another sort, "more reviews" (page 2, 3) or a bigger page.
 */
const SORT_DRAW = ['relevant', 'relevant', 'relevant', 'relevant', 'relevant', 'relevant', 'relevant', 'newest', 'newest', 'helpful'];
const PAGES = [1, 1, 1, 1, 1, 1, 1, 1, 2, 3];
const COUNTS = [5, 5, 5, 5, 5, 5, 5, 5, 10, 20];

/** The full export's product count (ids 1..1,000,011). */
export const FULL_SCALE_PRODUCTS = 1000011;

/**
 * Scenarios: stages of constant arrival rate (requests/s) held for `duration` seconds,
 * and the service targets a run must meet (error rate, p99 latency in ms).
 */
export const SCENARIOS = {
  smoke: { stages: [{ rate: 5, duration: 10 }], thresholds: { errorRate: 0.001, p99Ms: 200 } },
  // The service's targets for the cache tier (issue 8): all requests p99 ≤ 10 ms and
  // max ≤ 100 ms, reads alone p99 ≤ 5 ms.
  load: { stages: [{ rate: 1000, duration: 180 }], thresholds: { errorRate: 0.001, p99Ms: 10, maxMs: 100, readP99Ms: 5 } },
  stress: {
    stages: [500, 1000, 2000, 4000, 8000, 16000, 32000].map((rate) => ({ rate, duration: 20 })),
    thresholds: { errorRate: 0.01, p99Ms: 250 },
    // Stop at the first stage that misses the thresholds: that stage is the breaking point.
    stopOnFailure: true,
  },
  spike: {
    stages: [{ rate: 200, duration: 20 }, { rate: 5000, duration: 10 }, { rate: 200, duration: 30 }],
    thresholds: { errorRate: 0.001, p99Ms: 250 },
  },
  soak: { stages: [{ rate: 500, duration: 3600 }], thresholds: { errorRate: 0.001, p99Ms: 50 } },
};

/** The usual worst case: ids drawn uniformly from the last 10 % (cold rows, newest products). */
export function uniformLastTenth(productCount, rand) {
  const low = Math.floor(productCount * 0.9) + 1;
  return low + Math.floor(rand() * (productCount - low + 1));
}

/**
 * Zipf(s) over 1..n by rejection-inversion (Hörmann & Derflinger), O(1) memory, so
 * popular products (low ids) get most of the traffic as on a real storefront.
 */
export function zipfSampler(n, s = 1.0) {
  const helper1 = (x) => (Math.abs(x) > 1e-8 ? Math.log1p(x) / x : 1 - x * (0.5 - x * (1 / 3 - 0.25 * x)));
  const helper2 = (x) => (Math.abs(x) > 1e-8 ? Math.expm1(x) / x : 1 + x * 0.5 * (1 + x * (1 / 3) * (1 + 0.25 * x)));
  const h = (x) => Math.exp(-s * Math.log(x));
  const hIntegral = (x) => {
    const logX = Math.log(x);
    return helper2((1 - s) * logX) * logX;
  };
  const hIntegralInverse = (x) => {
    let t = x * (1 - s);
    if (t < -1) t = -1;
    return Math.exp(helper1(t) * x);
  };
  const hIntegralX1 = hIntegral(1.5) - 1;
  const hIntegralN = hIntegral(n + 0.5);
  const sDiv = 2 - hIntegralInverse(hIntegral(2.5) - h(2));
  return (rand) => {
    for (;;) {
      const u = hIntegralN + rand() * (hIntegralX1 - hIntegralN);
      const x = hIntegralInverse(u);
      let k = Math.floor(x + 0.5);
      if (k < 1) k = 1;
      else if (k > n) k = n;
      if (k - x <= sDiv || u >= hIntegral(k + 0.5) - h(k)) return k;
    }
  };
}

export const DISTRIBUTIONS = ['uniform-last-10pct', 'zipf'];

/** A product picker for a distribution name. */
export function productPicker(distribution, productCount) {
  if (distribution === 'zipf') {
    const zipf = zipfSampler(productCount);
    return (rand) => zipf(rand);
  }
  if (distribution === 'uniform-last-10pct') return (rand) => uniformLastTenth(productCount, rand);
  throw new Error(`unknown distribution ${distribution} (use ${DISTRIBUTIONS.join(' or ')})`);
}

function pick(list, rand) {
  return list[Math.floor(rand() * list.length)];
}

function pickOp(mix, rand) {
  const total = mix.reduce((n, m) => n + m.weight, 0);
  let x = rand() * total;
  for (const m of mix) {
    x -= m.weight;
    if (x < 0) return m.op;
  }
  return mix[mix.length - 1].op;
}

const BODY = 'Bought this for a trip and wore it every day; it held up well, washed fine and still fits. ';

/**
 * The Idempotency-Keys of one run's generated reviews, in the order they are made: `runId`
 * (unique per run, so a rerun against the same database, whose seeded draws repeat, reuses no
 * key) and the review's number in the run. Not the reviewer's name: names are drawn from 1e9
 * values and two reviews of a long run share one now and then, which made the same key with
 * another body (the service's 422).
 */
export function idempotencyKeys(runId) {
  let made = 0;
  return () => `${runId}-${++made}`;
}

/** A valid POST /reviews body for a product whose characteristic ids are known. */
export function reviewBody(productId, characteristicIds, rand) {
  const characteristics = {};
  for (const id of characteristicIds) characteristics[String(id)] = 1 + Math.floor(rand() * 5);
  const n = Math.floor(rand() * 1e9);
  return {
    product_id: productId,
    rating: 1 + Math.floor(rand() * 5),
    summary: 'Load test review',
    body: BODY,
    recommend: rand() < 0.8,
    name: `loadtester${n}`,
    email: `loadtester${n}@example.com`,
    photos: rand() < 0.3 ? [`https://images.example.com/load/${n}.jpg`] : [],
    characteristics,
  };
}

/**
 * The next request of the model: { op, method, path, productId }. A 'post' needs the
 * product's characteristic ids, which callers learn from a meta response first (the
 * storefront's review form does the same): see postFlow in the k6 scripts and the Node
 * runner. `reviewIdFor(productId)` supplies an id for helpful/report.
 */
export function nextRequest(model, rand) {
  const op = pickOp(model.mix || ENDPOINT_MIX, rand);
  const productId = model.pickProduct(rand);
  switch (op) {
    case 'list':
      return { op, method: 'GET', productId, path: `/reviews?product_id=${productId}&sort=${pick(SORT_DRAW, rand)}&page=${pick(PAGES, rand)}&count=${pick(COUNTS, rand)}` };
    case 'meta':
    case 'post':
      return { op, method: op === 'post' ? 'POST' : 'GET', productId, path: op === 'post' ? '/reviews' : `/reviews/meta?product_id=${productId}` };
    default: {
      // Review ids of the generated export run roughly with product ids, ~5.8 per product.
      const reviewId = 1 + Math.floor((productId - 1) * 5.6 + rand() * 5);
      return { op, method: 'PUT', productId, path: `/reviews/${reviewId}/${op}` };
    }
  }
}

/** The characteristic ids in a meta response body (JSON text). */
export function characteristicIdsFromMeta(text) {
  const meta = JSON.parse(text);
  return Object.keys(meta.characteristics || {}).map((name) => meta.characteristics[name].id);
}

/** Whether a status counts as an error for the thresholds (404 for a missing review is not). */
export function isError(status) {
  return status === 0 || status >= 500 || status === 429;
}

// One iteration of a shopper's traffic: a request drawn from the shared model. A review
// post reads the product's meta first (as the storefront's form does) to rate its
// characteristics.
import http from 'k6/http';
import { check } from 'k6';
import { ACCEPT_ENCODING, characteristicIdsFromMeta, idempotencyKeys, nextRequest, reviewBody } from '../lib/traffic.js';

// As browsers send it (k6 decompresses what comes back compressed).
const BROWSER = { 'Accept-Encoding': ACCEPT_ENCODING };
const JSON_HEADERS = { headers: { ...BROWSER, 'Content-Type': 'application/json' } };
// Keys unique to this run and VU (k6 sets __VU before a VU's init code): a rerun against the
// same data reuses no key, and two VUs started in the same millisecond share none either.
const nextKey = idempotencyKeys(`k6${Date.now().toString(36)}${Math.floor(Math.random() * 1e6).toString(36)}v${__VU}`);
// 404 (a review id that does not exist) is an expected answer, not a failure.
http.setResponseCallback(http.expectedStatuses(200, 201, 204, 404));

export function shopper(baseUrl, pickProduct) {
  const req = nextRequest({ pickProduct }, Math.random);
  if (req.op === 'post') {
    const meta = http.get(`${baseUrl}/reviews/meta?product_id=${req.productId}`, { headers: BROWSER, tags: { name: 'meta', kind: 'read' } });
    if (!check(meta, { 'meta 200': (r) => r.status === 200 })) return;
    const body = reviewBody(req.productId, characteristicIdsFromMeta(meta.body), Math.random);
    // The key makes a retry safe; k6 does not retry, but the server records it all the same.
    const headers = { ...JSON_HEADERS.headers, 'Idempotency-Key': nextKey() };
    const res = http.post(`${baseUrl}/reviews`, JSON.stringify(body), { headers, tags: { name: 'post', kind: 'write' } });
    check(res, { 'post 201': (r) => r.status === 201 });
    return;
  }
  const kind = req.method === 'GET' ? 'read' : 'write';
  const res = http.request(req.method, `${baseUrl}${req.path}`, null, { headers: BROWSER, tags: { name: req.op, kind } });
  check(res, { [`${req.op} ok`]: (r) => r.status < 400 || r.status === 404 });
}

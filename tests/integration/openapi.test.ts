// The OpenAPI document and its docs page: served by the app, checked against what the app
// answers (the contract tests wrap their app in contractChecked), and rendered by Swagger UI
// in a real browser (headless Chromium), with a screenshot kept in test-artifacts/.
import fs from 'node:fs';
import type { AddressInfo } from 'node:net';
import request from 'supertest';
import { createApp, type App } from '../../src/app';
import { fromRoot } from '../../src/lib/paths';
import { contractChecked } from '../helpers/contract-check';
import { available, findChromium } from '../helpers/requirements';
import { createTestDatabase, type TestDatabase } from '../helpers/test-db';

let t: TestDatabase;

beforeAll(async () => {
  t = await createTestDatabase();
});

afterAll(async () => {
  await t.drop();
});

test('GET /openapi.json is an OpenAPI 3.1 document of the five storefront operations, parameters from the validation schemas', async () => {
  const res = await request(createApp(t.db, { log: () => undefined })).get('/openapi.json');
  expect(res.status).toBe(200);
  expect(res.body.openapi).toBe('3.1.0');
  const ops = Object.entries(res.body.paths as Record<string, Record<string, { tags: string[] }>>)
    .flatMap(([p, methods]) => Object.entries(methods).filter(([, op]) => op.tags.includes('reviews')).map(([m]) => `${m.toUpperCase()} ${p}`));
  expect(ops.sort()).toEqual(['GET /reviews', 'GET /reviews/meta', 'POST /reviews', 'PUT /reviews/{review_id}/helpful', 'PUT /reviews/{review_id}/report']);
  const list = res.body.paths['/reviews'].get.parameters;
  expect(list.find((p: { name: string }) => p.name === 'sort').schema).toMatchObject({ enum: ['newest', 'helpful', 'relevant'], default: 'relevant' });
  expect(res.body.paths['/reviews'].post.requestBody.content['application/json'].schema.required).toEqual(expect.arrayContaining(['product_id', 'rating', 'body', 'recommend', 'name', 'email']));
});

test('the contract check notices a response that drifts from the document', async () => {
  const drifting = ((_req, res) => {
    res.writeHead(200, { 'Content-Type': 'application/json; charset=utf-8' });
    res.end('{"product":2,"page":0,"count":5,"results":[]}');
  }) as App;
  drifting.listen = createApp(t.db).listen;
  const checked = contractChecked(drifting);
  await request(checked).get('/reviews?product_id=2');
  expect(checked.violations).toEqual([expect.stringMatching(/GET \/reviews\?product_id=2 → 200: .*product/)]);
});

const CHROMIUM = findChromium();
(available(__filename, 'the /docs page in a browser', 'chromium') ? test : test.skip)('GET /docs renders the document in a browser, offline, with the five operations', async () => {
  const server = createApp(t.db, { log: () => undefined }).listen(0, '127.0.0.1');
  await new Promise((r) => server.once('listening', r));
  const { chromium } = await import('playwright-core');
  const browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'] });
  try {
    const page = await browser.newPage({ viewport: { width: 1200, height: 1400 } });
    // Offline: anything not from this server would fail the page.
    const foreign: string[] = [];
    page.on('request', (r) => {
      if (!r.url().startsWith(`http://127.0.0.1:${(server.address() as AddressInfo).port}/`)) foreign.push(r.url());
    });
    await page.goto(`http://127.0.0.1:${(server.address() as AddressInfo).port}/docs`);
    await page.waitForSelector('.opblock-summary-path', { timeout: 20_000 });
    const ops = await page.$$eval('.opblock-tag-section', (sections) => sections
      .filter((s) => s.querySelector('.opblock-tag')?.textContent?.trim().startsWith('reviews'))
      .flatMap((s) => [...s.querySelectorAll('.opblock-summary')].map((o) => `${o.querySelector('.opblock-summary-method')?.textContent} ${o.querySelector('.opblock-summary-path')?.textContent?.replace(/\u200b/g, '')}`)));
    expect(ops.sort()).toEqual(['GET /reviews', 'GET /reviews/meta', 'POST /reviews', 'PUT /reviews/{review_id}/helpful', 'PUT /reviews/{review_id}/report']);
    expect(foreign).toEqual([]);
    fs.mkdirSync(fromRoot('test-artifacts'), { recursive: true });
    await page.screenshot({ path: fromRoot('test-artifacts', 'docs.png'), fullPage: false });
  } finally {
    await browser.close();
    server.close();
  }
}, 60_000);

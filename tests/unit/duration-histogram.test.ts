// The request-duration histogram (src/http/duration-histogram.ts) writes exactly what
// prom-client's own Histogram writes for the same observations: the exposition text of both,
// for random label sets and durations (bucket edges included), is compared line for line.
import fc from 'fast-check';
import client from 'prom-client';
import { DurationHistogram } from '../../src/http/duration-histogram';

const BOUNDS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10];

test('the same exposition as prom-client for the same observations', async () => {
  const observation = fc.record({
    route: fc.constantFrom('/reviews', '/reviews/meta', 'unmatched'),
    method: fc.constantFrom('GET', 'POST', 'PUT'),
    status: fc.constantFrom(200, 201, 304, 404, 503, 'aborted'),
    seconds: fc.oneof(fc.constantFrom(...BOUNDS, 0, 20), fc.double({ min: 0, max: 20, noNaN: true })),
  });
  await fc.assert(fc.asyncProperty(fc.array(observation, { maxLength: 60 }), async (observations) => {
    const ours = new client.Registry();
    const theirs = new client.Registry();
    const mine = new DurationHistogram('d_seconds', 'help text', BOUNDS, ours);
    const reference = new client.Histogram({ name: 'd_seconds', help: 'help text', labelNames: ['route', 'method', 'status'], buckets: BOUNDS, registers: [theirs] });
    for (const o of observations) {
      mine.series(o.route, o.method, o.status).observe(o.seconds);
      reference.labels(o.route, o.method, String(o.status)).observe(o.seconds);
    }
    const sorted = (text: string) => text.split('\n').sort();
    expect(sorted(await ours.metrics())).toEqual(sorted(await theirs.metrics()));
  }), { numRuns: 200 });
});

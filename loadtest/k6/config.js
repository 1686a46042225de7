// k6 options for each scenario, built from the shared model's stages and thresholds.
// Environment: BASE_URL (required), PRODUCTS (default: the full export's 1,000,011),
// DISTRIBUTION (zipf | uniform-last-10pct, default zipf), RATE and DURATION (seconds)
// override a single-stage scenario.
import { FULL_SCALE_PRODUCTS, SCENARIOS, productPicker } from '../lib/traffic.js';

export function settings(name) {
  const scenario = SCENARIOS[name];
  const baseUrl = __ENV.BASE_URL;
  if (!baseUrl) throw new Error('set BASE_URL, e.g. k6 run -e BASE_URL=http://127.0.0.1:8080 loadtest/k6/load.js');
  const stages = scenario.stages.map((s) => ({
    rate: __ENV.RATE ? Number(__ENV.RATE) : s.rate,
    duration: __ENV.DURATION ? Number(__ENV.DURATION) : s.duration,
  }));
  const peak = Math.max(...stages.map((s) => s.rate));
  // Hold each stage's rate: a 1 s ramp to it, then the stage's duration at it.
  const k6Stages = [];
  for (const s of stages) k6Stages.push({ target: s.rate, duration: '1s' }, { target: s.rate, duration: `${s.duration}s` });
  const options = {
    scenarios: {
      [name]: {
        executor: 'ramping-arrival-rate',
        startRate: stages[0].rate,
        timeUnit: '1s',
        preAllocatedVUs: Math.min(200, Math.max(10, Math.ceil(peak / 50))),
        maxVUs: Math.max(50, Math.ceil(peak / 5)),
        stages: k6Stages,
      },
    },
    // The service's targets: a run that misses them fails (and stress stops there).
    thresholds: {
      http_req_failed: [{ threshold: `rate<${scenario.thresholds.errorRate}`, abortOnFail: !!scenario.stopOnFailure }],
      http_req_duration: [
        { threshold: `p(99)<${scenario.thresholds.p99Ms}`, abortOnFail: !!scenario.stopOnFailure },
        ...(scenario.thresholds.maxMs ? [{ threshold: `max<${scenario.thresholds.maxMs}` }] : []),
      ],
      // Reads alone (requests tagged kind=read by flow.js).
      ...(scenario.thresholds.readP99Ms ? { 'http_req_duration{kind:read}': [{ threshold: `p(99)<${scenario.thresholds.readP99Ms}` }] } : {}),
    },
    summaryTrendStats: ['avg', 'p(50)', 'p(90)', 'p(99)', 'max'],
  };
  const products = Number(__ENV.PRODUCTS || FULL_SCALE_PRODUCTS);
  return { options, baseUrl, pickProduct: productPicker(__ENV.DISTRIBUTION || 'zipf', products) };
}

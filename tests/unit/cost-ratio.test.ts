// The knee's cost ratio (bench/api-bench.ts: costRatios), beside the floor's.
import { costRatios } from '../../bench/api-bench';

const low = { cluster: { host: 330, postgres: 120, nginx: 130, generator: 110 }, floor: { serverUsPerRequest: 45, generatorUsPerRequest: 85 } };
const knee = { cluster: { host: 175, postgres: 105, nginx: 80, generator: 60 }, floor: { serverUsPerRequest: 20, generatorUsPerRequest: 35 } };

test('the box counts every group, the service every group but the generator, the floor its server and generator', () => {
  const r = costRatios(low, knee);
  expect(r.box).toBeCloseTo(690 / 420, 6);
  expect(r.service).toBeCloseTo(580 / 360, 6);
  expect(r.floor).toBeCloseTo(130 / 55, 6);
  expect(r.floorServer).toBeCloseTo(45 / 20, 6);
});

test('a step with no CPU measured gives no ratio, not Infinity', () => {
  const none = { cluster: {}, floor: { serverUsPerRequest: 0, generatorUsPerRequest: 0 } };
  const r = costRatios(low, none);
  expect([r.box, r.service, r.floor, r.floorServer].every(Number.isNaN)).toBe(true);
});

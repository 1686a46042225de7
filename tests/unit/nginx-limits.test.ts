// The per-client limits' bursts as nginx.conf renders them (src/cluster/nginx-config.ts):
// the production defaults unchanged, a raised rate's burst growing with it, per second
// whatever the rate's unit. Real nginx enforces them in tests/system/nginx-hardening.test.ts.
import { limitBurst, renderNginx } from '../../src/cluster/nginx-config';

/** The bursts of `zone`'s limit_req lines; every limit_req line must have been read. */
const bursts = (conf: string, zone: string) => {
  const all = [...conf.matchAll(/^\s*limit_req\s+zone=(\w+)\s+burst=(\d+)[^;]*;/gm)];
  expect(all).toHaveLength(conf.match(/^\s*limit_req\s/gm)!.length);
  return all.filter((m) => m[1] === zone).map((m) => Number(m[2]));
};

test('the defaults: 20 writes and 400 reads above 10 writes/s and 200 reads/s, in every limited location', () => {
  const conf = renderNginx({ prefix: '/tmp/x', listen: '8080', upstreams: ['10.0.0.1:3000'] })['nginx.conf'];
  expect(bursts(conf, 'writes').length).toBeGreaterThanOrEqual(10);
  expect(new Set(bursts(conf, 'writes'))).toEqual(new Set([20]));
  expect(bursts(conf, 'reads').length).toBeGreaterThanOrEqual(9);
  expect(new Set(bursts(conf, 'reads'))).toEqual(new Set([400]));
});

test('a raised rate (a load generator standing for many clients) gets two seconds of it as its burst', () => {
  const conf = renderNginx({ prefix: '/tmp/x', listen: '8080', upstreams: ['10.0.0.1:3000'], writeRate: '1000000r/s', readRate: '1000000r/s' })['nginx.conf'];
  expect(new Set(bursts(conf, 'writes'))).toEqual(new Set([2_000_000]));
  expect(new Set(bursts(conf, 'reads'))).toEqual(new Set([2_000_000]));
});

test('per minute rates count per second: a tighter or equal limit never gets a looser burst', () => {
  expect(limitBurst('30r/m')).toBe(20);
  expect(limitBurst('600r/m')).toBe(20);
  expect(limitBurst('12000r/m')).toBe(400);
  expect(limitBurst('10r/s')).toBe(20);
  expect(limitBurst('15r/s')).toBe(30);
  expect(() => limitBurst('10 per second')).toThrow(/not like 10r\/s/);
});

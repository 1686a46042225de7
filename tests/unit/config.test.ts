// Configuration is validated once, with one line per bad variable.
import { ConfigError, loadConfig, workerSettings } from '../../src/config';
import { metaMemorySettings, reviewMemorySettings } from '../../src/server';
import fs from 'node:fs';
import type { IncomingMessage } from 'node:http';
import { clientAddress, TrustedProxies } from '../../src/lib/client-address';
import { fromRoot } from '../../src/lib/paths';

test('defaults apply when nothing is set', () => {
  const c = loadConfig({});
  expect(c).toMatchObject({ PORT: 3000, PG_POOL_SIZE: 4, PG_STATEMENT_TIMEOUT_MS: 5000, LOG_FORMAT: 'dev', COMPRESSION: false });
  expect(c.DATABASE_URL).toBeUndefined();
});

test('values are parsed from strings', () => {
  const c = loadConfig({ PORT: '8080', COMPRESSION: 'on', LOG_FORMAT: 'off', DATABASE_URL: 'postgres://a:b@h/db', PG_POOL_SIZE: '20' });
  expect(c).toMatchObject({ PORT: 8080, COMPRESSION: true, LOG_FORMAT: 'off', DATABASE_URL: 'postgres://a:b@h/db', PG_POOL_SIZE: 20 });
});

test('every bad value is named with what it got', () => {
  let message = '';
  try {
    loadConfig({ PORT: 'eighty', PG_POOL_SIZE: '0', LOG_FORMAT: 'loud', DATABASE_URL: 'mysql://x', COMPRESSION: 'maybe' });
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    message = (err as Error).message;
  }
  for (const name of ['PORT', 'PG_POOL_SIZE', 'LOG_FORMAT', 'DATABASE_URL', 'COMPRESSION']) expect(message).toContain(name);
  expect(message).toContain('"eighty"');
});

describe('TRUSTED_PROXIES', () => {
  const req = (peer: string, xff?: string) => ({ socket: { remoteAddress: peer }, headers: xff ? { 'x-forwarded-for': xff } : {} }) as unknown as IncomingMessage;

  test('addresses and CIDR ranges, IPv4-mapped peers included; anything else is a configuration error naming the variable', () => {
    const trust = new TrustedProxies(loadConfig({ TRUSTED_PROXIES: '10.1.0.0/24, 192.0.2.7,::1' }).TRUSTED_PROXIES);
    expect(clientAddress(req('10.1.0.200', '203.0.113.5'), trust)).toBe('203.0.113.5');
    expect(clientAddress(req('::ffff:192.0.2.7', '203.0.113.6'), trust)).toBe('203.0.113.6');
    expect(clientAddress(req('10.1.1.1', '203.0.113.7'), trust)).toBe('10.1.1.1');
    expect(() => loadConfig({ TRUSTED_PROXIES: 'nginx.internal' })).toThrow(/TRUSTED_PROXIES/);
    expect(() => loadConfig({ TRUSTED_PROXIES: '10.0.0.0/33' })).toThrow(/TRUSTED_PROXIES/);
    // An IPv4-mapped range shorter than /96 would trust every IPv4 peer (found by review).
    expect(() => loadConfig({ TRUSTED_PROXIES: '::ffff:10.0.0.0/8' })).toThrow(/TRUSTED_PROXIES/);
    const mapped = new TrustedProxies(loadConfig({ TRUSTED_PROXIES: '::ffff:10.2.0.0/112' }).TRUSTED_PROXIES);
    expect(clientAddress(req('10.2.0.9', '203.0.113.8'), mapped)).toBe('203.0.113.8');
    expect(clientAddress(req('10.3.0.9', '203.0.113.8'), mapped)).toBe('10.3.0.9');
  });

  test('X-Forwarded-For from an untrusted peer that is not loopback is said once in the log (a missing nginx address), loopback never', () => {
    const lines: string[] = [];
    const trust = new TrustedProxies(loadConfig({}).TRUSTED_PROXIES, (l) => lines.push(l));
    expect(clientAddress(req('127.0.0.1', '203.0.113.5'), trust)).toBe('203.0.113.5');
    expect(clientAddress(req('::ffff:127.0.0.2', '203.0.113.5'), trust)).toBe('::ffff:127.0.0.2');
    expect(clientAddress(req('10.0.0.9'), trust)).toBe('10.0.0.9');
    // A connection already closed names no peer: not a proxy missing from the list.
    expect(clientAddress(req(undefined as unknown as string, '203.0.113.5'), trust)).toBe('');
    expect(lines).toEqual([]);
    for (let i = 0; i < 3; i++) expect(clientAddress(req('10.0.0.9', `203.0.113.${i}`), trust)).toBe('10.0.0.9');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/X-Forwarded-For from 10\.0\.0\.9, which is not in TRUSTED_PROXIES.*add it to TRUSTED_PROXIES/);
  });

  test('the production example trusts an nginx on another address, so the budget is per shopper behind it', () => {
    const example = fs.readFileSync(fromRoot('deploy', 'atelier-reviews.env.example'), 'utf8');
    const env = Object.fromEntries(example.split('\n').filter((l) => /^[A-Z_]+=/.test(l)).map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]));
    const trust = new TrustedProxies(loadConfig(env).TRUSTED_PROXIES);
    // The runbook's nginx machine (docs/operations.md) sends X-Forwarded-For from its own address.
    expect(clientAddress(req('10.0.0.10', '198.51.100.23'), trust)).toBe('198.51.100.23');
  });
});

test('both memory tables sweep quiet dirty products after 30 s by default (META_MEMORY_READ_BACK_AFTER_S, REVIEW_MEMORY_READ_BACK_AFTER_S); 0 turns it off', () => {
  expect(metaMemorySettings(loadConfig({}))).toMatchObject({ sweepAfterMs: 30_000, readBack: true, maxAgeMs: 3_600_000 });
  expect(reviewMemorySettings(loadConfig({}))).toMatchObject({ sweepAfterMs: 30_000, refreshMaxReviews: 64 });
  expect(metaMemorySettings(loadConfig({ META_MEMORY_READ_BACK_AFTER_S: '0' })).sweepAfterMs).toBe(0);
  expect(metaMemorySettings(loadConfig({ META_MEMORY_READ_BACK_AFTER_S: '5' })).sweepAfterMs).toBe(5000);
  expect(() => loadConfig({ META_MEMORY_READ_BACK_AFTER_S: '-1' })).toThrow(/META_MEMORY_READ_BACK_AFTER_S/);
});

test("REVIEW_MEMORY_MB bounds the host: each worker is told an equal share of it", () => {
  expect(workerSettings(loadConfig({}), 1)).toEqual({ WORKERS: '1', REVIEW_MEMORY_MB: '4096' });
  expect(workerSettings(loadConfig({ REVIEW_MEMORY_MB: '3000' }), 4)).toEqual({ WORKERS: '1', REVIEW_MEMORY_MB: '750' });
  expect(workerSettings(loadConfig({ REVIEW_MEMORY_MB: '0' }), 2).REVIEW_MEMORY_MB).toBe('0');
});

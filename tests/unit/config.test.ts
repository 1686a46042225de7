// Configuration is validated once, with one line per bad variable.
import { ConfigError, loadConfig } from '../../src/config';

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

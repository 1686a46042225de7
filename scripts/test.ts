// npm test [-- JEST_ARGS…]: the README's test command (and .ci/run's). Installs the system
// packages the suites need when it can, runs every tier, and closes with one summary of
// what was skipped and how to enable it (tests/helpers/test-runner.ts).
import { runTests } from '../tests/helpers/test-runner';

const args = process.argv.slice(2);
if (args.includes('--help')) {
  console.log([
    'usage: npm test [-- JEST_ARGS…]',
    '',
    'Runs the whole suite against a real PostgreSQL (embedded, or TEST_DATABASE_URL/DATABASE_URL).',
    'As root with apt-get it first installs what the suites need (nginx, chromium, systemd, openssl, iproute2, prometheus,',
    'patroni, etcd-server, postgresql-15), without starting their services;',
    'anything still missing is skipped and listed at the end with the command that enables it.',
    '',
    'environment: ATELIER_TEST_INSTALL=0 (install nothing), NGINX_BIN, CHROMIUM_BIN, TEST_DATABASE_URL',
    'examples: npm test -- tests/etl.test.ts     npm test -- -t "idempotency"',
  ].join('\n'));
  process.exit(0);
}
process.exitCode = runTests(args);

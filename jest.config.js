// Three tiers (jest projects), all run by `npm test`:
//   unit         no PostgreSQL, no build: pure modules (seconds; `npm run test:unit`);
//   integration  the app in-process against a real PostgreSQL: embedded (started once in
//                globalSetup) unless TEST_DATABASE_URL or DATABASE_URL names a server;
//   system       real processes: nginx, hosts, browsers, network namespaces, the CLIs.
// Each test file that needs PostgreSQL gets its own database, cloned from a migrated template.
const transform = { '^.+\\.[tj]s$': ['ts-jest', { tsconfig: { allowJs: true, esModuleInterop: true, isolatedModules: true } }] };
const tier = (name, withDatabase) => ({
  displayName: name,
  testEnvironment: 'node',
  roots: [`<rootDir>/tests/${name}`],
  testMatch: ['**/*.test.ts'],
  transform,
  transformIgnorePatterns: ['/node_modules/'],
  ...(withDatabase ? { globalSetup: '<rootDir>/tests/helpers/global-setup.ts', globalTeardown: '<rootDir>/tests/helpers/global-teardown.ts' } : {}),
});

/** @type {import('jest').Config} */
module.exports = {
  projects: [tier('unit', false), tier('integration', true), tier('system', true)],
  testTimeout: 60000,
  maxWorkers: 2,
};

// `npm test` on a machine that lacks optional tools: it still passes, and its closing summary
// names every skipped suite, why, and the command that enables it. And a crashed run's
// embedded PostgreSQL does not outlive the next run's start.
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { freePort } from '../../src/cluster/processes';
import { processAlive } from '../../src/lib/processes';
import { fromRoot } from '../../src/lib/paths';
import { cleanTestLeftovers } from '../helpers/leftovers';
import { summarise, summaryLines } from '../helpers/test-runner';

test('with nginx hidden from PATH, npm test exits 0 and its summary names the nginx suites and the install command', () => {
  const hidden = (process.env.PATH ?? '').split(':').filter((d) => d && !fs.existsSync(path.join(d, 'nginx')));
  const env: NodeJS.ProcessEnv = { ...process.env, PATH: hidden.join(':'), ATELIER_TEST_INSTALL: '0' };
  delete env.NGINX_BIN;
  const r = spawnSync(process.execPath, [fromRoot('dist', 'scripts', 'test.js'), 'tests/system/nginx-cluster.test.ts', 'tests/system/rolling-restart.test.ts'], {
    cwd: fromRoot(), env, encoding: 'utf8', timeout: 120_000,
  });
  const out = `${r.stdout}`;
  expect({ status: r.status, tail: out.slice(-3000) }).toMatchObject({ status: 0 });
  expect(out).toMatch(/needs nginx: nginx .*not on PATH/);
  expect(out).toContain('- the nginx cluster tests (tests/system/nginx-cluster.test.ts)');
  expect(out).toContain('- the rolling restart tests (tests/system/rolling-restart.test.ts)');
  expect(out).toContain('to enable: apt-get install nginx');
  const counts = /^test: (\d+) passed, (\d+) failed, (\d+) skipped$/m.exec(out);
  expect(counts).not.toBeNull();
  expect(Number(counts![2])).toBe(0);
  expect(Number(counts![3])).toBeGreaterThan(10);
}, 150_000);

test('a skipped test with no recorded reason is listed as a defect', () => {
  const file = fromRoot('tests', 'unit', 'x.test.ts');
  const s = summarise({
    numPassedTests: 1, numFailedTests: 0, numPendingTests: 2, numTodoTests: 0,
    testResults: [
      { name: file, assertionResults: [{ status: 'passed', fullName: 'a' }, { status: 'pending', fullName: 'quietly skipped' }] },
      { name: fromRoot('tests', 'unit', 'y.test.ts'), assertionResults: [{ status: 'pending', fullName: 'explained' }] },
    ],
  }, [{ file: 'tests/unit/y.test.ts', suite: 'y', need: 'nginx', reason: 'nginx is not on PATH', enable: 'apt-get install nginx' }]);
  expect(s.unexplained).toEqual(['tests/unit/x.test.ts: quietly skipped']);
  expect(summaryLines(s).join('\n')).toMatch(/without a recorded reason[\s\S]*quietly skipped[\s\S]*test: 1 passed, 0 failed, 2 skipped$/);
});

test("a crashed run's embedded PostgreSQL in .data/test-pg/<pid> is stopped and removed by the next run", async () => {
  // A child that starts a server in its own folder, then dies by SIGKILL (no clean-up runs).
  const child = spawn(process.execPath, ['-e', `
    const { startEmbeddedPostgres } = require(${JSON.stringify(fromRoot('dist', 'src', 'db', 'embedded-postgres.js'))});
    startEmbeddedPostgres({ dir: '.data/test-pg/' + process.pid, port: Number(process.argv[1]), ephemeral: true })
      .then(() => console.log('ready'), (e) => { console.error(e); process.exit(1); });
    setInterval(() => {}, 1000);
  `, String(await freePort())], { cwd: fromRoot(), stdio: ['ignore', 'pipe', 'inherit'] });
  await new Promise<void>((resolve, reject) => {
    child.stdout!.on('data', (d) => String(d).includes('ready') && resolve());
    child.once('exit', (code) => reject(new Error(`the child exited (${code}) before its server was ready`)));
  });
  const dir = fromRoot('.data', 'test-pg', String(child.pid));
  const server = Number(fs.readFileSync(path.join(dir, 'postmaster.pid'), 'utf8').split('\n')[0]);
  child.kill('SIGKILL');
  await new Promise((r) => child.once('exit', r));
  expect(processAlive(server)).toBe(true);

  const removed = await cleanTestLeftovers();
  expect(removed).toContain(dir);
  expect(fs.existsSync(dir)).toBe(false);
  expect(processAlive(server)).toBe(false);
}, 60_000);

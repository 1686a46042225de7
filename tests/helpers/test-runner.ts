// What `npm test` does around jest (scripts/test.ts is its entry point):
//   1. set-up: as root with apt-get, installs the Debian packages the suites need that are
//      missing (once; nothing when they are there); otherwise says it could not;
//   2. runs jest (all tiers, or the arguments given), recording each suite that skips and why;
//   3. prints one closing summary: every skipped suite with its reason and the command that
//      enables it, then a line `test: N passed, N failed, N skipped`.
// It exits non-zero when a test failed, or when a test was skipped without saying why.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { projectRoot } from '../../src/lib/paths';
import { missingPackages, type SkipRecord } from './requirements';

const say = (l: string) => console.log(`[test] ${l}`);

/** Installs what the suites need, when this machine lets us; returns what stays missing. */
export function installSystemPackages(): string[] {
  const missing = missingPackages();
  if (!missing.length) return [];
  if (process.env.ATELIER_TEST_INSTALL === '0') {
    say(`not installing ${missing.join(' ')} (ATELIER_TEST_INSTALL=0)`);
    return missing;
  }
  const hasApt = spawnSync('sh', ['-c', 'command -v apt-get']).status === 0;
  if (process.getuid?.() !== 0 || !hasApt) {
    say(`cannot install ${missing.join(' ')} (${hasApt ? 'not root' : 'no apt-get'}): the suites that need them are skipped`);
    return missing;
  }
  say(`installing ${missing.join(' ')} with apt-get (once: nothing is installed when they are there)`);
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  const update = spawnSync('apt-get', ['update', '-qq'], { stdio: ['ignore', 'ignore', 'inherit'], env });
  // Installed for the tests, not as services: a policy-rc.d that refuses every start keeps
  // the packages' own servers (nginx on :80, a PostgreSQL cluster, etcd) from starting.
  const policy = '/usr/sbin/policy-rc.d';
  const ownPolicy = !fs.existsSync(policy);
  if (ownPolicy) fs.writeFileSync(policy, '#!/bin/sh\n# written by the atelier-reviews test runner for its apt-get install; removed after\nexit 101\n', { mode: 0o755 });
  let install;
  try {
    install = update.status === 0
      ? spawnSync('apt-get', ['install', '-y', '-qq', '--no-install-recommends', ...missing], { stdio: ['ignore', 'ignore', 'inherit'], env })
      : update;
  } finally {
    if (ownPolicy) fs.rmSync(policy, { force: true });
  }
  if (install.status !== 0) say(`apt-get failed (offline?): the suites that need ${missing.join(' ')} are skipped`);
  return missingPackages();
}

interface JestResult {
  numPassedTests: number;
  numFailedTests: number;
  numPendingTests: number;
  numTodoTests: number;
  testResults: { name: string; assertionResults: { status: string; fullName: string }[] }[];
}

export interface Summary {
  passed: number;
  failed: number;
  skipped: number;
  skips: SkipRecord[];
  /** Skipped tests in files that recorded no reason. */
  unexplained: string[];
}

export function summarise(result: JestResult, skips: SkipRecord[], filtered = false): Summary {
  const explained = new Set(skips.map((s) => s.file));
  // With -t (a name filter) jest reports the tests it left out as skipped: not a defect.
  const unexplained = filtered ? [] : result.testResults
    .filter((f) => !explained.has(path.relative(projectRoot, f.name)))
    .flatMap((f) => f.assertionResults.filter((a) => a.status === 'pending' || a.status === 'todo').map((a) => `${path.relative(projectRoot, f.name)}: ${a.fullName}`));
  return { passed: result.numPassedTests, failed: result.numFailedTests, skipped: result.numPendingTests + result.numTodoTests, skips, unexplained };
}

export function summaryLines(s: Summary): string[] {
  const lines: string[] = [];
  if (s.skips.length) {
    lines.push('', 'Skipped suites (each still passes when its tool is installed):');
    const byNeed = new Map<string, SkipRecord[]>();
    for (const r of s.skips) byNeed.set(r.need, [...(byNeed.get(r.need) ?? []), r]);
    for (const [need, records] of byNeed) {
      lines.push(`  needs ${need}: ${records[0].reason}`);
      for (const r of records) lines.push(`    - ${r.suite} (${r.file})`);
      lines.push(`    to enable: ${records[0].enable}`);
    }
  }
  if (s.unexplained.length) lines.push('', 'Skipped without a recorded reason (a defect: use tests/helpers/requirements.ts):', ...s.unexplained.map((u) => `  - ${u}`));
  lines.push('', `test: ${s.passed} passed, ${s.failed} failed, ${s.skipped} skipped`);
  return lines;
}

/** Runs jest with `args`; returns the exit code for `npm test`. */
export function runTests(args: string[]): number {
  installSystemPackages();
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'atelier-test-'));
  const skipsFile = path.join(work, 'skips.jsonl');
  const resultsFile = path.join(work, 'results.json');
  fs.writeFileSync(skipsFile, '');
  try {
    const jest = spawnSync(process.execPath, [require.resolve('jest/bin/jest'), '--ci', '--json', `--outputFile=${resultsFile}`, ...args], {
      cwd: projectRoot,
      stdio: 'inherit',
      env: { ...process.env, ATELIER_TEST_SKIPS: skipsFile, ATELIER_TEST_BUILT: '1' },
    });
    if (!fs.existsSync(resultsFile)) {
      say(`jest wrote no results (exit ${jest.status ?? jest.signal})`);
      return jest.status || 1;
    }
    const records = fs.readFileSync(skipsFile, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l) as SkipRecord);
    // A file loads in more than one worker at most once per run; keep one line per suite.
    const unique = [...new Map(records.map((r) => [`${r.file}\0${r.suite}\0${r.need}`, r])).values()];
    const filtered = args.some((a) => a === '-t' || a.startsWith('--testNamePattern') || a.startsWith('-t='));
    const summary = summarise(JSON.parse(fs.readFileSync(resultsFile, 'utf8')) as JestResult, unique, filtered);
    console.log(summaryLines(summary).join('\n'));
    if (summary.unexplained.length) return 1;
    return jest.status ?? 1;
  } finally {
    fs.rmSync(work, { recursive: true, force: true });
  }
}

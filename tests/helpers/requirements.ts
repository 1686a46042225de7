// The system tools some suites need, in one place: how to tell each is here, which Debian
// package brings it, and what a person types to enable it. The test runner (scripts/test.ts)
// installs the missing packages first when it can (root with apt-get); a suite whose tool is
// still missing is skipped and records why, and the runner prints every such skip in one
// closing summary, so nothing is ever skipped silently.
import fs from 'node:fs';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { isolationSupport } from '../../src/cluster/host-isolation';
import { findNginx } from '../../src/cluster/nginx-config';
import { projectRoot } from '../../src/lib/paths';

export type Need = 'nginx' | 'chromium' | 'systemd-analyze' | 'openssl' | 'host-isolation' | 'prometheus' | 'patroni';

const onPath = (cmd: string) => spawnSync('sh', ['-c', `command -v ${cmd}`]).status === 0;

/** Chromium for the browser suites: CHROMIUM_BIN, or Debian's package on PATH. */
export function findChromium(): string | undefined {
  if (process.env.CHROMIUM_BIN) return fs.existsSync(process.env.CHROMIUM_BIN) ? process.env.CHROMIUM_BIN : undefined;
  for (const name of ['chromium', 'chromium-browser']) {
    const dir = (process.env.PATH ?? '').split(':').find((d) => d && fs.existsSync(path.join(d, name)));
    if (dir) return path.join(dir, name);
  }
  return undefined;
}

/** The newest /usr/lib/postgresql/N/bin with a server, initdb and pg_basebackup (Debian's layout). */
export function findPostgresBinDir(): string | undefined {
  const root = '/usr/lib/postgresql';
  if (!fs.existsSync(root)) return undefined;
  return fs.readdirSync(root).filter((v) => /^\d+$/.test(v)).sort((a, b) => Number(b) - Number(a))
    .map((v) => path.join(root, v, 'bin'))
    .find((bin) => ['postgres', 'initdb', 'pg_basebackup', 'pg_rewind'].every((b) => fs.existsSync(path.join(bin, b))));
}

interface Requirement {
  /** Debian packages that bring it (host isolation needs root too, which no package brings). */
  packages: string[];
  /** Why it is not usable here, or undefined when it is. */
  missing(): string | undefined;
  /** What to do to enable the suites that need it. */
  enable: string;
}

export const REQUIREMENTS: Record<Need, Requirement> = {
  nginx: {
    packages: ['nginx'],
    missing: () => (findNginx() ? undefined
      : fs.existsSync('/usr/sbin/nginx') ? 'nginx is at /usr/sbin/nginx but /usr/sbin is not on PATH (NGINX_BIN=/usr/sbin/nginx)'
      : 'nginx is not on PATH (nor NGINX_BIN)'),
    enable: 'apt-get install nginx (as root), or NGINX_BIN=/path/to/nginx npm test',
  },
  chromium: {
    packages: ['chromium'],
    missing: () => (findChromium() ? undefined : 'chromium is not on PATH (nor CHROMIUM_BIN)'),
    enable: 'apt-get install chromium (as root), or CHROMIUM_BIN=/path/to/chromium npm test',
  },
  'systemd-analyze': {
    packages: ['systemd'],
    missing: () => (onPath('systemd-analyze') ? undefined : 'systemd-analyze is not on PATH'),
    enable: 'apt-get install systemd (as root)',
  },
  openssl: {
    packages: ['openssl'],
    missing: () => (onPath('openssl') ? undefined : 'openssl is not on PATH'),
    enable: 'apt-get install openssl (as root)',
  },
  prometheus: {
    packages: ['prometheus'],
    missing: () => (onPath('promtool') && onPath('prometheus') ? undefined : 'prometheus and promtool are not on PATH'),
    enable: 'apt-get install prometheus (as root)',
  },
  // Patroni over two PostgreSQL nodes with etcd (Debian's packages; the bundled embedded
  // server has no pg_basebackup, which Patroni needs to make a standby).
  patroni: {
    packages: ['patroni', 'etcd-server', 'postgresql-15'],
    missing: () => {
      const gone = ['patroni', 'etcd'].filter((c) => !onPath(c));
      if (!findPostgresBinDir()) gone.push('PostgreSQL server binaries with pg_basebackup (/usr/lib/postgresql/N/bin)');
      return gone.length ? `not found: ${gone.join(', ')}` : undefined;
    },
    enable: 'apt-get install patroni etcd-server postgresql-15 (as root)',
  },
  'host-isolation': {
    packages: onPath('ip') ? [] : ['iproute2'],
    missing: () => {
      const s = isolationSupport();
      return s.ok ? undefined : s.missing.filter((m) => !m.startsWith('run without')).join('; ');
    },
    enable: 'run npm test as root on Linux with iproute2 (apt-get install iproute2) and a cgroup cpu controller',
  },
};

/** Debian packages for the needs that are missing now. */
export function missingPackages(): string[] {
  return [...new Set(Object.values(REQUIREMENTS).filter((r) => r.missing()).flatMap((r) => r.packages))];
}

export interface SkipRecord {
  file: string;
  suite: string;
  need: Need;
  reason: string;
  enable: string;
}

/**
 * In a test file, at load: true when every need is met. Otherwise records the skip (for the
 * runner's closing summary, through ATELIER_TEST_SKIPS) and returns false, so the file
 * writes `(available(...) ? describe : describe.skip)(...)`.
 */
export function available(testFile: string, suite: string, ...needs: Need[]): boolean {
  let ok = true;
  for (const need of needs) {
    const reason = REQUIREMENTS[need].missing();
    if (!reason) continue;
    ok = false;
    const record: SkipRecord = { file: path.relative(projectRoot, testFile), suite, need, reason, enable: REQUIREMENTS[need].enable };
    if (process.env.ATELIER_TEST_SKIPS) fs.appendFileSync(process.env.ATELIER_TEST_SKIPS, `${JSON.stringify(record)}\n`);
    else console.log(`skipping ${suite}: ${reason} (to enable: ${record.enable})`);
  }
  return ok;
}

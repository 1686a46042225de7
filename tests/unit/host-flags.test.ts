// Every way a host is started passes the same V8 heap flags (src/cluster/host.ts): npm start,
// the systemd unit, and the launcher behind the cluster, benchmarks and tests; and this Node
// accepts them (a misspelt flag would stop every host at start).
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import { DEPLOYED_HOST_ENV } from '../../bench/api-bench';
import { HOST_NODE_FLAGS, hostArgv } from '../../src/cluster/host';
import { loadConfig } from '../../src/config';
import { fromRoot } from '../../src/lib/paths';

const words = (commandLine: string) => commandLine.trim().split(/\s+/);

describe('host V8 flags', () => {
  it('are accepted by this Node', () => {
    expect(HOST_NODE_FLAGS.length).toBeGreaterThan(0);
    const run = spawnSync(process.execPath, [...HOST_NODE_FLAGS, '-e', '0'], { encoding: 'utf8' });
    expect(run.stderr).toBe('');
    expect(run.status).toBe(0);
  });

  it('the launcher (cluster, benchmarks, tests) runs the server with them', () => {
    expect(hostArgv()).toEqual([process.execPath, ...HOST_NODE_FLAGS, fromRoot('dist', 'src', 'server.js')]);
  });

  it('npm start runs the server with them', () => {
    const start = JSON.parse(fs.readFileSync(fromRoot('package.json'), 'utf8')).scripts.start as string;
    expect(words(start)).toEqual(['node', ...HOST_NODE_FLAGS, 'dist/src/server.js']);
  });

  it('the systemd unit runs the server with them', () => {
    const unit = fs.readFileSync(fromRoot('deploy', 'systemd', 'atelier-reviews.service'), 'utf8');
    const execStart = /^ExecStart=(.*)$/m.exec(unit)?.[1] ?? '';
    expect(words(execStart)).toEqual(['/usr/bin/node', ...HOST_NODE_FLAGS, '/opt/atelier-reviews/dist/src/server.js']);
  });
});

// The benchmarks measure the service as deployed: a benchmark host's settings (the config's
// defaults under the bench's DEPLOYED_HOST_ENV) agree with the deployed example on every
// setting that is not about where the host runs (its database, address, neighbours, drain).
describe('benchmark hosts', () => {
  const PLACE = new Set(['DATABASE_URL', 'MIGRATE_ON_START', 'PORT', 'HOST', 'TRUSTED_PROXIES', 'CORS_ORIGINS', 'DRAIN_GRACE_MS', 'SHUTDOWN_TIMEOUT_MS']);
  const example = Object.fromEntries(fs.readFileSync(fromRoot('deploy', 'atelier-reviews.env.example'), 'utf8').split('\n')
    .map((line) => /^([A-Z_][A-Z0-9_]*)=(.*)$/.exec(line.trim())).filter((m): m is RegExpExecArray => m !== null).map((m) => [m[1], m[2]]));

  it('run with the deployed example\'s settings', () => {
    expect(example.LOG_FORMAT).toBeDefined();
    const deployed = loadConfig(Object.fromEntries(Object.entries(example).filter(([k]) => !PLACE.has(k))));
    const bench = loadConfig(DEPLOYED_HOST_ENV);
    const keys = Object.keys(example).filter((k) => !PLACE.has(k));
    expect(keys.length).toBeGreaterThan(3);
    for (const k of keys) expect([k, bench[k as keyof typeof bench]]).toEqual([k, deployed[k as keyof typeof deployed]]);
  });
});

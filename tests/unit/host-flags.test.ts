// Every way a host is started passes the same V8 heap flags (src/cluster/host.ts): npm start,
// the systemd unit, and the launcher behind the cluster, benchmarks and tests; and this Node
// accepts them (a misspelt flag would stop every host at start).
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import { DEPLOYED_HOST_ENV, DEPLOYED_ORIGINS, deployedExample } from '../../bench/api-bench';
import { HOST_NODE_FLAGS, hostArgv, hostProcessEnv } from '../../src/cluster/host';
import { GENERATOR_NODE_FLAGS } from '../../loadtest/node/runner';
import { loadConfig } from '../../src/config';
import { fromRoot } from '../../src/lib/paths';

const words = (commandLine: string) => commandLine.trim().split(/\s+/);

it.each([['host', HOST_NODE_FLAGS], ['load generator', GENERATOR_NODE_FLAGS]])('the %s V8 flags are accepted by this Node', (_, flags) => {
  expect(flags.length).toBeGreaterThan(0);
  const run = spawnSync(process.execPath, [...flags, '-e', '0'], { encoding: 'utf8' });
  expect(run.stderr).toBe('');
  expect(run.status).toBe(0);
});

describe('host V8 flags', () => {

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

// The load generator's processes start with its own heap flags (loadtest/node/runner.ts): a
// small old generation made it pause every few seconds, in the floor and the service alike.
describe('load generator V8 flags', () => {
  it.each([['loadtest', 'loadtest'], ['bench', 'bench'], ['bench:scale', 'bench-scale'], ['chaos', 'chaos']])('npm run %s runs it with them', (script, file) => {
    const command = JSON.parse(fs.readFileSync(fromRoot('package.json'), 'utf8')).scripts[script] as string;
    expect(words(command)).toEqual(['node', ...GENERATOR_NODE_FLAGS, `dist/scripts/${file}.js`]);
  });
});

// The benchmarks measure the service as deployed: a benchmark host's environment holds every
// setting of the deployed example (but its address and database), whatever the benchmark's
// own environment (a .env copied from .env.example, say) says of the same settings.
describe('benchmark hosts', () => {
  const example = deployedExample();
  const PLACE = ['DATABASE_URL', 'PORT', 'HOST'];

  it('run with the deployed example\'s settings, over the environment they are started from', () => {
    const settings = Object.keys(example).filter((k) => !PLACE.includes(k));
    expect(settings).toEqual(expect.arrayContaining(['LOG_FORMAT', 'RESPONSE_CACHE_MB', 'PG_POOL_SIZE', 'CORS_ORIGINS']));
    const saved = { ...process.env };
    try {
      for (const k of settings) process.env[k] = 'from-the-benchmark-environment';
      const env = hostProcessEnv({ port: 3999, databaseUrl: 'postgres://bench@127.0.0.1/bench', env: DEPLOYED_HOST_ENV });
      for (const k of settings) expect([k, env[k]]).toEqual([k, example[k]]);
      expect([env.PORT, env.HOST, env.DATABASE_URL]).toEqual(['3999', '127.0.0.1', 'postgres://bench@127.0.0.1/bench']);
    } finally {
      process.env = saved;
    }
    expect(() => loadConfig(hostProcessEnv({ port: 3999, databaseUrl: 'postgres://bench@127.0.0.1/bench', env: DEPLOYED_HOST_ENV }))).not.toThrow();
  });

  it('a LOG_FORMAT in the environment reaches a host that is given none (LOG_FORMAT=json npm run cluster logs)', () => {
    const saved = process.env.LOG_FORMAT;
    try {
      process.env.LOG_FORMAT = 'json';
      expect(hostProcessEnv({ port: 3999, databaseUrl: 'postgres://x@127.0.0.1/x' }).LOG_FORMAT).toBe('json');
      delete process.env.LOG_FORMAT;
      expect(hostProcessEnv({ port: 3999, databaseUrl: 'postgres://x@127.0.0.1/x' }).LOG_FORMAT).toBe('off');
    } finally {
      if (saved === undefined) delete process.env.LOG_FORMAT;
      else process.env.LOG_FORMAT = saved;
    }
  });

  it("nginx keys its cache on the deployed hosts' origins", () => {
    expect(DEPLOYED_ORIGINS).toEqual(example.CORS_ORIGINS.split(','));
  });
});

// Every way a host is started passes the same V8 heap flags (src/cluster/host.ts): npm start,
// the systemd unit, and the launcher behind the cluster, benchmarks and tests.
import fs from 'node:fs';
import { HOST_NODE_FLAGS } from '../../src/cluster/host';
import { fromRoot } from '../../src/lib/paths';

const words = (commandLine: string) => commandLine.trim().split(/\s+/);

describe('host V8 flags', () => {
  it('has some flags to check', () => {
    expect(HOST_NODE_FLAGS.length).toBeGreaterThan(0);
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

// A benchmark stopped with `kill PID` stops the hosts, nginx and servers it started through
// src/cluster/processes.ts (stopChildrenOnSignals, which the benchmark scripts call); manage()
// alone changes nothing about signals (scripts with handlers of their own stop their children
// themselves). Real processes: the compiled module, a parent, its child.
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import fs from 'node:fs';
import { processAlive } from '../../src/lib/processes';
import { fromRoot } from '../../src/lib/paths';

/** A parent that manages one long-lived child and prints its pid; `hook`: it calls stopChildrenOnSignals(). */
function startParent(hook: boolean) {
  const script = `
    const { spawn } = require('node:child_process');
    const { manage, stopChildrenOnSignals } = require(${JSON.stringify(fromRoot('dist', 'src', 'cluster', 'processes.js'))});
    ${hook ? 'stopChildrenOnSignals();' : ''}
    const child = spawn(process.execPath, ['-e', 'setInterval(() => {}, 1000)'], { stdio: 'ignore' });
    manage(child, 'sleeper');
    console.log(String(child.pid));
    setInterval(() => {}, 1000);
  `;
  const parent = spawn(process.execPath, ['-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  parent.stdout!.setEncoding('utf8').on('data', (d) => (out += d));
  const pid = new Promise<number>((resolve) => parent.stdout!.on('data', () => /^\d+\n/.test(out) && resolve(Number(out.split('\n')[0]))));
  // 'close': the exit status and every byte of output.
  const closed = once(parent, 'close') as Promise<[number | null, NodeJS.Signals | null]>;
  return { parent, pid, closed };
}

/** Ended: gone, or a zombie (ended, not yet reaped by whoever adopted it). */
function ended(pid: number): boolean {
  if (!processAlive(pid)) return true;
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).startsWith('Z');
  } catch {
    return true;
  }
}

async function endsWithin(pid: number, ms: number): Promise<boolean> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (ended(pid)) return true;
    await new Promise((r) => setTimeout(r, 50));
  }
  return ended(pid);
}

describe('managed child processes', () => {
  test('with stopChildrenOnSignals, SIGTERM to the parent stops its managed children and it exits 143', async () => {
    const { parent, pid, closed } = startParent(true);
    const child = await pid;
    expect(ended(child)).toBe(false);
    parent.kill('SIGTERM');
    const [code] = await closed;
    try {
      expect(code).toBe(143);
      expect(await endsWithin(child, 3000)).toBe(true);
    } finally {
      if (!ended(child)) process.kill(child, 'SIGKILL');
    }
  });

  test('manage() alone leaves signals alone: the parent dies by SIGTERM as before, its child is not signalled', async () => {
    const { parent, pid, closed } = startParent(false);
    const child = await pid;
    parent.kill('SIGTERM');
    const [code, signal] = await closed;
    try {
      expect({ code, signal }).toEqual({ code: null, signal: 'SIGTERM' });
      expect(ended(child)).toBe(false);
    } finally {
      if (!ended(child)) process.kill(child, 'SIGKILL');
    }
  });
});

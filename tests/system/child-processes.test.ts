// A process that started hosts or nginx through src/cluster/processes.ts (a benchmark, a
// test run) and is stopped with `kill PID` stops them too, unless it handles the signal
// itself. Real processes: the compiled module, a child, a grandchild.
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { processAlive } from '../../src/lib/processes';
import { fromRoot } from '../../src/lib/paths';

/** A parent that manages one long-lived child and prints its pid; `ownHandler` adds a SIGTERM handler of its own. */
function startParent(ownHandler: boolean) {
  const script = `
    const { spawn } = require('node:child_process');
    const { manage } = require(${JSON.stringify(fromRoot('dist', 'src', 'cluster', 'processes.js'))});
    const child = spawn(process.execPath, ['-e', 'setInterval(() => {}, 1000)'], { stdio: 'ignore' });
    manage(child, 'sleeper');
    ${ownHandler ? "process.on('SIGTERM', () => { console.log('own handler'); process.exit(0); });" : ''}
    console.log(String(child.pid));
    setInterval(() => {}, 1000);
  `;
  const parent = spawn(process.execPath, ['-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  parent.stdout!.setEncoding('utf8').on('data', (d) => (out += d));
  const pid = new Promise<number>((resolve) => parent.stdout!.on('data', () => /^\d+\n/.test(out) && resolve(Number(out.split('\n')[0]))));
  return { parent, pid, output: () => out };
}

async function gone(pid: number, ms: number): Promise<boolean> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (!processAlive(pid)) return true;
    await new Promise((r) => setTimeout(r, 50));
  }
  return !processAlive(pid);
}

describe('managed child processes', () => {
  test('SIGTERM to the parent stops its managed children, and the parent ends as SIGTERM would end it', async () => {
    const { parent, pid } = startParent(false);
    const child = await pid;
    expect(processAlive(child)).toBe(true);
    const exited = once(parent, 'exit');
    parent.kill('SIGTERM');
    const [code] = await exited;
    try {
      expect(code).toBe(143);
      expect(await gone(child, 3000)).toBe(true);
    } finally {
      if (processAlive(child)) process.kill(child, 'SIGKILL');
    }
  });

  test("a parent with its own SIGTERM handler keeps it: the handler runs, the hook stays out of the way", async () => {
    const { parent, pid, output } = startParent(true);
    const child = await pid;
    const exited = once(parent, 'exit');
    parent.kill('SIGTERM');
    const [code] = await exited;
    try {
      expect({ code, out: output().includes('own handler') }).toEqual({ code: 0, out: true });
      // The script's handler owns its children: the hook sent them nothing.
      expect(processAlive(child)).toBe(true);
    } finally {
      if (processAlive(child)) process.kill(child, 'SIGKILL');
    }
  });
});

// The floor every figure stands beside: bench/baseline-server.ts (bare node:http) as a
// process of its own, for the length of `fn`.
import { spawn } from 'node:child_process';
import { freePort, manage } from '../src/cluster/processes';
import { fromRoot } from '../src/lib/paths';

export async function withBareServer<T>(fn: (server: { url: string; pid: number }) => Promise<T>): Promise<T> {
  const port = await freePort();
  const child = spawn(process.execPath, [fromRoot('dist', 'bench', 'baseline-server.js'), String(port)], { stdio: ['ignore', 'pipe', 'inherit'] });
  // Managed: stopped with the benchmark if that is killed (src/cluster/processes.ts).
  manage(child, 'bare node:http');
  try {
    await new Promise((r) => child.stdout!.once('data', r));
    return await fn({ url: `http://127.0.0.1:${port}`, pid: child.pid! });
  } finally {
    child.kill('SIGTERM');
  }
}

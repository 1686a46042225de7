// An interrupted test run (Ctrl-C, a killed jest) can leave its embedded PostgreSQL running
// in .data/test-pg/<pid>/. The next run removes them: for each folder whose run (the pid in
// its name) is gone, it stops the server recorded in that folder's postmaster.pid, when that
// process is still a postgres of this folder, and deletes the folder.
import fs from 'node:fs';
import path from 'node:path';
import { processAlive } from '../../src/lib/processes';
import { fromRoot } from '../../src/lib/paths';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Returns the folders it removed. */
export async function cleanTestLeftovers(root = fromRoot('.data', 'test-pg')): Promise<string[]> {
  if (!fs.existsSync(root)) return [];
  const removed: string[] = [];
  for (const name of fs.readdirSync(root)) {
    const owner = Number(name);
    if (!Number.isInteger(owner) || owner === process.pid || processAlive(owner)) continue;
    const dir = path.join(root, name);
    const server = postmasterOf(dir);
    if (server) {
      process.kill(server, 'SIGQUIT'); // immediate shutdown: the data is throwaway
      for (let i = 0; i < 50 && processAlive(server); i++) await sleep(100);
      if (processAlive(server)) process.kill(server, 'SIGKILL');
    }
    fs.rmSync(dir, { recursive: true, force: true });
    removed.push(dir);
  }
  return removed;
}

/** The live postmaster whose data folder is `dir`, if any. */
function postmasterOf(dir: string): number | undefined {
  let pid: number;
  try {
    pid = Number(fs.readFileSync(path.join(dir, 'postmaster.pid'), 'utf8').split('\n')[0]);
  } catch {
    return undefined;
  }
  if (!(pid > 0) || !processAlive(pid)) return undefined;
  try {
    const cmdline = fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
    return cmdline[0].endsWith('postgres') && cmdline.includes(path.resolve(dir)) ? pid : undefined;
  } catch {
    return undefined;
  }
}

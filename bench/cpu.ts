// CPU time spent by processes, read from /proc (Linux): the benchmark reports CPU per
// request for the hosts, nginx and PostgreSQL, a steadier figure than requests per second
// on a small, noisy machine.
import fs from 'node:fs';

const TICK_MS = 10; // USER_HZ is 100 on Linux

/** utime + stime of a process in ms (0 when it is gone). */
export function cpuMs(pid: number): number {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[11]) + Number(fields[12])) * TICK_MS;
  } catch {
    return 0;
  }
}

/** Processes whose command name (comm) is `name`. */
export function pidsNamed(name: string): number[] {
  const out: number[] = [];
  for (const entry of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      if (fs.readFileSync(`/proc/${entry}/comm`, 'utf8').trim() === name) out.push(Number(entry));
    } catch {
      // gone
    }
  }
  return out;
}

export type ProcessGroups = Record<string, () => number[]>;

/** Runs `fn` and returns its result with the CPU ms each group of processes spent meanwhile. */
export async function withCpu<T>(groups: ProcessGroups, fn: () => Promise<T>): Promise<{ result: T; cpuMs: Record<string, number> }> {
  const before = new Map<number, number>();
  const members = Object.fromEntries(Object.entries(groups).map(([k, list]) => [k, list()]));
  for (const pids of Object.values(members)) for (const pid of pids) before.set(pid, cpuMs(pid));
  const result = await fn();
  const cpu: Record<string, number> = {};
  for (const [k, list] of Object.entries(groups)) {
    // Processes that started during the run (new backends) count from zero.
    const pids = new Set([...members[k], ...list()]);
    cpu[k] = [...pids].reduce((n, pid) => n + cpuMs(pid) - (before.get(pid) ?? 0), 0);
  }
  return { result, cpuMs: cpu };
}

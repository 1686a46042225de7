// CPU time spent by processes, read from /proc (Linux): the benchmark reports CPU per
// request for the hosts, nginx and PostgreSQL, a steadier figure than requests per second
// on a small, noisy machine.
import fs from 'node:fs';

const TICK_MS = 10; // USER_HZ is 100 on Linux

/** The fields of /proc/PID/stat after the command name (undefined when the process is gone). */
function statFields(pid: number): string[] | undefined {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  } catch {
    return undefined;
  }
}

/**
 * utime + stime of a process in ms (undefined when it is gone); with `reaped`, also the
 * CPU of its children that exited and were waited for (cutime + cstime).
 */
function readCpu(pid: number, reaped = false): number | undefined {
  const f = statFields(pid);
  if (!f) return undefined;
  return (Number(f[11]) + Number(f[12]) + (reaped ? Number(f[13]) + Number(f[14]) : 0)) * TICK_MS;
}

/** utime + stime of a process in ms (0 when it is gone). */
export function cpuMs(pid: number): number {
  return readCpu(pid) ?? 0;
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

/**
 * A group: the processes to add up (listed at the start and at the end; a process that
 * exits in between counts for what was read of it, never less than zero), or a total of
 * its own (a PostgreSQL server: see serverCpu).
 */
export type ProcessGroup = (() => number[]) | { totalMs(): number };
export type ProcessGroups = Record<string, ProcessGroup>;

/** Runs `fn` and returns its result with the CPU ms each group of processes spent meanwhile. */
export async function withCpu<T>(groups: ProcessGroups, fn: () => Promise<T>): Promise<{ result: T; cpuMs: Record<string, number> }> {
  const before = new Map<number, number>();
  const totals = new Map<string, number>();
  const members: Record<string, number[]> = {};
  for (const [k, g] of Object.entries(groups)) {
    if (typeof g === 'function') members[k] = g();
    else totals.set(k, g.totalMs());
  }
  for (const pids of Object.values(members)) for (const pid of pids) before.set(pid, cpuMs(pid));
  const result = await fn();
  const cpu: Record<string, number> = {};
  for (const [k, g] of Object.entries(groups)) {
    if (typeof g !== 'function') {
      cpu[k] = g.totalMs() - totals.get(k)!;
      continue;
    }
    // Processes that started during the run (new backends) count from zero; one that ended
    // counts nothing (its last reading is lost with it).
    const pids = new Set([...members[k], ...g()]);
    cpu[k] = [...pids].reduce((n, pid) => {
      const now = readCpu(pid);
      return now === undefined ? n : n + Math.max(0, now - (before.get(pid) ?? 0));
    }, 0);
  }
  return { result, cpuMs: cpu };
}

/** The parent of a process (0 when it is gone). */
export function parentOf(pid: number): number {
  return Number(statFields(pid)?.[1] ?? 0);
}

/**
 * A PostgreSQL server's CPU, exactly: its postmaster's own and its reaped children's
 * (backends that exited: the postmaster waits for each) plus its live children's.
 */
export function serverCpu(postmaster: number): { totalMs(): number } {
  return {
    totalMs: () => (readCpu(postmaster, true) ?? 0) + pidsNamed('postgres').filter((pid) => parentOf(pid) === postmaster).reduce((n, pid) => n + cpuMs(pid), 0),
  };
}

// CPU time spent by processes, read from /proc (Linux): the benchmark reports CPU per
// request for the hosts, nginx and PostgreSQL, a steadier figure than requests per second
// on a small, noisy machine.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import { Db } from '../src/db';

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

/** Kernel-mode CPU (stime) of a process in ms (undefined when it is gone). */
function readSystemCpu(pid: number): number | undefined {
  const f = statFields(pid);
  return f ? Number(f[12]) * TICK_MS : undefined;
}

/**
 * Context switches of a process, voluntary and not, summed over all its threads (V8's GC
 * helpers and libuv's pool included; /proc/PID/status alone counts the main thread).
 * Undefined when it is gone; a thread that exited between listing and reading counts nothing.
 */
function readSwitches(pid: number): number | undefined {
  let tids: string[];
  try {
    tids = fs.readdirSync(`/proc/${pid}/task`);
  } catch {
    return undefined;
  }
  let total = 0;
  for (const tid of tids) {
    try {
      const status = fs.readFileSync(`/proc/${pid}/task/${tid}/status`, 'utf8');
      total += Number(/^voluntary_ctxt_switches:\s+(\d+)/m.exec(status)?.[1] ?? 0) + Number(/^nonvoluntary_ctxt_switches:\s+(\d+)/m.exec(status)?.[1] ?? 0);
    } catch {
      // the thread exited
    }
  }
  return total;
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

/**
 * Runs `fn` and returns its result with the CPU ms each group of processes spent meanwhile,
 * and for groups of listed processes, how much of it was in the kernel (systemMs) and how
 * many times their processes were switched out (switches: each is a sleep and a wake-up, or
 * a preemption).
 */
/**
 * The machine's steal time in ms, all CPUs together (/proc/stat's 8th "cpu" field): time the
 * hypervisor ran someone else while this VM wanted a CPU. 0 where /proc/stat has no such field.
 */
function readStealMs(): number {
  try {
    const cpu = fs.readFileSync('/proc/stat', 'utf8').split('\n', 1)[0].trim().split(/\s+/);
    return Number(cpu[8] ?? 0) * TICK_MS;
  } catch {
    return 0;
  }
}

export async function withCpu<T>(groups: ProcessGroups, fn: (restart: () => void) => Promise<T>): Promise<{ result: T; cpuMs: Record<string, number>; systemMs: Record<string, number>; switches: Record<string, number>; stealMs: number }> {
  const readers = { cpu: (pid: number) => readCpu(pid), system: readSystemCpu, switches: readSwitches };
  type Kind = keyof typeof readers;
  const before = new Map<string, number>();
  const totals = new Map<string, number>();
  const members: Record<string, number[]> = {};
  let stealBefore = 0;
  // The readings the run is counted from; `fn` may take them again (restart) to count only
  // what follows, e.g. a step's measured window after its lead-in (synchronous: a few ms).
  const snapshot = () => {
    before.clear();
    for (const [k, g] of Object.entries(groups)) {
      if (typeof g === 'function') members[k] = g();
      else totals.set(k, g.totalMs());
    }
    for (const pids of Object.values(members)) {
      for (const pid of pids) for (const kind of Object.keys(readers) as Kind[]) before.set(`${kind}:${pid}`, readers[kind](pid) ?? 0);
    }
    stealBefore = readStealMs();
  };
  snapshot();
  const result = await fn(snapshot);
  const stealMs = readStealMs() - stealBefore;
  const out: Record<Kind, Record<string, number>> = { cpu: {}, system: {}, switches: {} };
  for (const [k, g] of Object.entries(groups)) {
    if (typeof g !== 'function') {
      out.cpu[k] = g.totalMs() - totals.get(k)!;
      continue;
    }
    // Processes that started during the run (new backends) count from zero; one that ended
    // counts nothing (its last reading is lost with it).
    const pids = new Set([...members[k], ...g()]);
    for (const kind of Object.keys(readers) as Kind[]) {
      out[kind][k] = [...pids].reduce((n, pid) => {
        const now = readers[kind](pid);
        return now === undefined ? n : n + Math.max(0, now - (before.get(`${kind}:${pid}`) ?? 0));
      }, 0);
    }
  }
  return { result, cpuMs: out.cpu, systemMs: out.system, switches: out.switches, stealMs };
}

/** A process's children, by /proc (an nginx master's workers; none when it is gone). */
export function childrenOf(pid: number): number[] {
  try {
    return fs.readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);
  } catch {
    return [];
  }
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
    totalMs: () => (readCpu(postmaster, true) ?? 0) + childrenOf(postmaster).reduce((n, pid) => n + cpuMs(pid), 0),
  };
}

/**
 * CPU of the processes named `name` while it runs (ms): each is read every 100 ms and its
 * last reading kept, so one that exits counts for what was read of it (up to 100 ms short).
 */
export function sampleCpuOf(name: string): { stop(): number } {
  const last = new Map<number, number>();
  const read = () => {
    for (const pid of pidsNamed(name)) last.set(pid, cpuMs(pid));
  };
  read();
  const before = new Map(last);
  const timer = setInterval(read, 100);
  return {
    stop() {
      clearInterval(timer);
      read();
      let total = 0;
      for (const [pid, ms] of last) total += ms - (before.get(pid) ?? 0);
      return total;
    },
  };
}

/**
 * A process that burns `cores` of CPU (a fraction of one core, duty-cycled in 10 ms slices,
 * or more than one with several processes): a stand-in for a load generator's own CPU.
 */
export function cpuHog(cores: number): { stop(): void } {
  const children: import('node:child_process').ChildProcess[] = [];
  for (let left = cores; left > 0.001; left -= 1) {
    const duty = Math.min(1, left);
    const code = `const d=${duty};for(;;){const t=Date.now();while(Date.now()-t<10*d){}if(d<1){const e=Date.now()+10*(1-d);Atomics.wait(new Int32Array(new SharedArrayBuffer(4)),0,0,Math.max(0,e-Date.now()));}}`;
    children.push(spawn(process.execPath, ['-e', code], { stdio: 'ignore' }));
  }
  const stop = () => children.forEach((c) => c.kill('SIGKILL'));
  // Not left spinning if the benchmark itself ends first.
  process.once('exit', stop);
  return { stop };
}

/** The postmaster of the server at `url`: the parent of a backend, read while the backend lives. */
export async function postmasterOf(url: string): Promise<number> {
  const db = new Db({ connectionString: url, poolSize: 1 });
  try {
    const postmaster = parentOf((await db.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0].pid);
    if (!postmaster) throw new Error(`no postmaster found for ${new URL(url).port}`);
    return postmaster;
  } finally {
    await db.close();
  }
}

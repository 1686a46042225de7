// Host isolation for the local cluster: each API host as its own small machine on this
// box — its own network namespace and address, joined to nginx (in the root namespace) by
// a veth link, and its own CPU cap (a cgroup CPU quota, v1 `cpu.cfs_quota_us` or v2
// `cpu.max`) — so adding a host adds capacity the way adding an instance does, and a
// host's link can fail the way a network fails. Needs root, iproute2 and a cgroup CPU
// controller; `isolationSupport()` says exactly what is missing. Everything is named
// after the creating process (`atelier-p<pid>-…`), so a crashed run's leftovers are
// recognised (their pid is gone) and removed by the next start.
import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { processAlive } from '../lib/processes';

const PREFIX = 'atelier-p';

export type CgroupVersion = 'v1' | 'v2';

export interface IsolationSupport {
  ok: boolean;
  /** What is missing, one sentence each, with the way to run without isolation. */
  missing: string[];
  cgroup?: CgroupVersion;
}

const V1_CPU = '/sys/fs/cgroup/cpu';
const V2_ROOT = '/sys/fs/cgroup';

function cgroupVersion(): CgroupVersion | undefined {
  if (fs.existsSync(path.join(V1_CPU, 'cpu.cfs_quota_us'))) return 'v1';
  try {
    if (fs.readFileSync(path.join(V2_ROOT, 'cgroup.controllers'), 'utf8').split(/\s+/).includes('cpu')) return 'v2';
  } catch {
    // not v2 either
  }
  return undefined;
}

const has = (cmd: string) => spawnSync('sh', ['-c', `command -v ${cmd}`]).status === 0;

export function isolationSupport(): IsolationSupport {
  const missing: string[] = [];
  if (process.platform !== 'linux') missing.push('network namespaces and cgroups need Linux');
  if (process.getuid?.() !== 0) missing.push('creating network namespaces, veth links and cgroups needs root');
  if (!has('ip')) missing.push('the `ip` command (Debian package iproute2) is not installed');
  const cgroup = cgroupVersion();
  if (!cgroup) missing.push(`no cgroup CPU controller (neither ${V1_CPU}/cpu.cfs_quota_us nor "cpu" in ${V2_ROOT}/cgroup.controllers)`);
  if (missing.length === 0) {
    const probe = `${PREFIX}${process.pid}-probe`;
    const r = spawnSync('ip', ['netns', 'add', probe], { encoding: 'utf8' });
    if (r.status !== 0) missing.push(`cannot create a network namespace: ${r.stderr.trim()}`);
    else spawnSync('ip', ['netns', 'del', probe]);
  }
  if (missing.length) missing.push('run without --isolate: the hosts then share this machine and its loopback');
  return { ok: missing.length === 0, missing, cgroup };
}


const ownerPid = (name: string) => Number(/^atelier-p(\d+)-/.exec(name)?.[1] ?? /^at(\d+)h\d+[ab]$/.exec(name)?.[1] ?? NaN);

/** Our namespaces, links and cgroups, with the pid that made them. */
export function isolationLeftovers(): { namespaces: string[]; links: string[]; cgroups: string[] } {
  const namespaces = spawnSync('ip', ['netns', 'list'], { encoding: 'utf8' }).stdout?.split('\n').map((l) => l.split(' ')[0]).filter((n) => n.startsWith(PREFIX)) ?? [];
  const links = (spawnSync('ip', ['-o', 'link', 'show'], { encoding: 'utf8' }).stdout ?? '').split('\n')
    .map((l) => /^\d+: ([^:@]+)/.exec(l)?.[1] ?? '').filter((n) => /^at\d+h\d+[ab]$/.test(n));
  const dirs = [V1_CPU, V2_ROOT].filter((d) => fs.existsSync(d));
  const cgroups = dirs.flatMap((d) => fs.readdirSync(d).filter((n) => n.startsWith(PREFIX)).map((n) => path.join(d, n)));
  return { namespaces, links, cgroups };
}

function killCgroup(dir: string): void {
  try {
    for (const pid of fs.readFileSync(path.join(dir, 'cgroup.procs'), 'utf8').split('\n').filter(Boolean)) {
      try {
        process.kill(Number(pid), 'SIGKILL');
      } catch {
        // gone
      }
    }
  } catch {
    // no such cgroup
  }
}

function removeCgroup(dir: string): void {
  for (let i = 0; i < 50 && fs.existsSync(dir); i++) {
    try {
      fs.rmdirSync(dir);
    } catch {
      killCgroup(dir);
      execFileSync('sleep', ['0.05']);
    }
  }
}

/** Removes what crashed runs left (their creating process is gone); returns what it removed. */
export function cleanLeftovers(): string[] {
  const removed: string[] = [];
  const { namespaces, links, cgroups } = isolationLeftovers();
  for (const c of cgroups) {
    if (processAlive(ownerPid(path.basename(c)))) continue;
    killCgroup(c);
    removeCgroup(c);
    removed.push(c);
  }
  for (const n of namespaces) {
    if (processAlive(ownerPid(n))) continue;
    spawnSync('ip', ['netns', 'del', n]);
    removed.push(`netns ${n}`);
  }
  for (const l of links) {
    if (processAlive(ownerPid(l))) continue;
    spawnSync('ip', ['link', 'del', l]);
    removed.push(`link ${l}`);
  }
  return removed;
}

export interface IsolatedHost {
  index: number;
  namespace: string;
  /** The host's address inside its namespace (nginx connects to it). */
  address: string;
  /** The root namespace's end of the link. */
  gateway: string;
  rootLink: string;
  hostLink: string;
  cgroup: string;
  /** The command line that runs `argv` inside this host's namespace and cgroup. */
  wrap(argv: string[]): string[];
  /** Takes the host's link down (packets to it are dropped, not refused) or up again. */
  setLink(up: boolean): void;
  /** Changes the CPU cap (cores, e.g. 0.25). */
  setCpu(cores: number): void;
}

export interface Isolation {
  hosts: IsolatedHost[];
  /** What crashed runs had left and was removed before this one started. */
  cleaned: string[];
  cgroupVersion: CgroupVersion;
  /** Removes every namespace, link and cgroup made here (kills what still runs in them). */
  destroy(): void;
}

function ip(...args: string[]): void {
  execFileSync('ip', args, { stdio: ['ignore', 'ignore', 'pipe'] });
}

/** Creates `count` isolated host slots capped at `cpu` cores each. */
export function createIsolation(count: number, cpu: number): Isolation {
  const support = isolationSupport();
  if (!support.ok) throw new Error(`host isolation is not available here:\n  - ${support.missing.join('\n  - ')}`);
  const cleaned = cleanLeftovers();
  const version = support.cgroup!;
  const pid = process.pid;
  // A /30 per host in 10.<200-249>.<host>.0, picked by pid so two runs do not collide.
  const net = 200 + (pid % 50);
  if (version === 'v2') {
    const control = path.join(V2_ROOT, 'cgroup.subtree_control');
    if (!fs.readFileSync(control, 'utf8').includes('cpu')) fs.writeFileSync(control, '+cpu');
  }
  const hosts: IsolatedHost[] = [];
  const isolation: Isolation = {
    hosts,
    cleaned,
    cgroupVersion: version,
    destroy() {
      for (const h of hosts) {
        killCgroup(h.cgroup);
        removeCgroup(h.cgroup);
        spawnSync('ip', ['netns', 'del', h.namespace]);
        spawnSync('ip', ['link', 'del', h.rootLink]);
      }
    },
  };
  try {
    for (let i = 1; i <= count; i++) {
      const namespace = `${PREFIX}${pid}-h${i}`;
      const rootLink = `at${pid}h${i}a`;
      const hostLink = `at${pid}h${i}b`;
      const gateway = `10.${net}.${i}.1`;
      const address = `10.${net}.${i}.2`;
      const cgroup = path.join(version === 'v1' ? V1_CPU : V2_ROOT, `${PREFIX}${pid}-h${i}`);
      const setCpu = (cores: number) => {
        // A 10 ms period, not the default 100 ms: a host that spends its quota early in a
        // period is stopped for the rest of it, and with 100 ms at a quarter core that put
        // ~80 ms on the p99 of a host serving 100 req/s.
        const period = 10_000;
        const quota = Math.max(1000, Math.round(cores * period));
        if (version === 'v1') {
          fs.writeFileSync(path.join(cgroup, 'cpu.cfs_period_us'), String(period));
          fs.writeFileSync(path.join(cgroup, 'cpu.cfs_quota_us'), String(quota));
        } else {
          fs.writeFileSync(path.join(cgroup, 'cpu.max'), `${quota} ${period}`);
        }
      };
      const host: IsolatedHost = {
        index: i, namespace, address, gateway, rootLink, hostLink, cgroup, setCpu,
        wrap: (argv) => ['sh', '-c', `echo $$ > ${cgroup}/cgroup.procs && exec ip netns exec ${namespace} "$@"`, 'sh', ...argv],
        setLink(up) {
          ip('netns', 'exec', namespace, 'ip', 'link', 'set', hostLink, up ? 'up' : 'down');
        },
      };
      hosts.push(host);
      ip('netns', 'add', namespace);
      ip('link', 'add', rootLink, 'type', 'veth', 'peer', 'name', hostLink);
      ip('link', 'set', hostLink, 'netns', namespace);
      ip('addr', 'add', `${gateway}/30`, 'dev', rootLink);
      ip('link', 'set', rootLink, 'up');
      ip('netns', 'exec', namespace, 'ip', 'addr', 'add', `${address}/30`, 'dev', hostLink);
      ip('netns', 'exec', namespace, 'ip', 'link', 'set', hostLink, 'up');
      ip('netns', 'exec', namespace, 'ip', 'link', 'set', 'lo', 'up');
      fs.mkdirSync(cgroup, { recursive: true });
      setCpu(cpu);
    }
  } catch (err) {
    isolation.destroy();
    throw err;
  }
  return isolation;
}

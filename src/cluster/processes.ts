// Child processes the local cluster runs (hosts, nginx): their output kept for error
// messages, a graceful stop with a deadline, readiness by polling a URL; and free ports.
import type { ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';

export interface Proc {
  process: ChildProcess;
  /** Output so far (for error messages). */
  output(): string;
  /** Graceful stop with `signal`, SIGKILL after `graceMs`. */
  stop(signal?: NodeJS.Signals, graceMs?: number): Promise<void>;
}

/** Children started through manage() and still running. */
const running = new Set<ChildProcess>();
let signalsHooked = false;

/**
 * For a script without signal handlers of its own (the benchmarks): `kill PID` (SIGTERM) or a
 * closed terminal (SIGHUP) then stops the hosts, nginx and servers it started through
 * manage() too (each is sent SIGTERM) and the script exits with status 128 + the signal's
 * number, its 'exit' handlers run (an embedded PostgreSQL it started is stopped by its own).
 * Without it those children outlived it and kept their ports. Explicit, not implied by
 * manage(): a script with its own handlers (the local cluster, the database script, the
 * scale benchmark's host series) stops its children in its own order, and must not be cut
 * short. Not stopped here: what was not started through manage() (a wrk run ends by its own
 * duration; a standby started with pg_ctl keeps running).
 */
export function stopChildrenOnSignals(): void {
  if (signalsHooked) return;
  signalsHooked = true;
  for (const signal of ['SIGTERM', 'SIGHUP'] as const) {
    process.on(signal, () => {
      for (const child of running) child.kill('SIGTERM');
      process.exit(128 + os.constants.signals[signal]);
    });
  }
}

export function manage(child: ChildProcess, name: string, echo = false): Proc {
  if (child.exitCode === null && child.signalCode === null) {
    running.add(child);
    child.once('exit', () => running.delete(child));
  }
  let out = '';
  const collect = (d: Buffer) => {
    out = (out + d.toString()).slice(-20_000);
    if (echo) process.stdout.write(`[${name}] ${d}`);
  };
  child.stdout?.on('data', collect);
  child.stderr?.on('data', collect);
  return {
    process: child,
    output: () => out,
    async stop(signal = 'SIGTERM', graceMs = 10_000) {
      if (child.exitCode !== null || child.signalCode !== null) return;
      const exited = once(child, 'exit');
      child.kill(signal);
      const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
      await exited;
      clearTimeout(timer);
    },
  };
}

/** The lowest port freePort chooses outside the kernel's range for outgoing connections. */
const FREE_PORT_LOWEST = 10_000;

/** The local ports the kernel gives outgoing connections (Linux), or none where it cannot be read. */
export function outgoingPortRange(): [number, number] | undefined {
  try {
    const [low, high] = fs.readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/).map(Number);
    return low > 0 && high >= low ? [low, high] : undefined;
  } catch {
    return undefined;
  }
}

/** Listens on host:port and closes again at once: the port it got (0 asks the kernel for one), or undefined when it could not. */
async function listenOnce(port: number, host: string): Promise<number | undefined> {
  const srv = net.createServer();
  const ok = await new Promise<boolean>((resolve) => {
    srv.once('error', () => resolve(false));
    srv.listen(port, host, () => resolve(true));
  });
  if (!ok) return undefined;
  const got = (srv.address() as net.AddressInfo).port;
  await new Promise((r) => srv.close(r));
  return got;
}

/**
 * A free TCP port on loopback, chosen below the kernel's range for outgoing connections when
 * there is room (10,000 up to it): a port is free when chosen, and its server binds it later,
 * seconds later for an embedded PostgreSQL (initdb first); a port in that range could be given
 * to another process's outgoing connection meanwhile (a test run's PostgreSQL failed so:
 * "Address already in use"). Elsewhere, any port the kernel picks.
 */
export async function freePort(host = '127.0.0.1'): Promise<number> {
  const range = outgoingPortRange();
  if (range && range[0] - FREE_PORT_LOWEST >= 1000) {
    for (let i = 0; i < 100; i++) {
      const port = FREE_PORT_LOWEST + Math.floor(Math.random() * (range[0] - FREE_PORT_LOWEST));
      if ((await listenOnce(port, host)) !== undefined) return port;
    }
  }
  const port = await listenOnce(0, host);
  if (port === undefined) throw new Error(`cannot listen on ${host}`);
  return port;
}

/**
 * Fails when something already listens on host:port. A readiness probe cannot tell our new
 * process from an old one still serving there (an earlier cluster): the new one would fail
 * to bind while the probe says ready. An IPv6 address is tried IPv6-only (as nginx binds it).
 * Any other failure to bind (an address inside another network namespace, a privileged port)
 * is left to the started process to report: it fails to start then, which its start sees.
 */
export async function assertPortFree(port: number, host = '127.0.0.1'): Promise<void> {
  const srv = net.createServer();
  const err = await new Promise<NodeJS.ErrnoException | undefined>((resolve) => {
    srv.once('error', resolve);
    srv.listen({ port, host, ipv6Only: net.isIPv6(host) }, () => resolve(undefined));
  });
  if (!err) {
    await new Promise((r) => srv.close(r));
    return;
  }
  if (err.code === 'EADDRINUSE') throw new Error(`${host.includes(':') ? `[${host}]` : host}:${port} is already in use (an earlier cluster or host still running? stop it first)`);
}

/**
 * The address and port of an nginx `listen` value ("8080", "127.0.0.1:8080", "*:8080",
 * "[::1]:8080", optionally followed by parameters); undefined for what is not checked: a Unix
 * socket, a host name, an address without a port. (An IPv6 address is probed IPv6-only, as
 * nginx binds it by default; `ipv6only=off` is not read.)
 */
export function listenAddress(listen: string): { host: string; port: number } | undefined {
  const m = /^(?:(\*|\[[0-9a-fA-F:.]+\]|[0-9.]+):)?(\d+)$/.exec(listen.trim().split(/\s+/)[0]);
  if (!m) return undefined;
  const host = m[1] === undefined || m[1] === '*' ? '0.0.0.0' : m[1].replace(/^\[|\]$/g, '');
  return { host, port: Number(m[2]) };
}

export async function waitFor(url: string, proc: Proc, name: string, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (proc.process.exitCode !== null) throw new Error(`${name} exited (code ${proc.process.exitCode}):\n${proc.output()}`);
    try {
      // A redirect counts: with HTTPS on, nginx's plain listener only redirects.
      const res = await fetch(url, { signal: AbortSignal.timeout(1000), redirect: 'manual' });
      if (res.ok || res.status === 301) return;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) throw new Error(`${name} not ready at ${url} after ${timeoutMs} ms:\n${proc.output()}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

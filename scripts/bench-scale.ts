// npm run bench:scale -- [--scale S] [--max-hosts 4] [--host-cpu 0.25] [--p99 25] [--step-seconds 5]
// The scaling curve: 1…N isolated hosts (own network namespace, CPU-capped by a cgroup)
// behind nginx, each configuration's highest constant rate holding p99 ≤ the bound with no
// errors, for the load scenario's mix (both cache tiers on) and for Zipf GETs with nginx's
// cache off (the hosts do the work). Prints a table, writes bench/results/scale-*.json and
// a self-contained HTML chart. Needs root (see docs/cluster.md).
import fs from 'node:fs';
import path from 'node:path';
import { asDeployed, READS } from '../bench/api-bench';
import { prepareBenchDatabase } from '../bench/dataset';
import { findMaxRate, scaleChart, type ScalePoint } from '../bench/scale-bench';
import { parseArgs, runCli, UsageError, formatNumber as fmt } from '../src/lib/cli';
import { freePort, startCluster } from '../src/cluster/cluster';
import { stopChildrenOnSignals } from '../src/cluster/processes';
import { isolationSupport } from '../src/cluster/host-isolation';
import { fromRoot } from '../src/lib/paths';
import { currentCommit } from '../bench/report';
import { replicaSeries, replicaTable } from '../bench/replica-bench';

runCli(async () => {
  const a = parseArgs({
    scale: { type: 'number', default: 1, arg: 'S', help: 'dataset size (1 = full scale)' },
    seed: { type: 'number', default: 1, help: "the generator's seed" },
    'max-hosts': { type: 'number', default: 4, help: 'measure 1…N hosts' },
    'host-cpu': { type: 'number', default: 0.25, arg: 'CORES', help: "each host's CPU cap" },
    p99: { type: 'number', default: 25, arg: 'MS', help: 'the p99 bound a rate must hold' },
    'step-seconds': { type: 'number', default: 5, help: 'seconds per rate step' },
    'start-rate': { type: 'number', default: 250, help: 'first rate tried (req/s)' },
    replicas: { type: 'string', default: '', arg: 'LIST', help: 'instead of the hosts series: cold reads with these numbers of local hot standbys (e.g. 0,1,2), --max-hosts hosts, and the synchronous standby\'s cost per write' },
  }, {
    usage: 'npm run bench:scale -- [options]',
    about: 'The scaling curve: 1…N isolated hosts (network namespace + CPU cgroup each) behind nginx, the highest\nrate holding the p99 bound with no errors. Needs root, iproute2, nginx and a cgroup cpu controller.',
  });
  const support = isolationSupport();
  if (!support.ok) throw new UsageError(`bench:scale needs isolated hosts:\n  - ${support.missing.join('\n  - ')}`);
  const log = (l: string) => console.log(`[bench:scale] ${l}`);
  const replicaCounts = a.replicas ? a.replicas.split(',').map(Number) : [];
  if (replicaCounts.some((n) => !Number.isInteger(n) || n < 0 || n > 4)) throw new UsageError('--replicas takes a list of whole numbers from 0 to 4, e.g. 0,1,2');
  if (replicaCounts.length && process.env.DATABASE_URL) throw new UsageError('--replicas makes standbys of the embedded PostgreSQL: unset DATABASE_URL');
  const db = await prepareBenchDatabase(a.scale, a.seed, log, { replication: replicaCounts.length > 0 });
  if (replicaCounts.length) {
    // kill PID stops the hosts and nginx too (this path has no handlers of its own).
    stopChildrenOnSignals();
    try {
      const { points, commit } = await replicaSeries({
        primary: { ...db.embedded!, url: db.url }, database: new URL(db.url).pathname.slice(1), counts: replicaCounts, hosts: a['max-hosts'], hostCpu: a['host-cpu'],
        p99Ms: a.p99, stepSeconds: a['step-seconds'], startRate: a['start-rate'], products: db.products, log,
      });
      const lines = replicaTable(points, commit, a);
      console.log('\n' + lines.join('\n'));
      const out = fromRoot('bench', 'results', `scale-${a.scale}-replicas.json`);
      fs.writeFileSync(out, JSON.stringify({ date: new Date().toISOString(), commit: currentCommit(), ...a, cgroup: support.cgroup, points, writes: commit }, null, 2) + '\n');
      log(`written to ${path.relative(process.cwd(), out)}`);
    } finally {
      await db.stop();
    }
    return;
  }
  const series: { name: string; readCache: boolean; mix?: typeof READS }[] = [
    { name: 'load scenario mix, both caches', readCache: true },
    { name: 'Zipf GETs, nginx cache off', readCache: false, mix: READS },
  ];
  const results: { name: string; points: ScalePoint[] }[] = [];
  // Ctrl-C removes the namespaces, links and cgroups of the cluster being measured.
  let current: Awaited<ReturnType<typeof startCluster>> | undefined;
  const interrupted = async () => {
    await current?.stop();
    await db.stop();
    process.exit(130);
  };
  process.once('SIGINT', () => void interrupted());
  process.once('SIGTERM', () => void interrupted());
  try {
    for (const s of series) {
      const points: ScalePoint[] = [];
      for (let hosts = 1; hosts <= a['max-hosts']; hosts++) {
        log(`${s.name}: ${hosts} host(s) at ${a['host-cpu']} cores each`);
        const cluster = await startCluster({
          databaseUrl: db.url, port: await freePort(), isolate: { hosts, cpu: a['host-cpu'] }, prefix: fromRoot('.data', 'bench', 'nginx-scale'),
          readCache: s.readCache, ...asDeployed('nginx-scale'), writeRate: '1000000r/s', readRate: '1000000r/s',
        });
        current = cluster;
        try {
          points.push(await findMaxRate({
            target: cluster.url, hostPids: cluster.hosts.map((h) => h.process.pid!), products: db.products, distribution: 'zipf', mix: s.mix,
            p99Ms: a.p99, stepSeconds: a['step-seconds'], startRate: a['start-rate'] * hosts, rounds: 3, log, warmupSeconds: 8,
          }, hosts));
        } finally {
          current = undefined;
          await cluster.stop();
        }
      }
      results.push({ name: s.name, points });
    }
  } finally {
    await db.stop();
  }
  const lines = [
    `Hosts capped at ${a['host-cpu']} cores each (cgroup ${support.cgroup}), each in its own network namespace; nginx, PostgreSQL and the load generator share the rest of this 2-core box. Highest constant rate holding p99 ≤ ${a.p99} ms with 0 errors (${a['step-seconds']} s steps).`,
    '',
    '| series | hosts | max req/s | vs 1 host | p99 ms there | CPU µs per request (hosts, nginx, postgres) |',
    '|---|---:|---:|---:|---:|---|',
    ...results.flatMap((s) => s.points.map((p) => `| ${s.name} | ${p.hosts} | ${fmt(p.maxRate)} | ${s.points[0].maxRate ? fmt(p.maxRate / s.points[0].maxRate, 2) : ''} | ${p.best ? fmt(p.best.p99, 1) : ''} | ${p.best ? Object.entries(p.best.cpuUsPerRequest).map(([k, v]) => `${k} ${fmt(v)}`).join(', ') : ''} |`)),
  ];
  console.log('\n' + lines.join('\n'));
  const out = fromRoot('bench', 'results', `scale-${a.scale}.json`);
  fs.mkdirSync(path.dirname(out), { recursive: true });
  fs.writeFileSync(out, JSON.stringify({ date: new Date().toISOString(), commit: currentCommit(), ...a, cgroup: support.cgroup, results }, null, 2) + '\n');
  const html = out.replace(/\.json$/, '.html');
  fs.writeFileSync(html, scaleChart('Atelier reviews: throughput vs hosts', results, lines[0]));
  log(`written to ${path.relative(process.cwd(), out)} and ${path.relative(process.cwd(), html)}`);
});

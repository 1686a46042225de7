// npm run chaos -- --minutes N [options] (see --help): the exactness oracle's nemesis against
// nginx + 2 hosts with a hot standby applying WAL late, under the open-loop storefront mix;
// prints per fault kind the failed requests and the time to recover, then the exactness
// check, the write ledger and each process's RSS. The work is bench/chaos.ts. Exits 1 when a
// view differs, a write is lost or doubled, or the aggregates drifted.
import fs from 'node:fs';
import path from 'node:path';
import { runChaos } from '../bench/chaos';
import { loadConfig } from '../src/config';
import { formatNumber as fmt, parseArgs, runCli, UsageError } from '../src/lib/cli';
import { stopChildrenOnSignals } from '../src/cluster/processes';
import { fromRoot } from '../src/lib/paths';

runCli(async () => {
  const a = parseArgs({
    minutes: { type: 'number', default: 2, arg: 'N', help: 'how long the mix and the faults run' },
    rate: { type: 'number', default: 300, arg: 'R', help: 'the storefront mix, req/s (open loop)' },
    interval: { type: 'number', default: 6, arg: 'S', help: 'seconds between faults' },
    'hold-ms': { type: 'number', default: 1000, arg: 'MS', help: 'how long a held primary or a paused standby stays so' },
    'apply-delay-ms': { type: 'number', default: 800, arg: 'MS', help: "the standby's recovery_min_apply_delay" },
    'cache-ttl': { type: 'number', default: 1, arg: 'S', help: "nginx's read cache lifetime (the freshness bound through nginx)" },
    seed: { type: 'number', default: 27, help: 'the order of the faults and the ledger' },
  }, {
    usage: 'npm run chaos -- --minutes N [options]',
    about: "Faults (connections terminated, the primary's pools backed up, a standby's replay paused, the change feeds dropped)\nagainst nginx + 2 hosts reading from a late hot standby of the embedded PostgreSQL, under the storefront mix;\nthen the exactness check, the write ledger and each process's RSS. Needs nginx; not with DATABASE_URL.",
    notes: ['Results: bench/results/chaos-<time>.json. Promotion is the failover suites\' subject (tests/system/failover.test.ts, patroni.test.ts).'],
  });
  const config = loadConfig();
  if (config.DATABASE_URL) throw new UsageError('npm run chaos starts its own standby of the embedded PostgreSQL: unset DATABASE_URL');
  if (!(a.minutes > 0)) throw new UsageError('--minutes takes a positive number');
  const log = (l: string) => console.log(`[chaos] ${l}`);
  // kill PID stops the cluster's hosts and nginx too.
  stopChildrenOnSignals();
  const r = await runChaos({ minutes: a.minutes, rate: a.rate, intervalS: a.interval, holdMs: a['hold-ms'], applyDelayMs: a['apply-delay-ms'], seed: a.seed, cacheTtlS: a['cache-ttl'], log }, config);
  log(`the mix: ${fmt(r.load.requests)} requests, ${fmt(r.load.errors)} failed (${JSON.stringify(r.load.statuses)}), p50 ${r.load.p50.toFixed(1)} ms, p99 ${r.load.p99.toFixed(1)} ms, max ${r.load.max.toFixed(0)} ms`);
  log('fault kind      n   mix requests failed during   recovery mean / worst (s)');
  for (const f of r.faults) log(`${f.kind.padEnd(14)} ${String(f.count).padStart(3)}   ${String(f.failedDuring).padStart(26)}   ${f.meanRecoveryS.toFixed(1)} / ${f.worstRecoveryS.toFixed(1)}`);
  log(`exactness: ${r.exactness.differing.length} of ${r.exactness.views * 2} answers differ from a fresh render${r.exactness.differing.length ? `:\n  ${r.exactness.differing.slice(0, 10).join('\n  ')}` : ''}`);
  const p = r.ledger.posts;
  log(`ledger: ${p.acknowledged} POSTs acknowledged, ${p.present} present, ${p.missing.length} missing, ${p.duplicated.length} duplicated; votes outside their bounds on ${r.ledger.votes.outside.length} of ${r.ledger.votes.reviews} reviews`);
  log(`aggregates: ${r.drift.length ? `drift: ${r.drift.join('; ')}` : 'no drift'}`);
  log(`hosts' unexpected errors (their 500s): ${r.unexpectedErrors.length ? `\n  ${r.unexpectedErrors.join('\n  ')}` : 'none'}`);
  for (const x of r.rss) log(`RSS ${x.process.padEnd(32)} ${x.startMb.toFixed(0).padStart(5)} MB -> ${x.endMb.toFixed(0).padStart(5)} MB`);
  const out = fromRoot('bench', 'results');
  fs.mkdirSync(out, { recursive: true });
  const file = path.join(out, `chaos-${new Date().toISOString().replace(/[:.]/g, '-')}.json`);
  fs.writeFileSync(file, JSON.stringify(r, null, 2));
  log(`written: ${path.relative(fromRoot(), file)}`);
  if (r.unexpectedErrors.length || r.exactness.differing.length || p.missing.length || p.duplicated.length || r.ledger.votes.outside.length || r.drift.length) process.exitCode = 1;
});

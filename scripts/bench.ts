// npm run bench -- [--scale S] [--duration SECONDS] [--load-duration SECONDS]
// One run on one generated dataset, everything on this box: the HTTP ceiling (bare
// node:http), one host with its response cache off (cold reads) and on (Zipf reads), the
// nginx cluster under the load scenario at 1000 req/s and at max rate, and overload (32 vs
// 1000 connections) against one host and the cluster. Max-rate rows use wrk (Debian's
// package; it costs a fraction of a Node generator's CPU per request), the fixed-rate row
// the Node generator. Prints a table with CPU per request per process, and writes
// bench/results/api-scale-S.json (api-scale-S-cold.json etc. with --only).
// On the embedded server each run starts from the dataset as imported (bench/dataset.ts);
// --keep-data runs on the database as earlier runs left it.
import { runApiBenchmark, sectionsOf, SECTIONS } from '../bench/api-benchmark';
import { stopChildrenOnSignals } from '../src/cluster/processes';
import { parseArgs, runCli, UsageError } from '../src/lib/cli';
// eslint-disable-next-line @typescript-eslint/no-require-imports
const { ACCEPT_ENCODING } = require('../loadtest/lib/traffic.js') as typeof import('../loadtest/lib/traffic.js');

runCli(async () => {
  const a = parseArgs({
    scale: { type: 'number', default: 0.1, arg: 'S', help: 'dataset size (1 = full scale)' },
    duration: { type: 'number', default: 10, arg: 'SECONDS', help: 'seconds per max-rate row' },
    'load-duration': { type: 'number', default: 60, arg: 'SECONDS', help: 'seconds of the fixed-rate cluster row' },
    'step-seconds': { type: 'number', default: 30, arg: 'SECONDS', help: 'seconds per rate of the knee ramp (--only knee)' },
    'lead-in': { type: 'number', default: 5, arg: 'SECONDS', help: "knee and steady: seconds at each step's rate before it is measured, after the floor left the cluster idle (0: none, a step then starts from idle); reported apart as 'from idle'" },
    ramps: { type: 'number', default: 1, arg: 'N', help: '--only knee: ramps in a row on one cluster, each recorded, summed up by their median knee (the lower middle one for an even N)' },
    seed: { type: 'number', default: 1, help: "the generator's seed" },
    'keep-data': { type: 'boolean', default: false, help: 'run on the database as earlier runs left it (the embedded server; by default each run starts from the dataset as imported)' },
    only: { type: 'string', default: 'all', arg: 'LIST', help: `sections to run, of ${SECTIONS.join(',')} (the floor always runs; ab only when named)` },
    a: { type: 'string', default: '', arg: 'ENV', help: "--only ab: side A's host environment, NAME=VALUE,NAME=VALUE (empty: as deployed; values cannot contain commas)" },
    b: { type: 'string', default: '', arg: 'ENV', help: "--only ab: side B's host environment" },
    'a-nginx': { type: 'string', default: '', arg: 'DIRECTIVES', help: "--only ab: nginx directives for side A's read locations, each replacing that directive's lines there (e.g. 'proxy_cache_min_uses 1;')" },
    'b-nginx': { type: 'string', default: '', arg: 'DIRECTIVES', help: "--only ab: nginx directives for side B's read locations" },
    'a-sched': { type: 'string', default: 'other', arg: 'POLICY', help: "--only ab: side A's hosts' and nginx's scheduling policy (other or batch: chrt --batch, a woken process does not preempt the running one)" },
    'b-sched': { type: 'string', default: 'other', arg: 'POLICY', help: "--only ab: side B's scheduling policy" },
    rate: { type: 'number', default: 2000, arg: 'R', help: '--only ab: req/s of each run' },
    rounds: { type: 'number', default: 8, help: '--only ab: runs of each side (each --step-seconds long)' },
    'accept-encoding': { type: 'string', default: ACCEPT_ENCODING, arg: 'VALUE', help: "Accept-Encoding of the open-loop generator's requests, as browsers send it ('' sends none)" },
  }, {
    usage: 'npm run bench -- [options]',
    about: 'One run on one generated dataset: the floor (bare node:http), one host cold and cached, the nginx cluster\nat a fixed rate and at max rate, and overload. Prints rps, p50/p99 and CPU per request per process.',
    notes: ['Needs wrk and nginx (apt-get install wrk nginx).'],
  });
  if (!Number.isInteger(a.ramps) || a.ramps < 1) throw new UsageError(`--ramps must be a whole number of at least 1, not ${a.ramps}`);
  if (!(a['step-seconds'] > 0)) throw new UsageError(`--step-seconds must be more than 0, not ${a['step-seconds']}`);
  if (!(a['lead-in'] >= 0)) throw new UsageError(`--lead-in must be 0 or more seconds, not ${a['lead-in']}`);
  if (a.ramps > 1 && !sectionsOf(a.only).includes('knee')) throw new UsageError('--ramps applies to the knee section: add knee to --only');
  // kill PID stops the hosts, nginx and the floor's server too.
  stopChildrenOnSignals();
  await runApiBenchmark(a);
});

// npm run bench:report: rebuilds the generated part of docs/benchmarks.md from bench/results/*.json.
import fs from 'node:fs';
import { regenerate } from '../bench/report';
import { parseArgs, runCli } from '../src/lib/cli';
import { fromRoot } from '../src/lib/paths';

runCli(async () => {
  parseArgs({}, {
    usage: 'npm run bench:report',
    about: "Rewrites docs/benchmarks.md's generated tables from the JSON results the benchmarks wrote to bench/results/\n(each with its date, commit and the floor of its own run); the prose around them is kept.",
  });
  const file = fromRoot('docs', 'benchmarks.md');
  fs.writeFileSync(file, regenerate(fs.readFileSync(file, 'utf8')));
  console.log(`[bench:report] rewrote ${file}`);
});

// npm run bench:etl -- [--scale S] [--seed N]: on one generated export, times PostgreSQL's
// raw CSV COPY (the baseline) and the full import (validated, indexed, aggregated,
// swapped), and prints both, their ratio, rows/s and the import's peak RSS.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { parseArgs, runCli, formatNumber as fmt } from '../src/lib/cli';
import { loadConfig } from '../src/config';
import { resolveDatabase } from '../src/db/resolve';
import { Db } from '../src/db';
import { benchmarkExport } from '../src/etl/generate';
import type { LoadReport } from '../src/etl/load';
import { rawCopy } from '../bench/raw-copy';
import { fromRoot } from '../src/lib/paths';
import { currentCommit } from '../bench/report';


runCli(async () => {
  const args = parseArgs({
    scale: { type: 'number', default: 0.1, arg: 'S', help: 'size of the generated export (1 = full scale)' },
    seed: { type: 'number', default: 1, help: "the generator's seed" },
  }, {
    usage: 'npm run bench:etl -- [options]',
    about: "Times PostgreSQL's raw CSV COPY (the floor) and the full import on one generated export;\nprints both, their ratio, rows/s and the import's peak RSS.",
  });
  const dir = await benchmarkExport(args.scale, args.seed, (l) => console.log(`[bench:etl] ${l}`));
  const config = loadConfig();
  const database = await resolveDatabase(config);
  try {
    const db = new Db({ connectionString: database.url, poolSize: 4, statementTimeoutMs: 0 });
    console.log('[bench:etl] baseline: raw COPY of the four files');
    const raw = await rawCopy(db, dir);
    await db.close();

    console.log('[bench:etl] import: npm run etl (a separate process, so its peak RSS is its own)');
    const reportFile = path.join(dir, 'etl-report.json');
    // Run exactly as `npm run etl` runs it (no extra V8 flags).
    execFileSync(process.execPath, [fromRoot('dist', 'scripts', 'etl.js'), '--dir', dir, '--rejects', path.join(dir, 'rejects.csv'), '--report', reportFile], {
      stdio: ['ignore', 'inherit', 'inherit'],
      env: { ...process.env, DATABASE_URL: database.url },
    });
    const etl = JSON.parse(fs.readFileSync(reportFile, 'utf8')) as LoadReport;
    const rows = etl.files.reduce((n, f) => n + f.read, 0);
    const result = {
      date: new Date().toISOString(),
      scale: args.scale,
      rows,
      baseline: { seconds: raw.seconds, rowsPerSecond: raw.rows / raw.seconds },
      etl: { seconds: etl.totalSeconds, rowsPerSecond: rows / etl.totalSeconds, peakRssMB: etl.peakRssBytes / 1048576, steps: etl.steps, index: etl.index },
      ratio: etl.totalSeconds / raw.seconds,
    };
    console.log('');
    console.log(`| scale ${args.scale} (${fmt(rows)} rows) | seconds | rows/s | peak RSS |`);
    console.log('|---|---:|---:|---:|');
    console.log(`| raw COPY baseline | ${raw.seconds.toFixed(1)} | ${fmt(result.baseline.rowsPerSecond)} | |`);
    console.log(`| full import | ${etl.totalSeconds.toFixed(1)} | ${fmt(result.etl.rowsPerSecond)} | ${fmt(result.etl.peakRssMB)} MB |`);
    console.log(`| ratio import / baseline | ${result.ratio.toFixed(2)} | | |`);
    const out = fromRoot('bench', 'results', `etl-scale-${args.scale}.json`);
    fs.mkdirSync(path.dirname(out), { recursive: true });
    fs.writeFileSync(out, JSON.stringify({ ...result, commit: currentCommit() }, null, 2) + '\n');
    console.log(`[bench:etl] written to ${path.relative(process.cwd(), out)}`);
  } finally {
    await database.stop();
  }
});

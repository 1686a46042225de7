// npm run etl -- --dir DIR [--rejects FILE] [--dry-run] [--index-memory MB]
import fs from 'node:fs';
import { parseArgs, runCli, UsageError } from '../src/lib/cli';
import { loadConfig } from '../src/config';
import { resolveDatabase } from '../src/db/resolve';
import { load } from '../src/etl/load';
import { MIN_INDEX_MEMORY_MB } from '../src/etl/id-index';
import { consoleProgress, summaryTable } from '../src/etl/report';

runCli(async () => {
  const args = parseArgs({
    dir: { type: 'string', required: true, arg: 'DIR', help: 'folder with reviews.csv, reviews_photos.csv, characteristics.csv, characteristic_reviews.csv' },
    rejects: { type: 'string', arg: 'FILE', help: 'where to write rejected rows (file, line, reason); default DIR/rejects.csv' },
    'dry-run': { type: 'boolean', help: 'validate the files and report, load nothing' },
    report: { type: 'string', arg: 'FILE', help: 'also write the summary as JSON (for the benchmark)' },
    'index-memory': { type: 'number', default: 64, arg: 'MB', help: "memory for the cross-file index (ids seen, each review's product, the aggregates); beyond it, pages go to a temporary file in TMPDIR" },
  }, {
    usage: 'npm run etl -- --dir DIR [options]',
    about: 'Imports the four-file CSV export into new tables and swaps them in at the end: the old data serves\nuntil the swap, bad rows are reported with file, line and reason, every good row loads.',
    notes: ['Database: DATABASE_URL, or the embedded PostgreSQL in .data/pg when unset (see docs/import.md).'],
  });
  if (!(args['index-memory'] >= MIN_INDEX_MEMORY_MB)) throw new UsageError(`--index-memory must be at least ${MIN_INDEX_MEMORY_MB} (MB), not ${args['index-memory']}`);
  const dryRun = args['dry-run'];
  const database = dryRun ? undefined : await resolveDatabase(loadConfig(), (l) => console.log(`[etl] ${l}`));
  try {
    // Fault injection for the interruption tests: stop at a named point until killed.
    const pauseAt = process.env.ETL_PAUSE_AT;
    const onPoint = pauseAt
      ? async (p: string) => {
          if (p !== pauseAt) return;
          console.log(`[etl] paused at ${p}`);
          await new Promise(() => undefined);
        }
      : undefined;
    const report = await load({ dir: args.dir, databaseUrl: database?.url, rejectsFile: args.rejects, dryRun, progress: consoleProgress(), onPoint, index: { memoryBytes: args['index-memory'] * 1048576 } });
    console.log(summaryTable(report));
    if (args.report) fs.writeFileSync(args.report, JSON.stringify(report, null, 2));
  } finally {
    await database?.stop();
  }
});

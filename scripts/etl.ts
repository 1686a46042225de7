// npm run etl -- --dir DIR [--rejects FILE] [--dry-run]
import fs from 'node:fs';
import { parseArgs, runCli } from '../src/cli';
import { loadConfig } from '../src/config';
import { resolveDatabase } from '../src/database';
import { load } from '../src/etl/load';
import { consoleProgress, summaryTable } from '../src/etl/report';

runCli(async () => {
  const args = parseArgs({
    dir: { type: 'string', required: true }, rejects: { type: 'string' }, 'dry-run': { type: 'boolean' },
    // Machine-readable summary, for the benchmark.
    report: { type: 'string' },
  });
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
    const report = await load({ dir: args.dir, databaseUrl: database?.url, rejectsFile: args.rejects, dryRun, progress: consoleProgress(), onPoint });
    console.log(summaryTable(report));
    if (args.report) fs.writeFileSync(args.report, JSON.stringify(report, null, 2));
  } finally {
    await database?.stop();
  }
});

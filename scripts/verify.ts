// npm run verify [-- --repair]: proves the meta aggregates match the raw rows.
// Exits 1 when drift is found (and not repaired).
import { parseArgs, runCli, formatNumber as fmt } from '../src/lib/cli';
import { loadConfig } from '../src/config';
import { resolveDatabase } from '../src/db/resolve';
import { Db } from '../src/db';
import { auditAggregates, repairAggregates, type AuditReport } from '../src/reviews/aggregates';


function print(r: AuditReport): void {
  console.log(`[verify] checked ${fmt(r.productsChecked)} products and ${fmt(r.characteristicsChecked)} characteristics in ${r.seconds.toFixed(1)} s (${fmt(r.rowsPerSecond)} rows/s)`);
  console.log(`[verify] drifted products: ${fmt(r.drifted.length)}`);
  for (const e of r.examples) console.log(`  ${e}`);
}

runCli(async () => {
  const args = parseArgs({ repair: { type: 'boolean', help: 'recompute drifted aggregates from the raw rows' } }, {
    usage: 'npm run verify [-- --repair]',
    about: 'Checks that the meta aggregates match the raw rows; exits 1 when drift is found (and not repaired).',
    notes: ['Database: DATABASE_URL, or the embedded PostgreSQL in .data/pg when unset.'],
  });
  const database = await resolveDatabase(loadConfig());
  const db = new Db({ connectionString: database.url, poolSize: 2, statementTimeoutMs: 0, application: 'atelier-verify' });
  let code = 0;
  try {
    const report = await auditAggregates(db, 'atelier', (rows) => console.log(`[verify] ${fmt(rows)} rows compared`));
    print(report);
    if (report.drifted.length > 0) {
      if (args.repair) {
        await repairAggregates(db, report.drifted);
        console.log(`[verify] repaired ${fmt(report.drifted.length)} products; checking again`);
        const again = await auditAggregates(db);
        print(again);
        code = again.drifted.length > 0 ? 1 : 0;
      } else {
        code = 1;
      }
    }
  } finally {
    await db.close();
    await database.stop();
  }
  process.exitCode = code;
});

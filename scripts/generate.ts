// npm run generate -- --out DIR [--scale S] [--seed N] [--dirty F]
import { generate } from '../src/etl/generate';
import { parseArgs, runCli } from '../src/lib/cli';

runCli(async () => {
  const args = parseArgs({
    out: { type: 'string', required: true, arg: 'DIR', help: 'folder to write the four CSV files into' },
    scale: { type: 'number', default: 1, arg: 'S', help: 'fraction of the full export (1 = ~1M products, ~31M rows)' },
    seed: { type: 'number', default: 1, help: 'random seed: the same seed and scale give the same files' },
    dirty: { type: 'number', default: 0, arg: 'F', help: 'fraction of rows made bad on purpose (listed in a manifest)' },
  }, { usage: 'npm run generate -- --out DIR [options]', about: 'Writes an export in the Atelier CSV format (docs/dataset.md) at any scale.' });
  const started = performance.now();
  const result = await generate({
    out: args.out, scale: args.scale, seed: args.seed, dirty: args.dirty,
    onProgress: (done, total) => console.log(`[generate] ${done.toLocaleString('en-US')} / ${total.toLocaleString('en-US')} products`),
  });
  const s = (performance.now() - started) / 1000;
  const total = Object.values(result.rows).reduce((a, b) => a + b, 0);
  console.log(`[generate] ${result.products.toLocaleString('en-US')} products in ${s.toFixed(1)} s → ${args.out}`);
  for (const [k, n] of Object.entries(result.rows)) console.log(`  ${k.padEnd(16)} ${n.toLocaleString('en-US').padStart(12)} rows`);
  console.log(`  ${'total'.padEnd(16)} ${total.toLocaleString('en-US').padStart(12)} rows (${Math.round(total / s).toLocaleString('en-US')} rows/s)`);
  if (result.manifest) console.log(`  ${result.injected.length} bad rows injected, listed in ${result.manifest}`);
});

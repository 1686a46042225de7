// npm run generate -- --out DIR [--scale S] [--seed N] [--dirty F]
import { generate } from '../src/etl/generate';
import { parseArgs, runCli } from '../src/cli';

runCli(async () => {
  const args = parseArgs({ out: { type: 'string', required: true }, scale: { type: 'number', default: 1 }, seed: { type: 'number', default: 1 }, dirty: { type: 'number', default: 0 } });
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

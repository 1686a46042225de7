// How an import shows itself to people: progress bars with rows/s on a terminal
// (cli-progress), periodic log lines otherwise, and the final summary table.
import cliProgress from 'cli-progress';
import type { FileKey } from './csv-format';
import type { LoadReport, Progress } from './load';
import { formatNumber as fmt } from '../lib/cli';


export function consoleProgress(stream: NodeJS.WriteStream = process.stdout, everyMs = 5000): Progress {
  const started = new Map<FileKey, number>();
  if (stream.isTTY) {
    const multi = new cliProgress.MultiBar({
      format: '{file} |{bar}| {percentage}% | {rows} rows | {rate} rows/s',
      hideCursor: true,
      clearOnComplete: false,
      stream,
    }, cliProgress.Presets.shades_classic);
    const bars = new Map<FileKey, cliProgress.SingleBar>();
    return {
      start(key, file, bytes) {
        started.set(key, performance.now());
        bars.set(key, multi.create(bytes, 0, { file: file.padEnd(26), rows: 0, rate: 0 }));
      },
      update(key, bytesRead, rows) {
        const s = (performance.now() - started.get(key)!) / 1000;
        bars.get(key)?.update(bytesRead, { rows: fmt(rows), rate: fmt(rows / Math.max(s, 0.001)) });
      },
      finish(key) {
        const bar = bars.get(key);
        if (bar) bar.update(bar.getTotal());
      },
      step(name) {
        multi.log(`building: ${name}\n`);
        if (name === 'aggregates') multi.stop();
      },
    };
  }
  const last = new Map<FileKey, number>();
  const line = (s: string) => stream.write(`[etl] ${s}\n`);
  return {
    start(key, file, bytes) {
      started.set(key, performance.now());
      last.set(key, 0);
      line(`${file}: reading ${fmt(bytes / 1e6)} MB`);
    },
    update(key, bytesRead, rows) {
      const now = performance.now();
      if (now - last.get(key)! < everyMs) return;
      last.set(key, now);
      const s = (now - started.get(key)!) / 1000;
      line(`${key}: ${fmt(rows)} rows, ${fmt(bytesRead / 1e6)} MB, ${fmt(rows / s)} rows/s`);
    },
    finish(key) {
      line(`${key}: done in ${((performance.now() - started.get(key)!) / 1000).toFixed(1)} s`);
    },
    step(name) {
      line(`building: ${name}`);
    },
  };
}

export function summaryTable(r: LoadReport): string {
  const rows = [['file', 'read', 'loaded', 'rejected', 'seconds', 'rows/s']];
  for (const f of r.files) rows.push([f.file, fmt(f.read), fmt(f.loaded), fmt(f.rejected), f.seconds.toFixed(1), fmt(f.read / Math.max(f.seconds, 1e-6))]);
  const total = r.files.reduce((a, f) => ({ read: a.read + f.read, loaded: a.loaded + f.loaded, rejected: a.rejected + f.rejected }), { read: 0, loaded: 0, rejected: 0 });
  rows.push(['total', fmt(total.read), fmt(total.loaded), fmt(total.rejected), r.totalSeconds.toFixed(1), fmt(total.read / r.totalSeconds)]);
  const widths = rows[0].map((_, i) => Math.max(...rows.map((row) => row[i].length)));
  const lines = rows.map((row) => row.map((c, i) => (i === 0 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join('  '));
  lines.splice(1, 0, widths.map((w) => '-'.repeat(w)).join('  '));
  const out = [lines.join('\n')];
  if (r.steps.length) out.push('build steps: ' + r.steps.map((s) => `${s.name} ${s.seconds.toFixed(1)} s`).join(', '));
  out.push(`total ${r.totalSeconds.toFixed(1)} s, peak RSS ${fmt(r.peakRssBytes / 1048576)} MB${r.dryRun ? ' (dry run: database untouched)' : ''}`);
  const ix = r.index;
  out.push(`cross-file index: ${ix.lifted ? `its ${fmt(ix.memoryBytes / 1048576)} MB budget lifted (references out of id order: every page kept in memory)` : `${fmt(ix.memoryBytes / 1048576)} MB in memory at most`}, ${fmt(ix.fileBytes / 1048576)} MB in its temporary file (${fmt(ix.writes)} page writes, ${fmt(ix.reloads)} reads back)`);
  out.push(`${fmt(total.rejected)} rejected rows listed in ${r.rejectsFile}`);
  return out.join('\n');
}

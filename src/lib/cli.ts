// Small shared helpers for the command-line entry points in scripts/: typed flags with
// clear errors, `--help` generated from the same spec, and one place that turns a thrown
// error into a message and exit code (2 for usage, 1 otherwise).
import { parseArgs as nodeParseArgs } from 'node:util';

type Option = { type: 'string' | 'number' | 'boolean'; default?: string | number | boolean; required?: boolean; help?: string; arg?: string };
type Spec = Record<string, Option>;
type Parsed<S extends Spec> = {
  [K in keyof S]: S[K]['type'] extends 'number' ? number : S[K]['type'] extends 'boolean' ? boolean : string;
};

/** What a command says about itself in `--help` and after a usage error. */
export interface Command {
  /** e.g. `npm run etl -- --dir DIR [options]` */
  usage: string;
  /** One or a few lines: what it does. */
  about: string;
  /** Lines after the options: environment variables, examples. */
  notes?: string[];
}

export class UsageError extends Error {}
/** Thrown by parseArgs for --help: runCli prints the text and exits 0. */
class HelpRequested extends Error {}

let current: { spec: Spec; command: Command } | undefined;

export function usageText(spec: Spec, command: Command): string {
  const rows = Object.entries(spec).map(([k, v]) => {
    const flag = `--${k}${v.type === 'boolean' ? '' : ` ${v.arg ?? (v.type === 'number' ? 'N' : 'VALUE')}`}`;
    const dflt = v.required ? ' (required)' : v.default !== undefined && v.default !== '' && v.type !== 'boolean' ? ` (default ${v.default})` : '';
    return [flag, `${v.help ?? ''}${dflt}`.trim()];
  });
  rows.push(['--help', 'print this text']);
  const width = Math.max(...rows.map(([f]) => f.length)) + 2;
  return [
    `usage: ${command.usage}`,
    '',
    ...command.about.split('\n'),
    '',
    'options:',
    ...rows.map(([f, h]) => `  ${f.padEnd(width)}${h}`),
    ...(command.notes?.length ? ['', ...command.notes] : []),
  ].join('\n');
}

export function parseArgs<S extends Spec>(spec: S, command: Command, argv = process.argv.slice(2)): Parsed<S> {
  current = { spec, command };
  if (argv.includes('--help') || argv.includes('-h')) throw new HelpRequested(usageText(spec, command));
  const options = Object.fromEntries(Object.entries(spec).map(([k, v]) => [k, { type: v.type === 'boolean' ? 'boolean' : 'string' } as const]));
  let values: Record<string, string | boolean | undefined>;
  try {
    values = nodeParseArgs({ args: argv, options, strict: true, allowPositionals: false }).values as typeof values;
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(spec)) {
    const raw = values[k];
    if (raw === undefined) {
      if (v.required) throw new UsageError(`--${k} is required`);
      out[k] = v.default ?? (v.type === 'boolean' ? false : undefined);
    } else if (v.type === 'number') {
      const n = Number(raw);
      if (raw === '' || !Number.isFinite(n)) throw new UsageError(`--${k} must be a number (got "${raw}")`);
      out[k] = n;
    } else {
      out[k] = raw;
    }
  }
  return out as Parsed<S>;
}

export function runCli(main: () => Promise<void>): void {
  main().catch((err) => {
    if (err instanceof HelpRequested) {
      console.log(err.message);
      process.exit(0);
    }
    if (err instanceof UsageError) {
      console.error(`usage error: ${err.message}`);
      if (current) console.error(`\n${usageText(current.spec, current.command)}`);
      process.exit(2);
    }
    console.error(`error: ${err instanceof Error ? err.message : err}`);
    process.exit(1);
  });
}

/** A number for people: thousands separators, `digits` decimals. */
export const formatNumber = (n: number, digits = 0) =>
  n.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits });

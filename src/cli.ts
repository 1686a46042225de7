// Small shared helpers for the command-line entry points in scripts/: typed flags with
// clear errors, and one place that turns a thrown error into a message and exit code 1.
import { parseArgs as nodeParseArgs } from 'node:util';

type Spec = Record<string, { type: 'string' | 'number' | 'boolean'; default?: string | number | boolean; required?: boolean }>;
type Parsed<S extends Spec> = {
  [K in keyof S]: S[K]['type'] extends 'number' ? number : S[K]['type'] extends 'boolean' ? boolean : string;
};

export class UsageError extends Error {}

export function parseArgs<S extends Spec>(spec: S, argv = process.argv.slice(2)): Parsed<S> {
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
    console.error(err instanceof UsageError ? `usage error: ${err.message}` : `error: ${err instanceof Error ? err.message : err}`);
    process.exit(err instanceof UsageError ? 2 : 1);
  });
}

/** A number for people: thousands separators, `digits` decimals. */
export const formatNumber = (n: number, digits = 0) =>
  n.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits });

// Input schemas for the reviews endpoints: the contract's rules (api.md), checked at
// the edge so the data layer only ever sees valid, typed values.
import { z } from 'zod';
import { HttpError, type FieldProblem } from '../lib/http-error';

export const SORTS = ['newest', 'helpful', 'relevant'] as const;
export type Sort = (typeof SORTS)[number];

export const MAX_ID = 2147483647;
export const MAX_COUNT = 1000;

const DIGITS = /^\d+$/;

/** A query parameter that must be a single whole number in [min, max]. */
function queryInt(name: string, min: number, max: number) {
  return z
    .string({ error: (iss) => (Array.isArray(iss.input) ? `${name} must be given once` : `${name} must be an integer`) })
    .regex(DIGITS, `${name} must be a whole number`)
    .transform((s) => Number(s))
    .refine((n) => n >= min && n <= max, `${name} must be between ${min} and ${max}`);
}

export const productIdQuery = z.object({
  product_id: queryInt('product_id', 1, MAX_ID),
});

export const listQuery = z.object({
  product_id: queryInt('product_id', 1, MAX_ID),
  page: queryInt('page', 1, MAX_ID).default(1),
  // Any whole number >= 1 is accepted; above 1000 it is clamped (contract).
  count: z
    .string({ error: (iss) => (Array.isArray(iss.input) ? 'count must be given once' : 'count must be an integer') })
    .regex(DIGITS, 'count must be a whole number')
    .transform((s) => (s.replace(/^0+/, '').length > 4 ? MAX_COUNT : Math.min(Number(s), MAX_COUNT)))
    .refine((n) => n >= 1, 'count must be at least 1')
    .default(5),
  sort: z
    .enum(SORTS, { error: (iss) => (Array.isArray(iss.input) ? 'sort must be given once' : `sort must be one of ${SORTS.join(', ')}`) })
    .default('relevant'),
  // An extension (not in the contract): only reviews with these star ratings, e.g. "4,5".
  rating: z
    .string({ error: (iss) => (Array.isArray(iss.input) ? 'rating must be given once' : 'rating must be star ratings like 4,5') })
    .regex(/^[1-5](,[1-5])*$/, 'rating must be star ratings from 1 to 5, comma-separated, like 4,5')
    .transform((s) => [...new Set(s.split(',').map(Number))].sort((a, b) => a - b))
    .optional(),
});

/** Integers may arrive as JSON numbers or as strings of digits (form values); nothing else. */
function bodyInt(name: string, min: number, max: number) {
  return z
    .union([z.number(), z.string().regex(/^-?\d+$/).transform(Number)], { error: `${name} must be an integer` })
    .refine((n) => Number.isInteger(n), `${name} must be an integer`)
    .refine((n) => n >= min && n <= max, `${name} must be between ${min} and ${max}`);
}

const bodyBool = (name: string) =>
  z.union([z.boolean(), z.enum(['true', 'false']).transform((s) => s === 'true')], { error: `${name} must be true or false` });

// PostgreSQL text cannot hold U+0000: without this check it came back as a 500.
const noNul = (s: string) => !s.includes('\u0000');

const text = (name: string, min: number, max: number) =>
  z
    .string({ error: `${name} must be a string` })
    .min(min, min === 1 ? `${name} must not be empty` : `${name} must be at least ${min} characters`)
    .max(max, `${name} must be at most ${max} characters`)
    .refine(noNul, `${name} must not contain NUL characters`);

const photoUrl = z
  .string({ error: 'photos must be URL strings' })
  .max(2048, 'photo URLs must be at most 2048 characters')
  .refine(noNul, 'photo URLs must not contain NUL characters')
  .refine((s) => {
    try {
      const u = new URL(s);
      return u.protocol === 'http:' || u.protocol === 'https:';
    } catch {
      return false;
    }
  }, 'photos must be http(s) URLs');

export const newReview = z.object({
  product_id: bodyInt('product_id', 1, MAX_ID),
  rating: bodyInt('rating', 1, 5),
  summary: text('summary', 0, 60).default(''),
  body: text('body', 50, 1000),
  recommend: bodyBool('recommend'),
  name: text('name', 1, 60),
  email: z.email({ error: 'email must be a valid address' }).max(60, 'email must be at most 60 characters').refine(noNul, 'email must not contain NUL characters'),
  photos: z.array(photoUrl, { error: 'photos must be an array of URLs' }).max(5, 'at most 5 photos').default([]),
  characteristics: z
    .record(z.string(), z.unknown(), { error: 'characteristics must be an object of id: value' })
    .default({})
    .superRefine((obj, ctx) => {
      const keys = Object.keys(obj);
      if (keys.length > 50) {
        ctx.addIssue({ code: 'custom', message: 'characteristics has too many entries' });
        return;
      }
      for (const key of keys) {
        const v = obj[key];
        if (!DIGITS.test(key) || Number(key) < 1 || Number(key) > MAX_ID) {
          ctx.addIssue({ code: 'custom', path: [key], message: 'characteristic ids must be whole numbers' });
        } else if (!(typeof v === 'number' || (typeof v === 'string' && /^-?\d+$/.test(v))) || !Number.isInteger(Number(v)) || Number(v) < 1 || Number(v) > 5) {
          ctx.addIssue({ code: 'custom', path: [key], message: 'characteristic values must be integers from 1 to 5' });
        }
      }
    })
    .transform((obj) => Object.fromEntries(Object.keys(obj).map((k) => [String(Number(k)), Number(obj[k])])) as Record<string, number>),
});

export type NewReview = z.output<typeof newReview>;

function problems(error: z.ZodError): FieldProblem[] {
  return error.issues.map((i) => ({ field: i.path.map(String).join('.') || '(body)', message: i.message }));
}

/** The 400 for `what` naming every bad field once, in the order found. */
export function invalid(what: string, details: FieldProblem[]): HttpError {
  const fields = [...new Set(details.map((d) => d.field))];
  return new HttpError(400, `Invalid ${what}: ${fields.join(', ')}.`, details);
}

/** Parses with `schema` or throws a 400 naming every bad field. */
export function parseOr400<S extends z.ZodType>(schema: S, input: unknown, what: string): z.output<S> {
  const parsed = schema.safeParse(input);
  if (parsed.success) return parsed.data;
  throw invalid(what, problems(parsed.error));
}

/** A review id from the path: 400 when not an integer, null when an integer no review can have. */
export function parseReviewId(raw: string): number | null {
  if (!/^-?\d+$/.test(raw)) {
    throw new HttpError(400, 'Invalid review_id: must be an integer.', [{ field: 'review_id', message: 'review_id must be an integer' }]);
  }
  const n = Number(raw);
  return n >= 1 && n <= MAX_ID ? n : null;
}

/** The optional Idempotency-Key header of POST /reviews: 1–200 visible ASCII characters. */
export function parseIdempotencyKey(raw: string | undefined): string | undefined {
  if (raw === undefined) return undefined;
  if (!/^[\x21-\x7e]{1,200}$/.test(raw)) {
    throw new HttpError(400, 'Invalid Idempotency-Key header: 1 to 200 visible ASCII characters.', [{ field: 'Idempotency-Key', message: 'must be 1 to 200 visible ASCII characters' }]);
  }
  return raw;
}

// The OpenAPI 3.1 document of the service (GET /openapi.json, rendered at GET /docs).
// Parameters and request bodies are derived from the zod schemas the routes validate with,
// so they cannot drift; response shapes are written here once and every response the
// contract tests receive is validated against them (tests/helpers/contract-check.ts).
import { z } from 'zod';
import { CORS_EXPOSED_HEADERS } from './cors';
import { listQuery, newReview, productIdQuery } from '../reviews/schemas';

const json = (schema: z.ZodType) => {
  const s = z.toJSONSchema(schema, { io: 'input', unrepresentable: 'any' }) as Record<string, unknown>;
  delete s.$schema;
  return s;
};

/** Query parameters of a zod object schema, each with its own JSON Schema. */
function queryParameters(schema: z.ZodObject, descriptions: Record<string, string>, defaults: Record<string, unknown> = {}) {
  const props = json(schema).properties as Record<string, Record<string, unknown>>;
  const required = new Set((json(schema).required as string[] | undefined) ?? []);
  // Defaults the schema applies after a transform do not survive the conversion: say them here.
  return Object.entries(props).map(([name, s]) => ({
    name, in: 'query', required: required.has(name), description: descriptions[name], schema: name in defaults ? { ...s, default: defaults[name] } : s,
  }));
}

const error = {
  type: 'object',
  required: ['error'],
  additionalProperties: false,
  properties: {
    error: { type: 'string', description: 'One sentence a developer can act on.' },
    details: {
      type: 'array',
      items: { type: 'object', required: ['field', 'message'], additionalProperties: false, properties: { field: { type: 'string' }, message: { type: 'string' } } },
    },
    request_id: { type: 'string', description: 'The request id (X-Request-Id) to quote when reporting a problem: the same id is in the logs of nginx and the host.' },
  },
};

const review = {
  type: 'object',
  additionalProperties: false,
  required: ['review_id', 'rating', 'summary', 'recommend', 'response', 'body', 'date', 'reviewer_name', 'helpfulness', 'photos'],
  properties: {
    review_id: { type: 'integer' },
    rating: { type: 'integer', minimum: 1, maximum: 5 },
    summary: { type: 'string' },
    recommend: { type: 'boolean' },
    response: { type: ['string', 'null'] },
    body: { type: 'string' },
    date: { type: 'string', pattern: '^\\d{4}-\\d{2}-\\d{2}T\\d{2}:\\d{2}:\\d{2}\\.\\d{3}Z$' },
    reviewer_name: { type: 'string' },
    helpfulness: { type: 'integer', minimum: 0 },
    photos: {
      type: 'array',
      items: { type: 'object', additionalProperties: false, required: ['id', 'url'], properties: { id: { type: 'integer' }, url: { type: 'string' } } },
    },
  },
};

const reviewList = {
  type: 'object',
  additionalProperties: false,
  required: ['product', 'page', 'count', 'results'],
  properties: {
    product: { type: 'string', pattern: '^\\d+$', description: 'The product id, as a string.' },
    page: { type: 'integer', minimum: 0, description: 'The requested page minus one.' },
    count: { type: 'integer', minimum: 1, maximum: 1000 },
    results: { type: 'array', items: { $ref: '#/components/schemas/Review' } },
  },
};

const countString = { type: 'string', pattern: '^[1-9]\\d*$' };
const meta = {
  type: 'object',
  additionalProperties: false,
  required: ['product_id', 'ratings', 'recommended', 'characteristics'],
  properties: {
    product_id: { type: 'string', pattern: '^\\d+$' },
    ratings: { type: 'object', additionalProperties: false, patternProperties: { '^[1-5]$': countString } },
    recommended: { type: 'object', additionalProperties: false, patternProperties: { '^(true|false)$': countString } },
    characteristics: {
      type: 'object',
      additionalProperties: {
        type: 'object', additionalProperties: false, required: ['id', 'value'],
        properties: { id: { type: 'integer' }, value: { type: ['string', 'null'], pattern: '^\\d+\\.\\d+$', description: 'The average, printed as PostgreSQL prints avg() of integers; null when no visible review rated it.' } },
      },
    },
  },
};

const header = (description: string, schema: Record<string, unknown> = { type: 'string' }) => ({ description, schema });
const errorResponse = (description: string, headers?: Record<string, unknown>) => ({ description, headers, content: { 'application/json': { schema: { $ref: '#/components/schemas/Error' } } } });
const unavailable = errorResponse('The database is down or too slow, or this host is overloaded: retry after Retry-After seconds.', { 'Retry-After': header('Seconds to wait.') });
const readHeaders = {
  ETag: header('Entity tag of the body; send it back in If-None-Match for a 304.'),
  'X-Response-Cache': header("How the host answered: HIT from its memory (its response cache or its tables of every product), MISS rendered by a database statement, BYPASS rendered by a statement that skipped the response cache (a writer's own read, or the cache off or not trusted).", { type: 'string', enum: ['HIT', 'MISS', 'BYPASS'] }),
};
const reviewId = { name: 'review_id', in: 'path', required: true, schema: { type: 'string', pattern: '^-?\\d+$' }, description: 'The review id (an integer).' };

export const openApiDocument = {
  openapi: '3.1.0',
  info: {
    title: 'Atelier Ratings & Reviews API',
    version: '1.0.0',
    description: 'Reviews and their aggregates for the Atelier storefront. The contract in prose is docs/api.md in the service\'s repository. Errors are always JSON. '
      + `Browsers on origins listed in CORS_ORIGINS may read the headers ${CORS_EXPOSED_HEADERS.join(', ')}.`,
  },
  tags: [{ name: 'reviews', description: 'The storefront contract' }, { name: 'operations', description: 'Health and metrics' }],
  paths: {
    '/reviews': {
      get: {
        tags: ['reviews'],
        summary: "A page of a product's visible reviews",
        parameters: queryParameters(listQuery, {
          product_id: 'The product.', page: 'Page number, from 1.', count: 'Page size; above 1000 it is 1000.', sort: 'relevant (helpfulness weighted by recency), newest or helpful.',
          rating: 'Extension: only reviews with these star ratings, comma-separated (4,5).',
        }, { page: '1', count: '5' }),
        responses: {
          200: {
            description: 'The page (results may be empty).',
            headers: { ...readHeaders, 'X-Total-Count': header('Visible reviews matching the request on all pages (extension).', { type: 'string', pattern: '^\\d+$' }) },
            content: { 'application/json': { schema: { $ref: '#/components/schemas/ReviewList' } } },
          },
          304: { description: 'Not modified (If-None-Match matched).' },
          400: errorResponse('A missing or malformed parameter, named in details.'),
          429: errorResponse('This client rendered more uncached bytes than its budget (READ_BUDGET_KB_S) or sent more requests than nginx\'s limit; Retry-After says when to retry.'),
          503: unavailable,
        },
      },
      post: {
        tags: ['reviews'],
        summary: 'Add a review (with its photos and characteristic ratings, in one transaction)',
        parameters: [{ name: 'Idempotency-Key', in: 'header', required: false, schema: { type: 'string', pattern: '^[\\x21-\\x7e]{1,200}$' }, description: 'A retry with the same key and the same request returns the first review instead of creating another; the same key with a different request is a 422.' }],
        requestBody: { required: true, content: { 'application/json': { schema: json(newReview) } } },
        responses: {
          201: {
            description: 'Created (or, with a repeated Idempotency-Key, the first one: Idempotent-Replayed: true).',
            headers: { 'Idempotent-Replayed': header('true when the key was seen before.'), 'Set-Cookie': header('atelier_wrote=<product ids>: lets nginx show this client its own write at once.') },
            content: { 'application/json': { schema: { type: 'object', additionalProperties: false, required: ['review_id'], properties: { review_id: { type: 'integer' } } } } },
          },
          400: errorResponse('Invalid review: every offending field in details.'),
          413: errorResponse('Body over 64 KiB.'),
          415: errorResponse('Body is not application/json.'),
          422: errorResponse('The Idempotency-Key was already used with a different request (the message names the key); nothing was written.'),
          503: unavailable,
        },
      },
    },
    '/reviews/meta': {
      get: {
        tags: ['reviews'],
        summary: "A product's rating, recommendation and characteristic aggregates over visible reviews",
        parameters: queryParameters(productIdQuery, { product_id: 'The product.' }),
        responses: {
          200: { description: 'The aggregates (counts as strings; zero counts left out).', headers: readHeaders, content: { 'application/json': { schema: { $ref: '#/components/schemas/Meta' } } } },
          304: { description: 'Not modified (If-None-Match matched).' },
          400: errorResponse('A missing or malformed product_id.'),
          429: errorResponse('This client rendered more uncached bytes than its budget (READ_BUDGET_KB_S) or sent more requests than nginx\'s limit; Retry-After says when to retry.'),
          503: unavailable,
        },
      },
    },
    '/reviews/{review_id}/helpful': {
      put: {
        tags: ['reviews'],
        summary: "Add one to a review's helpfulness",
        parameters: [reviewId],
        responses: { 204: { description: 'Counted.' }, 400: errorResponse('The id is not an integer.'), 404: errorResponse('No such review.'), 503: unavailable },
      },
    },
    '/reviews/{review_id}/report': {
      put: {
        tags: ['reviews'],
        summary: 'Report a review: hidden from the list and from meta (twice is harmless)',
        parameters: [reviewId],
        responses: { 204: { description: 'Reported.' }, 400: errorResponse('The id is not an integer.'), 404: errorResponse('No such review.'), 503: unavailable },
      },
    },
    '/healthz': { get: { tags: ['operations'], summary: 'The process is alive', responses: { 200: { description: 'Alive.', content: { 'application/json': { schema: { type: 'object', properties: { status: { const: 'ok' } } } } } } } } },
    '/readyz': {
      get: {
        tags: ['operations'], summary: 'The database answers and the host is not draining',
        responses: { 200: { description: 'Ready.', content: { 'application/json': { schema: { type: 'object', properties: { status: { const: 'ready' } } } } } }, 503: unavailable },
      },
    },
    '/metrics': { get: { tags: ['operations'], summary: 'Prometheus metrics (when METRICS is on)', responses: { 200: { description: 'Prometheus text format.', content: { 'text/plain': { schema: { type: 'string' } } } } } } },
  },
  components: { schemas: { Review: review, ReviewList: reviewList, Meta: meta, Error: error } },
} as const;

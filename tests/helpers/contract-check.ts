// Validates every response an app gives against the OpenAPI document (src/openapi.ts):
// the status must be documented for the route and method, and a JSON body must match its
// schema. Wrap the app a contract test drives and assert `violations` is empty at the end.
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import Ajv2020 from 'ajv/dist/2020';
import type { App } from '../../src/app';
import { openApiDocument } from '../../src/http/openapi';

type Doc = { paths: Record<string, Record<string, { responses: Record<string, { content?: Record<string, { schema: object }> }> }>>; components: object };
const doc = openApiDocument as unknown as Doc;
const ajv = new Ajv2020({ strict: false, allErrors: true });
const templates = Object.keys(doc.paths).map((t) => ({ t, re: new RegExp(`^${t.replace(/\{[^}]+\}/g, '[^/]+')}$`) }));
const validators = new Map<string, ReturnType<typeof ajv.compile>>();

function check(method: string, url: string, status: number, contentType: string | undefined, body: string): string | undefined {
  const path = url.split('?')[0];
  const template = templates.find((x) => x.re.test(path))?.t;
  // Unknown routes are the JSON 404 of the error middleware: checked against Error below.
  const op = template ? doc.paths[template][method.toLowerCase()] : undefined;
  const where = `${method} ${url} → ${status}`;
  if (template && !op) return status === 404 ? undefined : `${where}: method not in the document`;
  const response = op ? op.responses[String(status)] : { content: { 'application/json': { schema: { $ref: '#/components/schemas/Error' } } } };
  if (!response) return `${where}: status not documented`;
  if (!contentType?.startsWith('application/json') || method === 'HEAD' || body === '') return undefined;
  const schema = response.content?.['application/json']?.schema;
  if (!schema) return `${where}: a JSON body where the document has none`;
  const key = JSON.stringify(schema);
  let validate = validators.get(key);
  if (!validate) validators.set(key, (validate = ajv.compile({ ...schema, components: doc.components })));
  let parsed: unknown;
  try {
    parsed = JSON.parse(body);
  } catch {
    return `${where}: body is not JSON`;
  }
  return validate(parsed) ? undefined : `${where}: ${ajv.errorsText(validate.errors)}`;
}

export function contractChecked(app: App): App & { violations: string[]; checked: () => number } {
  const violations: string[] = [];
  let checked = 0;
  const handler = (req: IncomingMessage, res: ServerResponse) => {
    const chunks: Buffer[] = [];
    const write = res.write.bind(res) as (...a: unknown[]) => boolean;
    const end = res.end.bind(res) as (...a: unknown[]) => ServerResponse;
    const keep = (c: unknown) => {
      if (c && typeof c !== 'function') chunks.push(Buffer.isBuffer(c) ? c : Buffer.from(String(c)));
    };
    // Headers given to writeHead directly are not visible to getHeader afterwards: note them.
    let contentType: string | undefined;
    const writeHead = res.writeHead.bind(res) as (...a: unknown[]) => ServerResponse;
    res.writeHead = ((...args: unknown[]) => {
      const headers = args.find((a) => a && typeof a === 'object') as Record<string, unknown> | undefined;
      for (const [k, v] of Object.entries(headers ?? {})) if (k.toLowerCase() === 'content-type') contentType = String(v);
      return writeHead(...args);
    }) as typeof res.writeHead;
    res.write = ((c: unknown, ...rest: unknown[]) => (keep(c), write(c, ...rest))) as typeof res.write;
    res.end = ((c?: unknown, ...rest: unknown[]) => (keep(c), end(c, ...rest))) as typeof res.end;
    res.once('finish', () => {
      checked++;
      const v = check(req.method ?? 'GET', req.url ?? '/', res.statusCode, contentType ?? (res.getHeader('content-type') as string | undefined), Buffer.concat(chunks).toString());
      if (v) violations.push(v);
    });
    app(req, res);
  };
  const listen = ((...args: unknown[]) => http.createServer(handler).listen(...(args as []))) as http.Server['listen'];
  return Object.assign(handler, { listen, violations, checked: () => checked });
}

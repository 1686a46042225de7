// The A/B section's nginx side (bench/api-benchmark.ts, --a-nginx / --b-nginx).
import { withReadDirectives } from '../../bench/api-benchmark';

const CONF = 'proxy_pass http://reviews_api;\nproxy_cache reviews_cache;\nproxy_cache_valid 200 5s;\nproxy_cache_min_uses 2;\nproxy_cache_revalidate on;\n';

test('a directive replaces every line of its name (nginx refuses a second min_uses, and of two proxy_cache_valid uses the first)', () => {
  const out = withReadDirectives(CONF, 'proxy_cache_min_uses 1; proxy_cache_valid 200 10s;');
  const active = out.split('\n').filter((l) => l && !l.startsWith('#'));
  expect(active).toEqual(['proxy_pass http://reviews_api;', 'proxy_cache reviews_cache;', 'proxy_cache_revalidate on;', 'proxy_cache_min_uses 1;', 'proxy_cache_valid 200 10s;']);
  expect(out).toContain('# (replaced by the A/B side) proxy_cache_min_uses 2;');
});

test('a new directive is added; the rest is kept as it was', () => {
  const out = withReadDirectives(CONF, 'proxy_buffering off');
  expect(out.startsWith(CONF)).toBe(true);
  expect(out.trim().split('\n').pop()).toBe('proxy_buffering off;');
});

test('directives that drop the server-level ones when set in a location are refused', () => {
  expect(() => withReadDirectives(CONF, 'add_header X-A 1;')).toThrow(/add_header/);
  expect(() => withReadDirectives(CONF, 'proxy_set_header Host x;')).toThrow(/proxy_set_header/);
  expect(() => withReadDirectives(CONF, 'error_page 503 /x;')).toThrow(/error_page/);
});

test("the read locations' own conditions cannot be replaced, and quotes or blocks are refused rather than split wrongly", () => {
  expect(() => withReadDirectives(CONF, 'proxy_cache_bypass $arg_x;')).toThrow(/proxy_cache_bypass/);
  expect(() => withReadDirectives(CONF, 'proxy_no_cache 1;')).toThrow(/proxy_no_cache/);
  expect(() => withReadDirectives(CONF, 'set $x "a; b";')).toThrow(/quotes or blocks/);
  expect(() => withReadDirectives(CONF, 'if ($arg_x) { return 404; }')).toThrow(/quotes or blocks/);
});

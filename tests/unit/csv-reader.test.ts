// The import's CSV reader agrees with csv-parse (the reference) record for record,
// and adds what the rejects file needs: start line numbers and raw text.
import { parse } from 'csv-parse/sync';
import { CsvReader } from '../../src/etl/csv-reader';
import { createRandom } from '../../src/lib/random.js';

function readAll(text: string, chunk = 7) {
  const out: { fields: string[]; line: number; raw: string; error?: string }[] = [];
  const r = new CsvReader((fields, line, raw, error) => out.push({ fields, line, raw, error }));
  for (let i = 0; i < text.length; i += chunk) r.push(text.slice(i, i + chunk));
  r.end();
  return out;
}

test('fields, quoting, doubled quotes, embedded newlines, CRLF, BOM and blank lines', () => {
  const text = '\ufeffid,name\r\n1,"a, b"\r\n2,"say ""hi"""\r\n\r\n3,"two\nlines",x\r\n4,plain\r\n\r\n';
  expect(readAll(text)).toEqual([
    { fields: ['id', 'name'], line: 1, raw: 'id,name', error: undefined },
    { fields: ['1', 'a, b'], line: 2, raw: '1,"a, b"', error: undefined },
    { fields: ['2', 'say "hi"'], line: 3, raw: '2,"say ""hi"""', error: undefined },
    { fields: ['3', 'two\nlines', 'x'], line: 5, raw: '3,"two\nlines",x', error: undefined },
    { fields: ['4', 'plain'], line: 7, raw: '4,plain', error: undefined },
  ]);
});

test('broken quoting is reported on its line and reading resumes on the next line', () => {
  const recs = readAll('a,b\n1,"He said "hi" there",x\n2,ok\n3,"never closed\n');
  expect(recs[1]).toMatchObject({ line: 2, raw: '1,"He said "hi" there",x', error: expect.stringMatching(/broken quoting/) });
  expect(recs[2]).toMatchObject({ fields: ['2', 'ok'], line: 3, error: undefined });
  expect(recs[3]).toMatchObject({ line: 4, error: expect.stringMatching(/never closed/) });
  expect(recs).toHaveLength(4);
});

test('a last record without a newline is read', () => {
  expect(readAll('a,b\n1,2').map((r) => r.fields)).toEqual([['a', 'b'], ['1', '2']]);
});

test('agrees with csv-parse on 300 random well-formed files, whatever the chunking', () => {
  const rand = createRandom(42);
  const pieces = ['a', 'bc', ' ', '', ',', '"', '\n', '\r\n', 'é', '✓', 'null', '12'];
  for (let n = 0; n < 300; n++) {
    const rows: string[][] = [];
    const width = 1 + Math.floor(rand() * 4);
    for (let r = 0; r < 1 + Math.floor(rand() * 8); r++) {
      rows.push(Array.from({ length: width }, () => Array.from({ length: Math.floor(rand() * 4) }, () => pieces[Math.floor(rand() * pieces.length)]).join('')));
    }
    const eol = rand() < 0.5 ? '\n' : '\r\n';
    const text = rows.map((row) => row.map((f) => (/[",\r\n]/.test(f) || rand() < 0.3 ? `"${f.replace(/"/g, '""')}"` : f)).join(',')).join(eol) + eol;
    const expected = (parse(text, { relax_column_count: true, skip_empty_lines: true }) as string[][]);
    const got = readAll(text, 1 + Math.floor(rand() * 20));
    expect(got.map((r) => r.error)).toEqual(got.map(() => undefined));
    // csv-parse treats a lone empty unquoted field as a blank line; so do we.
    expect(got.map((r) => r.fields)).toEqual(expected);
  }
});

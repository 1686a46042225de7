// A streaming RFC-4180 record reader tuned for the import: it reports each record with
// the physical line it starts on and its raw text (for the rejects file), recovers from
// broken quoting at the end of the physical line, and skips a BOM and blank lines.
//
// Why not csv-parse: measured on this box it reads reviews.csv at ~68k rows/s (85 s for
// the full export's reviews alone); papaparse is faster but gives neither exact line
// numbers nor raw lines. This reader does several times that and is tested against
// csv-parse on generated inputs (tests/csv-reader.test.ts).

export type RecordHandler = (fields: string[], line: number, raw: string, error?: string) => void;

const QUOTE = 34;
const COMMA = 44;
const CR = 13;

export class CsvReader {
  private rest = '';
  private started = false;
  /** Physical line number of the next unread character. */
  private line = 1;

  constructor(private readonly onRecord: RecordHandler) {}

  /** Feeds decoded text; complete records are reported before it returns. */
  push(text: string): void {
    this.parse(this.rest ? this.rest + text : text, false);
  }

  /** Reports the last record (one without a final newline, or an unterminated quote). */
  end(): void {
    this.parse(this.rest, true);
  }

  private parse(s: string, final: boolean): void {
    if (!this.started && s.length > 0) {
      this.started = true;
      if (s.charCodeAt(0) === 0xfeff) s = s.slice(1);
    }
    const len = s.length;
    let pos = 0;
    records: while (pos < len) {
      let lineEnd = s.indexOf('\n', pos);
      if (lineEnd === -1) {
        if (!final) break;
        lineEnd = len;
      }
      const fields: string[] = [];
      let i = pos;
      let multiline = false;
      let error: string | undefined;
      for (;;) {
        if (s.charCodeAt(i) === QUOTE) {
          let value = '';
          let j = i + 1;
          for (;;) {
            const k = s.indexOf('"', j);
            if (k === -1 || (k + 1 >= len && !final)) {
              if (!final) break records; // wait for more text
              error = 'broken quoting: a quoted field is never closed';
              lineEnd = len;
              break;
            }
            if (s.charCodeAt(k + 1) === QUOTE) {
              value += s.slice(j, k + 1);
              j = k + 2;
              continue;
            }
            value += s.slice(j, k);
            i = k + 1;
            break;
          }
          if (error) break;
          if (i > lineEnd) {
            multiline = true;
            lineEnd = s.indexOf('\n', i);
            if (lineEnd === -1) {
              if (!final) break records;
              lineEnd = len;
            }
          }
          fields.push(value);
          const c = s.charCodeAt(i);
          if (c === COMMA) {
            i++;
            continue;
          }
          if (i === lineEnd || (c === CR && i + 1 === lineEnd)) break;
          error = 'broken quoting: a closing quote must be followed by a comma or the end of the line';
          break;
        } else {
          const comma = s.indexOf(',', i);
          if (comma !== -1 && comma < lineEnd) {
            fields.push(s.slice(i, comma));
            i = comma + 1;
            continue;
          }
          let end = lineEnd;
          if (end > i && s.charCodeAt(end - 1) === CR) end--;
          fields.push(s.slice(i, end));
          break;
        }
      }
      let rawEnd = lineEnd;
      if (rawEnd > pos && s.charCodeAt(rawEnd - 1) === CR) rawEnd--;
      const raw = s.slice(pos, rawEnd);
      let newlines = 0;
      if (multiline || error) for (let k = raw.indexOf('\n'); k !== -1; k = raw.indexOf('\n', k + 1)) newlines++;
      if (error || raw.length > 0) this.onRecord(fields, this.line, raw, error);
      this.line += 1 + newlines;
      pos = lineEnd + 1;
    }
    this.rest = pos < len ? s.slice(pos) : '';
  }
}

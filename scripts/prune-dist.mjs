// Before a build: removes compiled files in dist/ whose source is gone (a moved or deleted
// module), which tsc leaves behind. A stale dist/src/db.js would otherwise shadow the
// new dist/src/db/index.js for require('./db'). Plain JavaScript: it runs before tsc.
import fs from 'node:fs';
import path from 'node:path';

const root = path.dirname(path.dirname(new URL(import.meta.url).pathname));
const dist = path.join(root, 'dist');
const walk = (dir) => fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? walk(path.join(dir, e.name)) : [path.join(dir, e.name)]));
if (fs.existsSync(dist)) {
  for (const file of walk(dist)) {
    const m = /^(.*)\.js(\.map)?$/.exec(path.relative(dist, file));
    if (!m) continue;
    const base = path.join(root, m[1]);
    if (!['.ts', '.js', '.mjs'].some((ext) => fs.existsSync(base + ext))) fs.rmSync(file);
  }
}

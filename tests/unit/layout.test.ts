// The layout of src/ explains the system only while it holds: no import cycles, and every
// import across folders goes down the layers below (a folder may import the ones after it).
// madge reads the import graph (type-only imports included).
import madge from 'madge';
import { fromRoot } from '../../src/lib/paths';

const LAYERS = ['(top)', 'http', 'cluster', 'etl', 'reviews', 'response-cache', 'db', 'lib'];
const folderOf = (file: string) => (file.includes('/') ? file.split('/')[0] : '(top)');

test('src/ has no import cycles and no import goes up a layer', async () => {
  const graph = await madge(fromRoot('src'), { fileExtensions: ['ts', 'js'], tsConfig: fromRoot('tsconfig.json') });
  expect(graph.circular()).toEqual([]);
  const upward: string[] = [];
  for (const [file, deps] of Object.entries(graph.obj())) {
    for (const dep of deps) {
      const [from, to] = [LAYERS.indexOf(folderOf(file)), LAYERS.indexOf(folderOf(dep))];
      if (from < 0 || to < 0) upward.push(`${file} -> ${dep} (a folder outside the layers)`);
      else if (to < from) upward.push(`${file} -> ${dep}`);
    }
  }
  expect(upward).toEqual([]);
});

test('the top of src/ holds only the entry files', async () => {
  const graph = await madge(fromRoot('src'), { fileExtensions: ['ts', 'js'], tsConfig: fromRoot('tsconfig.json') });
  expect(Object.keys(graph.obj()).filter((f) => !f.includes('/')).sort()).toEqual(['app.ts', 'config.ts', 'server.ts']);
});

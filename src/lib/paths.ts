// Locates files that ship beside the code (migrations, SQL, nginx config) whether we
// run from src/ under ts-jest or from dist/src/ after a build.
import fs from 'node:fs';
import path from 'node:path';

function findRoot(start: string): string {
  let dir = start;
  while (!fs.existsSync(path.join(dir, 'package.json'))) {
    const up = path.dirname(dir);
    if (up === dir) throw new Error(`package.json not found above ${start}`);
    dir = up;
  }
  return dir;
}

export const projectRoot = findRoot(__dirname);
export const fromRoot = (...parts: string[]) => path.join(projectRoot, ...parts);
